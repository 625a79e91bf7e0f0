//! Relay-tree placement scenarios (`streamr-sim --tree-scenarios`): the attacks on where a relay
//! sits in a stream's tree, run through the coordinator's own rules ([`streamr_core::tree`]:
//! layout, re-parenting, failure confirmation, heartbeat-named upstreams).
//!
//! A position is worth money: a relay is paid on the receipts its children sign for what it
//! delivered (see the relay scenarios), so a relay feeding more children, or sitting higher
//! (where the subtree below it is larger), earns more. Each scenario grows one tree of honest
//! relays with the attacker's relays among them, plays a few rounds of asks (every live relay
//! asks for its place once a round, as nodes do every few seconds; an honest relay whose
//! parent died names it failed) with the attack running, and compares the outcome with the
//! same network behaving honestly: the attacker's best depth, the children its relays feed
//! (each an hour of relay credit when its viewers watch), and what honest relays lost. The
//! coordinator side is modelled as the handler does it: reports kept for a liveness, only
//! of a node in the reporter's chain; the coordinator checks each reported node of the asking
//! relay's chain itself when checks are on (a serving relay answers that it serves, a dead one
//! does not answer); a heartbeat may name only an upstream the coordinator granted the relay
//! (it grants the whole chain it answers with); and a child's receipts show what its parent
//! delivered it (an honest child signs for what it got, a lying one signs nothing), which the
//! coordinator reads for every reported edge ([`streamr_core::tree::unfed_parents`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use streamr_core::tree::{
    decide, Ask, Assignment, Evidence, Home, Layout, ParentCheck, RealUpstream, Report, Tree,
    FORGOTTEN,
};

const ORIGIN: &str = "origin";
/// Relays the origin feeds, and each relay's fan-out.
const K: usize = 3;
/// The relay liveness: reports older than this are forgotten.
const LIVENESS_MS: i64 = 15_000;
/// Time between two asks of the simulation.
const STEP_MS: i64 = 500;
/// Honest relays in the network (beside the attacker's).
const HONEST: usize = 30;
/// Rounds of asks played with the attack running.
const ROUNDS: usize = 4;
/// What one child's edge is credited in an hour at 4 Mbit/s, bytes.
const EDGE_HOUR_BYTES: i64 = 500_000 * 3_600;

/// How the attacker's relays behave in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attack {
    /// Like every other relay.
    None,
    /// Each attacker relay names its (serving) parent failed at every ask, and signs no
    /// receipt for what it delivers.
    ReportParent,
    /// The attacker's relays answer that they serve the stream but feed no child: their
    /// children get nothing, sign no receipt, and report them failed.
    StarveChildren,
    /// The first attacker relay leaves for a liveness and comes back, every round.
    Flap,
    /// The first attacker relay's heartbeats say it pulls from this node.
    ClaimUpstream(&'static str),
}

/// One scenario's network.
#[derive(Clone, Debug)]
struct Setup {
    /// The attacker's relays' homes (/24, operator), in the order they join.
    attackers: Vec<(&'static str, &'static str)>,
    attack: Attack,
    /// Whether the coordinator checks reported relays itself (`--relay-probe-timeout` > 0).
    self_check: bool,
    /// Honest relays that join before the attacker's: 12 fill the first two tiers (the
    /// attacker's relays land below the first relay of the third, an honest sibling after
    /// them); 3 fill the origin's slots (the first attacker relay lands in the second tier and
    /// feeds children of its own).
    join_after: usize,
}

/// The network as the coordinator sees it.
struct Net {
    members: HashMap<String, usize>,
    homes: HashMap<String, Home>,
    assignments: Vec<Assignment>,
    reports: Vec<Report>,
    /// Upstreams the coordinator granted each relay (its answered chains).
    granted: HashSet<(String, String)>,
    /// Where heartbeats say relays pull from.
    claims: HashMap<String, String>,
    /// Relays that sign no receipt (lying children) and relays that feed no child.
    silent: HashSet<String>,
    starving: HashSet<String>,
    self_check: bool,
    now: i64,
}

fn honest_name(i: usize) -> String {
    format!("h{i:02}")
}

/// The attacker's relays sort first by id (placement breaks ties by id), so one that joins in
/// the second tier feeds children of its own.
fn attacker_name(i: usize) -> String {
    format!("a{i}")
}

impl Net {
    fn new(self_check: bool) -> Self {
        let mut homes = HashMap::new();
        homes.insert(
            ORIGIN.to_owned(),
            Home {
                subnet: "192.0.2".into(),
                operator: "origin".into(),
            },
        );
        Net {
            members: HashMap::new(),
            homes,
            assignments: Vec::new(),
            reports: Vec::new(),
            granted: HashSet::new(),
            claims: HashMap::new(),
            silent: HashSet::new(),
            starving: HashSet::new(),
            self_check,
            now: 1_000_000,
        }
    }

    fn join(&mut self, node: &str, subnet: String, operator: String) {
        self.members.insert(node.to_owned(), K);
        self.homes
            .insert(node.to_owned(), Home { subnet, operator });
        self.ask(node, &[]);
    }

    fn parent(&self, node: &str) -> Option<&str> {
        self.assignments
            .iter()
            .find(|a| a.node_id == node)
            .map(|a| a.parent_id.as_str())
    }

    /// `node`'s ask, naming `failed`, decided and stored as the coordinator does.
    fn ask(&mut self, node: &str, failed: &[&str]) {
        self.now += STEP_MS;
        let now = self.now;
        let tree = Tree::new(ORIGIN, K, &self.members, &self.assignments);
        let own_chain: Vec<String> = tree
            .ancestry(node)
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        let failed: HashSet<String> = failed.iter().map(|f| (*f).to_owned()).collect();
        // Stored: reports of the last liveness, one per (node, reporter), of the own chain.
        self.reports
            .retain(|r| r.reported_at_ms >= now.saturating_sub(LIVENESS_MS));
        for reported in failed.iter().filter(|f| own_chain.contains(f)) {
            let known = self
                .reports
                .iter()
                .any(|r| &r.node_id == reported && r.reporter_id == node);
            if !known {
                self.reports.push(Report {
                    node_id: reported.clone(),
                    reporter_id: node.to_owned(),
                    reported_at_ms: now,
                });
            }
        }
        // The coordinator's own check of every reported relay of the chain: a live relay
        // serves the stream (the attacks here never stop a parent serving), a gone one does
        // not answer.
        let mut checked = HashMap::new();
        if self.self_check {
            for r in &self.reports {
                if own_chain.contains(&r.node_id) && r.node_id != ORIGIN {
                    let check = if self.members.contains_key(&r.node_id) {
                        ParentCheck::Serving
                    } else {
                        ParentCheck::NotServing
                    };
                    checked.insert(r.node_id.clone(), check);
                }
            }
        }
        // Heartbeat claims count only for an upstream the coordinator granted the relay, and
        // are sent well after its assignment (the heartbeat comes after this step's).
        let real: HashMap<String, RealUpstream> = self
            .claims
            .iter()
            .filter(|(relay, upstream)| {
                self.granted
                    .contains(&((*relay).clone(), (*upstream).clone()))
            })
            .map(|(relay, upstream)| {
                (
                    relay.clone(),
                    RealUpstream {
                        upstream: upstream.clone(),
                        heartbeat_ms: now,
                    },
                )
            })
            .collect();
        // The receipts: a live parent that feeds delivers to its child, and the child signs
        // for it unless it is a silent liar.
        let delivered: HashSet<(String, String)> = self
            .assignments
            .iter()
            .filter(|a| a.parent_id == ORIGIN || self.members.contains_key(&a.parent_id))
            .filter(|a| !self.starving.contains(&a.parent_id) && !self.silent.contains(&a.node_id))
            .map(|a| (a.node_id.clone(), a.parent_id.clone()))
            .collect();
        let lacking = HashMap::new();
        let ask = Ask {
            node,
            failed: &failed,
            layout: Layout {
                origin: ORIGIN,
                origin_fanout: K,
                members: &self.members,
                homes: &self.homes,
            },
            evidence: Evidence {
                lacking: &lacking,
                checked: &checked,
                self_check: self.self_check,
                homes: &self.homes,
            },
            real: &real,
            grace_ms: LIVENESS_MS / 3,
            now_ms: now,
            delivered: &delivered,
        };
        let moves = decide(&self.assignments, &self.reports, &ask);
        for (relay, parent) in moves {
            self.assignments.retain(|a| a.node_id != relay);
            if parent == FORGOTTEN {
                continue;
            }
            self.assignments.push(Assignment {
                node_id: relay,
                parent_id: parent,
                assigned_at_ms: now,
            });
        }
        // The answer: the chain, each with a grant; the origin only to its own children.
        let tree = Tree::new(ORIGIN, K, &self.members, &self.assignments);
        let chain = tree.chain(node, &HashSet::new()).unwrap_or_default();
        let depth = chain.len();
        for upstream in chain {
            if depth == 1 || upstream != ORIGIN {
                self.granted.insert((node.to_owned(), upstream.to_owned()));
            }
        }
    }

    /// Depth of `node` (1: below the origin), if its chain is whole.
    fn depth(&self, node: &str) -> Option<usize> {
        Tree::new(ORIGIN, K, &self.members, &self.assignments)
            .chain(node, &HashSet::new())
            .map(|c| c.len())
    }

    /// Live children assigned to `node` (whether it feeds them or not).
    fn children(&self, node: &str) -> usize {
        self.assignments
            .iter()
            .filter(|a| a.parent_id == node && self.members.contains_key(&a.node_id))
            .count()
    }
}

/// What one run of a setup came to.
#[derive(Debug, Clone)]
struct Run {
    /// Best (smallest) depth of the attacker's relays.
    attacker_depth: usize,
    /// Live children the attacker's relays feed.
    attacker_children: usize,
    /// Each honest relay's live children and depth.
    honest: HashMap<String, (usize, usize)>,
    /// The origin's live children.
    origin_children: usize,
    /// Children left below a relay that does not feed them.
    unfed_children: usize,
}

fn play(setup: &Setup) -> Run {
    let mut net = Net::new(setup.self_check);
    let attackers: Vec<String> = (0..setup.attackers.len()).map(attacker_name).collect();
    match setup.attack {
        Attack::ReportParent => net.silent.extend(attackers.iter().cloned()),
        Attack::StarveChildren => net.starving.extend(attackers.iter().cloned()),
        _ => {}
    }
    for i in 0..setup.join_after {
        net.join(&honest_name(i), format!("10.0.{i}"), format!("op{i}"));
    }
    for (name, (subnet, operator)) in attackers.iter().zip(&setup.attackers) {
        net.join(name, (*subnet).to_owned(), (*operator).to_owned());
    }
    for i in setup.join_after..HONEST {
        net.join(&honest_name(i), format!("10.0.{i}"), format!("op{i}"));
    }
    let everyone: Vec<String> = (0..HONEST)
        .map(honest_name)
        .chain(attackers.iter().cloned())
        .collect();
    for _ in 0..ROUNDS {
        if setup.attack == Attack::Flap {
            // Gone for a liveness: its children find it dead and are re-homed.
            if let Some(flapper) = attackers.first() {
                net.members.remove(flapper);
                net.now += LIVENESS_MS;
                for node in &everyone {
                    if net.members.contains_key(node) {
                        let dead = net
                            .parent(node)
                            .filter(|p| *p != ORIGIN && !net.members.contains_key(*p))
                            .map(str::to_owned);
                        let failed: Vec<&str> = dead.iter().map(String::as_str).collect();
                        net.ask(node, &failed);
                    }
                }
                net.members.insert(flapper.clone(), K);
            }
        }
        if let (Attack::ClaimUpstream(upstream), Some(claimer)) = (&setup.attack, attackers.first())
        {
            net.claims.insert(claimer.clone(), (*upstream).to_owned());
        }
        for node in &everyone {
            let attacking = attackers.contains(node) && setup.attack == Attack::ReportParent;
            let parent = net.parent(node).map(str::to_owned);
            // An honest relay reports a parent that died or feeds it nothing.
            let failed: Vec<&str> = match parent.as_deref() {
                Some(p)
                    if p != ORIGIN
                        && (attacking
                            || !net.members.contains_key(p)
                            || net.starving.contains(p)) =>
                {
                    vec![p]
                }
                _ => Vec::new(),
            };
            net.ask(node, &failed);
        }
    }
    Run {
        attacker_depth: attackers
            .iter()
            .filter_map(|a| net.depth(a))
            .min()
            .unwrap_or(0),
        attacker_children: attackers.iter().map(|a| net.children(a)).sum(),
        honest: (0..HONEST)
            .map(honest_name)
            .map(|h| {
                let depth = net.depth(&h).unwrap_or(usize::MAX);
                (h.clone(), (net.children(&h), depth))
            })
            .collect(),
        origin_children: net.children(ORIGIN),
        unfed_children: net.starving.iter().map(|s| net.children(s)).sum(),
    }
}

/// One scenario's result against the same network behaving honestly.
#[derive(Clone, Debug, Serialize)]
pub struct TreeOutcome {
    /// The scenario.
    pub name: &'static str,
    /// Whether the coordinator checked reported relays itself.
    pub self_check: bool,
    /// The attacker's best depth in the baseline and under the attack (1: fed by the origin).
    pub attacker_depth: (usize, usize),
    /// Children the attacker's relays feed in the baseline and under the attack.
    pub attacker_children: (usize, usize),
    /// Tiers the attacker's best relay climbed (baseline depth minus its depth; 0 or less:
    /// none).
    pub climbed_tiers: i64,
    /// Relay credit the attacker's relays gained, bytes per hour: children fed beyond the
    /// baseline × an hour of the stream.
    pub attacker_credit_gain_bytes: i64,
    /// The bound the rules promise for that gain.
    pub bound_bytes: i64,
    /// Relay credit honest relays lost, bytes per hour (children they no longer feed).
    pub honest_credit_lost_bytes: i64,
    /// Honest relays that ended deeper than in the baseline.
    pub honest_deeper: usize,
    /// The origin's children (at most k).
    pub origin_copies: usize,
    /// Children left below a relay that feeds them nothing (it earns nothing for them).
    pub unfed_children: usize,
    /// Whether the attack stops service to the attacker's children: they must move, so
    /// honest relays may end deeper (the cost of any parent that stops; the attacker gains
    /// nothing from it).
    pub stops_service: bool,
}

fn compare(name: &'static str, setup: &Setup, bound_bytes: i64) -> TreeOutcome {
    let baseline = play(&Setup {
        attack: Attack::None,
        ..setup.clone()
    });
    let attacked = play(setup);
    let signed = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut lost = 0i64;
    let mut deeper = 0;
    for (node, (children, depth)) in &baseline.honest {
        let (now_children, now_depth) = attacked.honest.get(node).copied().unwrap_or((0, 0));
        lost += signed(children.saturating_sub(now_children)) * EDGE_HOUR_BYTES;
        if now_depth > *depth {
            deeper += 1;
        }
    }
    TreeOutcome {
        name,
        self_check: setup.self_check,
        attacker_depth: (baseline.attacker_depth, attacked.attacker_depth),
        attacker_children: (baseline.attacker_children, attacked.attacker_children),
        climbed_tiers: signed(baseline.attacker_depth) - signed(attacked.attacker_depth),
        attacker_credit_gain_bytes: (signed(attacked.attacker_children)
            - signed(baseline.attacker_children))
            * EDGE_HOUR_BYTES,
        bound_bytes,
        honest_credit_lost_bytes: lost,
        honest_deeper: deeper,
        origin_copies: attacked.origin_children,
        unfed_children: attacked.unfed_children,
        stops_service: setup.attack == Attack::StarveChildren,
    }
}

/// Runs every tree scenario.
pub fn run_all() -> Vec<TreeOutcome> {
    let apart = vec![("198.51.100", "mallory"), ("203.0.113", "trudy")];
    let one_operator = vec![("198.51.100", "mallory"), ("203.0.113", "mallory")];
    let single = vec![("198.51.100", "mallory")];
    let with = |attackers: &Vec<(&'static str, &'static str)>, attack: Attack, self_check| {
        let join_after = match attack {
            Attack::Flap | Attack::ClaimUpstream(_) | Attack::StarveChildren => 3,
            Attack::None | Attack::ReportParent => 12,
        };
        Setup {
            attackers: attackers.clone(),
            attack,
            self_check,
            join_after,
        }
    };
    vec![
        compare("honest tree", &with(&apart, Attack::None, true), 0),
        compare(
            "lying child reports its serving parent dead",
            &with(&single, Attack::ReportParent, true),
            0,
        ),
        compare(
            "two children of one operator report their parent",
            &with(&one_operator, Attack::ReportParent, false),
            0,
        ),
        compare(
            "two /24s and two operators report their parent",
            &with(&apart, Attack::ReportParent, true),
            0,
        ),
        compare(
            "two /24s and two operators, coordinator checks off",
            &with(&apart, Attack::ReportParent, false),
            i64::MAX,
        ),
        compare(
            "flapping to climb the tree",
            &with(&single, Attack::Flap, true),
            0,
        ),
        compare(
            "heartbeat names a granted upstream (the origin)",
            &with(&single, Attack::ClaimUpstream(ORIGIN), true),
            0,
        ),
        compare(
            "heartbeat names an upstream never granted",
            &with(&single, Attack::ClaimUpstream("h01"), true),
            0,
        ),
        compare(
            "parent answers serving but feeds none of its children",
            &with(&single, Attack::StarveChildren, true),
            0,
        ),
        compare(
            "parent feeds none of its children, coordinator checks off",
            &with(&single, Attack::StarveChildren, false),
            0,
        ),
    ]
}

/// The scenarios as a table.
pub fn table(outcomes: &[TreeOutcome]) -> String {
    let mut out = String::from(
        "| scenario | coordinator checks | attacker depth | children it feeds | tiers climbed | attacker relay credit gain (MB/h) | bound (MB/h) | honest credit lost (MB/h) | honest relays deeper | origin copies | children left unfed |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for o in outcomes {
        let bound = if o.bound_bytes == i64::MAX {
            "none".to_owned()
        } else {
            (o.bound_bytes / 1_000_000).to_string()
        };
        out.push_str(&format!(
            "| {} | {} | {} → {} | {} → {} | {} | {} | {} | {} | {} | {} | {} |\n",
            o.name,
            if o.self_check { "on" } else { "off" },
            o.attacker_depth.0,
            o.attacker_depth.1,
            o.attacker_children.0,
            o.attacker_children.1,
            o.climbed_tiers,
            o.attacker_credit_gain_bytes / 1_000_000,
            bound,
            o.honest_credit_lost_bytes / 1_000_000,
            o.honest_deeper,
            o.origin_copies,
            o.unfed_children,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_attacks_gain_no_position_or_credit_and_cost_honest_relays_nothing() {
        let outcomes = run_all();
        print!("{}", table(&outcomes));
        for o in &outcomes {
            assert!(
                o.origin_copies <= K,
                "{}: {} copies",
                o.name,
                o.origin_copies
            );
            assert!(
                o.attacker_credit_gain_bytes <= o.bound_bytes,
                "{}: gained {} bytes, bound {}",
                o.name,
                o.attacker_credit_gain_bytes,
                o.bound_bytes
            );
            assert_eq!(o.unfed_children, 0, "{}: children left unfed", o.name);
            if o.bound_bytes == 0 && !o.stops_service {
                assert!(
                    o.climbed_tiers <= 0,
                    "{}: climbed {}",
                    o.name,
                    o.climbed_tiers
                );
                assert_eq!(o.honest_credit_lost_bytes, 0, "{}", o.name);
                assert_eq!(o.honest_deeper, 0, "{}", o.name);
            }
        }
    }
}
