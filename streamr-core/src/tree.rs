//! The relay tree's rules: where each relaying node pulls a stream from, and when a reported
//! failure of a relay is believed. Sans-IO: the coordinator reads the stored tree, the
//! relays' measured fan-outs, the failure reports and its own checks, calls these functions,
//! and stores the moves they return; the simulator runs the same functions against its
//! attackers (`streamr-sim --tree-scenarios`).
//!
//! A position in the tree is worth money (a relay is paid on the receipts its children sign
//! for what it delivered), so these are economic rules:
//!
//! - **Layout** ([`Tree::choose_parent`]): the origin feeds at most k relays
//!   ([`Layout::origin_fanout`]); every other relay hangs below the shallowest relay with room,
//!   so the depth grows as log_k of the relays. A relay's room is its fan-out
//!   ([`Layout::members`]: k capped by its measured capacity; 0 for a relay whose probes pass
//!   too rarely, which so stays a leaf). A relay goes below a node of its own /24 or operator
//!   ([`Home`]) only when no other has room (that edge earns nothing). Ties are broken by id,
//!   so every replica decides alike.
//! - **Re-parenting** ([`Tree::rehome`]): a relay keeps its parent while its chain is live and
//!   it is among the parent's oldest children up to the fan-out. One child's report that its
//!   parent failed moves only that child, and only to a parent with room: a lying child can
//!   neither churn its siblings nor overfill the grandparent. A dead parent (no heartbeat) or
//!   a confirmed failure re-homes the parent's whole subtree in one decision.
//! - **Confirmation** ([`confirmed_failures`]): a report is believed on the parent's own word
//!   (its heartbeat lacks the stream) or the coordinator's own check of it
//!   ([`ParentCheck`]). Only where the coordinator cannot check for itself do two reporters
//!   below the parent corroborate each other, and only from distinct /24s and operators.
//! - **Where relays really are** ([`real_moves`]): a relay whose signed heartbeat names an
//!   upstream the coordinator granted it is recorded there, as its parent's newest child.
//!
//! ```
//! use std::collections::{HashMap, HashSet};
//! use streamr_core::tree::{Assignment, Layout, Tree, NO_HOMES};
//!
//! let members: HashMap<String, usize> =
//!     [("a".to_owned(), 2), ("b".to_owned(), 2), ("c".to_owned(), 2)].into();
//! let layout = Layout { origin: "o", origin_fanout: 2, members: &members, homes: &NO_HOMES };
//! let mut assignments: Vec<Assignment> = Vec::new();
//! for (at, relay) in ["a", "b", "c"].into_iter().enumerate() {
//!     let none = HashSet::new();
//!     for (node, parent) in Tree::rehome(&assignments, &layout, relay, &none, &none) {
//!         assignments.push(Assignment { node_id: node, parent_id: parent, assigned_at_ms: at as i64 });
//!     }
//! }
//! // The origin feeds two; the third relay hangs below the first.
//! assert_eq!(assignments[2].parent_id, "a");
//! ```

use std::collections::{HashMap, HashSet};

/// Longest chain walked from a relay to the origin; a longer one is taken for broken.
pub const MAX_DEPTH: usize = 64;

/// One relay's stored place in a stream's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The relaying node.
    pub node_id: String,
    /// The node it pulls the stream from (the origin or another relay).
    pub parent_id: String,
    /// When it was assigned this parent: a parent's older children keep their slots first.
    pub assigned_at_ms: i64,
}

/// A relay's report that it failed to pull the stream from a node of its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The node reported failed.
    pub node_id: String,
    /// The relay that reported it.
    pub reporter_id: String,
    /// When it reported it.
    pub reported_at_ms: i64,
}

/// What the coordinator's own check of a reported relay found (see [`confirmed_failures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParentCheck {
    /// The relay answered that a live session feeds it the stream: no report of it is
    /// believed, however many children make it (they move themselves only).
    Serving,
    /// The relay did not answer within the deadline, or answered that it does not carry the
    /// stream or that no media arrived: one report of it is believed.
    NotServing,
    /// The relay answered but cannot say (a node too old to know the question): reports
    /// corroborate each other as when the coordinator checks nothing.
    Unknown,
}

/// The stream's relay tree as stored, and who may be in it now.
pub struct Tree<'a> {
    /// The origin node (the root).
    origin: &'a str,
    /// Most relays the origin feeds.
    origin_fanout: usize,
    /// Live relays and how many children each may feed (0: leaf only).
    members: &'a HashMap<String, usize>,
    /// Each relay's parent.
    parents: HashMap<&'a str, &'a str>,
    /// Each node's /24 (`a.b.c`) and operator, where known: a relay is placed below a node of
    /// its own /24 or operator only when no other parent has room (that edge earns nothing).
    homes: &'a HashMap<String, Home>,
    /// Relays that take no new child (see [`unfed_parents`]): they keep the children they
    /// have, but nobody else is placed below them.
    closed: &'a HashSet<String>,
}

/// Where a node sits for the rewards: an edge between two nodes sharing either earns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// Its /24, `a.b.c`.
    pub subnet: String,
    /// Its operator.
    pub operator: String,
}

/// What a relay tree is built from, beside its assignments: see [`Tree`].
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The origin node (the root).
    pub origin: &'a str,
    /// Most relays the origin feeds.
    pub origin_fanout: usize,
    /// Live relays and how many children each may feed.
    pub members: &'a HashMap<String, usize>,
    /// Each node's /24 and operator.
    pub homes: &'a HashMap<String, Home>,
}

/// No /24 or operator known for any node.
pub static NO_HOMES: std::sync::LazyLock<HashMap<String, Home>> =
    std::sync::LazyLock::new(HashMap::new);

/// No relay closed to new children.
static NONE_CLOSED: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(HashSet::new);

/// The parent a move names when the relay's stored place is forgotten instead (see
/// [`decide`]): the storage deletes the relay's row, and the relay, back, is placed afresh.
pub const FORGOTTEN: &str = "";

impl<'a> Tree<'a> {
    /// The tree of `assignments` rooted at `origin`, with `members` the live relays and their
    /// fan-outs, no /24 or operator known.
    pub fn new(
        origin: &'a str,
        origin_fanout: usize,
        members: &'a HashMap<String, usize>,
        assignments: &'a [Assignment],
    ) -> Self {
        Tree {
            origin,
            origin_fanout,
            members,
            parents: assignments
                .iter()
                .map(|a| (a.node_id.as_str(), a.parent_id.as_str()))
                .collect(),
            homes: &NO_HOMES,
            closed: &NONE_CLOSED,
        }
    }

    /// The same tree knowing each node's /24 and operator.
    pub fn with_homes(mut self, homes: &'a HashMap<String, Home>) -> Self {
        self.homes = homes;
        self
    }

    /// The same tree where the relays in `closed` take no new child (see [`unfed_parents`]).
    pub fn with_closed(mut self, closed: &'a HashSet<String>) -> Self {
        self.closed = closed;
        self
    }

    /// Whether `a` and `b` are known to share a /24 or an operator.
    fn neighbours(&self, a: &str, b: &str) -> bool {
        match (self.homes.get(a), self.homes.get(b)) {
            (Some(a), Some(b)) => a.subnet == b.subnet || a.operator == b.operator,
            _ => false,
        }
    }

    /// `node`'s ancestors, parent first and origin last, when every one of them is live and
    /// not in `failed`; `None` when the chain is broken (no parent, a dead or failed
    /// ancestor, a cycle).
    pub fn chain(&self, node: &str, failed: &HashSet<String>) -> Option<Vec<&'a str>> {
        let mut chain: Vec<&'a str> = Vec::new();
        let mut current = node;
        loop {
            let parent = *self.parents.get(current)?;
            if parent == self.origin {
                chain.push(parent);
                return Some(chain);
            }
            if parent == node
                || chain.contains(&parent)
                || !self.members.contains_key(parent)
                || failed.contains(parent)
                || chain.len() >= MAX_DEPTH
            {
                return None;
            }
            chain.push(parent);
            current = parent;
        }
    }

    fn fanout(&self, node: &str) -> usize {
        if node == self.origin {
            self.origin_fanout
        } else {
            self.members.get(node).copied().unwrap_or(0)
        }
    }

    /// Children of `parent`, oldest assignment first, `but` left out.
    fn children<'t>(
        &self,
        assignments: &'t [Assignment],
        parent: &str,
        but: &str,
    ) -> Vec<&'t Assignment> {
        let mut children: Vec<&Assignment> = assignments
            .iter()
            .filter(|a| a.parent_id == parent && a.node_id != but)
            // Dead relays keep their rows (they return where they were) but hold no slot.
            .filter(|a| self.members.contains_key(&a.node_id))
            .collect();
        children
            .sort_by(|a, b| (a.assigned_at_ms, &a.node_id).cmp(&(b.assigned_at_ms, &b.node_id)));
        children
    }

    /// `node`'s stored ancestors, parent first, whatever their liveness (up to [`MAX_DEPTH`]):
    /// the chain whose reports the coordinator stores and checks.
    pub fn ancestry(&self, node: &str) -> Vec<&'a str> {
        let mut ancestry = Vec::new();
        let mut current = node;
        while let Some(&parent) = self.parents.get(current) {
            if ancestry.contains(&parent) || ancestry.len() >= MAX_DEPTH {
                break;
            }
            ancestry.push(parent);
            current = parent;
        }
        ancestry
    }

    /// The first of `node`'s ancestors (parent first, the origin never) that is dead (no
    /// heartbeat within the liveness) or in `failed`.
    fn gone_ancestor(&self, node: &str, failed: &HashSet<String>) -> Option<&'a str> {
        let mut current = node;
        for _ in 0..MAX_DEPTH {
            let parent = *self.parents.get(current)?;
            if parent == self.origin || parent == node {
                return None;
            }
            if !self.members.contains_key(parent) || failed.contains(parent) {
                return Some(parent);
            }
            current = parent;
        }
        None
    }

    /// The moves (`(relay, new parent)`) that follow `node`'s ask. When an ancestor of it is
    /// gone (missing heartbeats, or its failure `confirmed`: see [`confirmed_failures`]),
    /// every live child of that ancestor is re-parented in this one decision, oldest first,
    /// each under the shallowest healthy relay with room (see [`Tree::choose_parent`]) and
    /// taking its own subtree along; then `node` itself, if it still needs a parent. The
    /// children's subtrees keep their parents, so one ask heals the whole subtree of the dead
    /// relay. A node only `failed` (reported by `node` alone) moves `node` alone: `node` avoids
    /// it and may take its slot at its parent, while it and its other children stay, so a
    /// lying child can move nobody but itself.
    pub fn rehome(
        assignments: &[Assignment],
        layout: &Layout<'_>,
        node: &str,
        failed: &HashSet<String>,
        confirmed: &HashSet<String>,
    ) -> Vec<(String, String)> {
        Self::rehome_with(assignments, layout, node, (failed, confirmed), &NONE_CLOSED)
    }

    /// [`Tree::rehome`] with the relays in `closed` taking no new child.
    fn rehome_with(
        assignments: &[Assignment],
        layout: &Layout<'_>,
        node: &str,
        (failed, confirmed): (&HashSet<String>, &HashSet<String>),
        closed: &HashSet<String>,
    ) -> Vec<(String, String)> {
        let (origin, origin_fanout, homes) = (layout.origin, layout.origin_fanout, layout.homes);
        // A relay whose failure is confirmed holds no slot at its parent (as a dead one does
        // not), so its children may take its place there.
        let mut members = layout.members.clone();
        members.retain(|relay, _| !confirmed.contains(relay));
        let members = &members;
        let mut working: Vec<Assignment> = assignments.to_vec();
        let mut moves: Vec<(String, String)> = Vec::new();
        let mut apply = |working: &mut Vec<Assignment>, relay: &str, parent: String| {
            match working.iter_mut().find(|a| a.node_id == relay) {
                Some(row) => {
                    row.parent_id.clone_from(&parent);
                    // Newest: it holds a slot after the parent's earlier children.
                    row.assigned_at_ms = i64::MAX;
                }
                None => working.push(Assignment {
                    node_id: relay.to_owned(),
                    parent_id: parent.clone(),
                    assigned_at_ms: i64::MAX,
                }),
            }
            moves.retain(|(moved, _)| moved != relay);
            moves.push((relay.to_owned(), parent));
        };
        let gone = Tree::new(origin, origin_fanout, members, &working)
            .with_homes(homes)
            .gone_ancestor(node, confirmed)
            .map(str::to_owned);
        if let Some(gone) = gone {
            let orphans: Vec<String> = Tree::new(origin, origin_fanout, members, &working)
                .with_homes(homes)
                .children(&working, &gone, "")
                .iter()
                .map(|a| a.node_id.clone())
                .collect();
            let mut avoid = confirmed.clone();
            avoid.insert(gone);
            for orphan in orphans {
                let chosen = Tree::new(origin, origin_fanout, members, &working)
                    .with_homes(homes)
                    .with_closed(closed)
                    .choose_parent(&working, &orphan, &avoid);
                if let Some(parent) = chosen {
                    apply(&mut working, &orphan, parent);
                }
            }
        }
        // What `node` alone reports keeps its slot at its parent: `node` avoids it, but may
        // not take its place there (that would overfill the parent by one on a lie), and a
        // move the report alone causes goes only where there is room.
        let avoid: HashSet<String> = failed.union(confirmed).cloned().collect();
        let tree = Tree::new(origin, origin_fanout, members, &working)
            .with_homes(homes)
            .with_closed(closed);
        let chosen = tree.choose_parent(&working, node, &avoid);
        let unconfirmed = failed.iter().any(|f| !confirmed.contains(f));
        let placed = tree.parents.contains_key(node);
        let chosen = chosen
            .filter(|parent| !(unconfirmed && placed) || tree.has_room(&working, parent, node));
        if let Some(parent) = chosen {
            apply(&mut working, node, parent);
        }
        moves
    }

    /// Whether `parent` feeds fewer live children than its fan-out, `node` not counted.
    fn has_room(&self, assignments: &[Assignment], parent: &str, node: &str) -> bool {
        self.children(assignments, parent, node).len() < self.fanout(parent)
    }

    /// The parent `node` should have now, when it differs from the stored one (`None`: keep
    /// it). It keeps a parent whose chain is whole, that `failed` does not name and among
    /// whose oldest children (up to its fan-out) it is; otherwise it goes under the
    /// shallowest node with room that is not in its own subtree and, while another has room,
    /// not in its own /24 or operator (more room first, then by id: every replica chooses alike).
    /// With no room anywhere, under the shallowest relay feeding the fewest (a relay overfilled
    /// by one rather than the origin: the origin never feeds more than its fan-out); nowhere
    /// (`None`) when no relay can take it either. Costs O(relays × depth) over the tree in
    /// memory.
    pub fn choose_parent(
        &self,
        assignments: &[Assignment],
        node: &str,
        failed: &HashSet<String>,
    ) -> Option<String> {
        if let Some(&parent) = self.parents.get(node) {
            let whole = self.chain(node, failed).is_some() && !failed.contains(parent);
            let within = self
                .children(assignments, parent, "")
                .iter()
                .take(self.fanout(parent))
                .any(|a| a.node_id == node);
            if whole && within {
                return None;
            }
        }
        // Own /24 or operator last, then shallowest, then most room, then by id: every replica alike.
        let mut best: Option<(bool, usize, std::cmp::Reverse<usize>, &str)> = None;
        // With no room anywhere: own /24 or operator last, shallowest, fewest children, by id.
        let mut overflow: Option<(bool, usize, usize, &str)> = None;
        let candidates =
            std::iter::once(self.origin).chain(self.members.keys().map(String::as_str));
        for candidate in candidates {
            if candidate == node || failed.contains(candidate) {
                continue;
            }
            // A relay closed to new children keeps only those it has.
            if self.closed.contains(candidate) && self.parents.get(node) != Some(&candidate) {
                continue;
            }
            let depth = if candidate == self.origin {
                0
            } else {
                match self.chain(candidate, failed) {
                    // Not below `node` itself: that would make a cycle.
                    Some(chain) if !chain.contains(&node) => chain.len(),
                    _ => continue,
                }
            };
            let fanout = self.fanout(candidate);
            let neighbour = self.neighbours(node, candidate);
            if !self.has_room(assignments, candidate, node) {
                if candidate != self.origin {
                    let feeds = self.children(assignments, candidate, node).len();
                    let key = (neighbour, depth, feeds, candidate);
                    if overflow.is_none_or(|o| key < o) {
                        overflow = Some(key);
                    }
                }
                continue;
            }
            let key = (neighbour, depth, std::cmp::Reverse(fanout), candidate);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let chosen = best
            .map(|(_, _, _, id)| id)
            .or(overflow.map(|(_, _, _, id)| id))?;
        if self.parents.get(node) == Some(&chosen) {
            None
        } else {
            Some(chosen.to_owned())
        }
    }
}

/// One relay's ask for its place, with what the coordinator gathered for it (see [`decide`]).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The asking relay.
    pub node: &'a str,
    /// What it reports failed in this ask.
    pub failed: &'a HashSet<String>,
    /// The tree's root, fan-outs and homes.
    pub layout: Layout<'a>,
    /// What the coordinator knows itself about reported relays.
    pub evidence: Evidence<'a>,
    /// Where relays' heartbeats say they pull from, among upstreams the coordinator granted
    /// them (see [`real_moves`]).
    pub real: &'a HashMap<String, RealUpstream>,
    /// How long after an assignment a heartbeat may still predate the relay's switch.
    pub grace_ms: i64,
    /// The decision's time (moved relays are stored as assigned now).
    pub now_ms: i64,
    /// The edges `(child, parent)` whose child's own signed receipts show that the parent
    /// delivered it the stream lately (see [`unfed_parents`]).
    pub delivered: &'a HashSet<(String, String)>,
}

/// The moves (`(relay, new parent)`) one ask decides, as the coordinator decides them under
/// its per-stream lock with the stored tree and the reports of the last relay liveness (this
/// ask's included): first where relays really are ([`real_moves`]), then the asker's
/// re-parenting on that tree ([`Tree::rehome`]), the asker avoiding what it reported lately as
/// well as now, and the failures [`confirmed_failures`] believes re-homing whole subtrees.
/// Relays a child reported and whose receipts show them not feeding it ([`unfed_parents`])
/// take no new child in the decision.
///
/// A relay that is gone (no heartbeat, or its failure confirmed) keeps its stored place only
/// until another relay is placed below its parent in its stead: then its place is forgotten
/// (a move to [`FORGOTTEN`]), so when it comes back it is placed afresh where there is room,
/// as a new child, instead of taking its old slot back from the relay now serving there.
pub fn decide(
    assignments: &[Assignment],
    reports: &[Report],
    ask: &Ask<'_>,
) -> Vec<(String, String)> {
    let own: HashSet<String> = reports
        .iter()
        .filter(|r| r.reporter_id == ask.node)
        .map(|r| r.node_id.clone())
        .chain(ask.failed.iter().cloned())
        .collect();
    let confirmed = confirmed_failures(assignments, reports, &ask.evidence);
    // The origin is never closed: its k slots are the tree's root, and a relay it refuses (it
    // feeds k already) may well report it.
    let closed: HashSet<String> = unfed_parents(reports, ask.delivered)
        .into_iter()
        .filter(|node| !confirmed.contains(node) && node != ask.layout.origin)
        .collect();
    let mut moves = real_moves(assignments, &ask.layout, ask.real, ask.grace_ms);
    let mut working = assignments.to_vec();
    for (relay, parent) in &moves {
        if let Some(row) = working.iter_mut().find(|a| &a.node_id == relay) {
            row.parent_id.clone_from(parent);
            row.assigned_at_ms = ask.now_ms;
        }
    }
    let decided = Tree::rehome_with(&working, &ask.layout, ask.node, (&own, &confirmed), &closed);
    moves.retain(|(relay, _)| !decided.iter().any(|(moved, _)| moved == relay));
    moves.extend(decided);
    for (relay, parent) in &moves {
        match working.iter_mut().find(|a| &a.node_id == relay) {
            Some(row) => row.parent_id.clone_from(parent),
            None => working.push(Assignment {
                node_id: relay.clone(),
                parent_id: parent.clone(),
                assigned_at_ms: ask.now_ms,
            }),
        }
    }
    // The gone relays below a parent that took a relay in this decision: their slot is taken.
    let gone = |relay: &str| !ask.layout.members.contains_key(relay) || confirmed.contains(relay);
    let mut forgotten: Vec<String> = working
        .iter()
        .filter(|row| row.node_id != ask.node && gone(&row.node_id))
        .filter(|row| moves.iter().any(|(_, parent)| *parent == row.parent_id))
        .filter(|row| !moves.iter().any(|(moved, _)| *moved == row.node_id))
        .map(|row| row.node_id.clone())
        .collect();
    forgotten.sort();
    moves.extend(
        forgotten
            .into_iter()
            .map(|relay| (relay, FORGOTTEN.to_owned())),
    );
    moves
}

/// The relays a child reported failed (in `reports`) whose own signed receipts do not show
/// that relay delivering it the stream lately (`delivered`: the `(child, parent)` edges whose
/// receipts do): the evidence a parent cannot make up alone, for it holds no receipt its
/// child did not sign. Such a relay may still answer that it serves the stream (and may
/// serve its other children): the child's word stands against its own, so it is not taken for
/// failed (its other children keep their place; a lying child moves nobody but itself), but
/// it loses the reporting child, earns nothing for it (no receipt), and takes no new child
/// while the report stands (a relay liveness): a parent that stops feeding is handed no more
/// relays to starve.
pub fn unfed_parents(reports: &[Report], delivered: &HashSet<(String, String)>) -> HashSet<String> {
    reports
        .iter()
        .filter(|r| !delivered.contains(&(r.reporter_id.clone(), r.node_id.clone())))
        .map(|r| r.node_id.clone())
        .collect()
}

/// The reported nodes whose failure is believed, so their whole subtree is re-homed. A
/// report counts when its reporter was below the reported node when it reported (in its
/// subtree now, or placed at or after its report: moved by it; the coordinator stores only
/// reports of a node in the reporter's own chain). A reported node's failure is believed when:
/// - its own last heartbeat, sent after it took its place, does not list the stream
///   (`lacking`: node → the time of such a heartbeat): its own word;
/// - or the coordinator's own check of it found it not serving ([`ParentCheck::NotServing`]);
/// - or, only where the coordinator did not check it for itself (it checks nothing:
///   [`Evidence::self_check`] off, or the node could not say: [`ParentCheck::Unknown`]), two
///   reporters of distinct homes (neither their /24 nor their operator shared, both known: see
///   [`Home`]) report it, so two nodes of one operator or one /24 cannot evict an honest parent
///   between them.
///
/// A node the coordinator found serving ([`ParentCheck::Serving`]) is never confirmed by its
/// children, however many and however spread: a group holding several /24s and operators
/// among one parent's children moves only itself. With [`Evidence::self_check`] on, a node
/// not checked at all is not confirmed by children either: the coordinator checks every
/// reported node of the asking relay's chain before it decides.
///
/// Reports are those of the last relay liveness.
pub fn confirmed_failures(
    assignments: &[Assignment],
    reports: &[Report],
    evidence: &Evidence<'_>,
) -> HashSet<String> {
    let Evidence {
        lacking,
        checked,
        self_check,
        homes,
    } = evidence;
    let rows: HashMap<&str, &Assignment> = assignments
        .iter()
        .map(|a| (a.node_id.as_str(), a))
        .collect();
    let below = |reporter: &str, node: &str| {
        let mut current = reporter;
        for _ in 0..MAX_DEPTH {
            match rows.get(current) {
                Some(row) if row.parent_id == node => return true,
                Some(row) => current = row.parent_id.as_str(),
                None => return false,
            }
        }
        false
    };
    let mut reporters: HashMap<&str, HashSet<&str>> = HashMap::new();
    for report in reports {
        let was_below = below(&report.reporter_id, &report.node_id)
            || rows
                .get(report.reporter_id.as_str())
                .is_some_and(|row| row.assigned_at_ms >= report.reported_at_ms);
        if was_below {
            reporters
                .entry(report.node_id.as_str())
                .or_default()
                .insert(report.reporter_id.as_str());
        }
    }
    reporters
        .into_iter()
        .filter(|(node, by)| {
            let lacks = lacking.get(*node).is_some_and(|&heartbeat_ms| {
                rows.get(node)
                    .is_some_and(|row| heartbeat_ms > row.assigned_at_ms)
            });
            let corroborated = || distinct_homes(by, homes);
            lacks
                || match checked.get(*node) {
                    Some(ParentCheck::NotServing) => true,
                    Some(ParentCheck::Serving) => false,
                    Some(ParentCheck::Unknown) => corroborated(),
                    None => !self_check && corroborated(),
                }
        })
        .map(|(node, _)| node.to_owned())
        .collect()
}

/// What the coordinator knows itself about reported relays (see [`confirmed_failures`]).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Relays whose own last heartbeat lacks the stream: node → that heartbeat's time.
    pub lacking: &'a HashMap<String, i64>,
    /// What the coordinator's own check of reported relays found just now.
    pub checked: &'a HashMap<String, ParentCheck>,
    /// Whether the coordinator checks reported relays itself: then children's reports alone
    /// never confirm a relay it did not check (see [`confirmed_failures`]).
    pub self_check: bool,
    /// Each node's /24 and operator.
    pub homes: &'a HashMap<String, Home>,
}

/// Whether two of `reporters` are known to share neither their /24 nor their operator.
fn distinct_homes(reporters: &HashSet<&str>, homes: &HashMap<String, Home>) -> bool {
    let known: Vec<&Home> = reporters.iter().filter_map(|r| homes.get(*r)).collect();
    known.iter().enumerate().any(|(i, a)| {
        known
            .iter()
            .skip(i + 1)
            .any(|b| a.subnet != b.subnet && a.operator != b.operator)
    })
}

/// What a relay's last signed heartbeat says it pulls a stream from: the upstream node and the
/// heartbeat's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealUpstream {
    /// The node it pulls from.
    pub upstream: String,
    /// The signed time of the heartbeat that said so.
    pub heartbeat_ms: i64,
}

/// The moves that record relays where they really pull from: each relay in `real` whose
/// stored parent differs from the upstream its heartbeat names, when that heartbeat was sent
/// more than `grace_ms` after the stored assignment (a heartbeat sent sooner may predate the
/// relay's switch), the named upstream is the origin or a live relay, and it is not in the
/// relay's own subtree. `real` must hold only upstreams the coordinator itself granted the
/// relay for the stream (the coordinator checks its grants), so a heartbeat cannot place a relay
/// anywhere it was never sent. A relay recorded below a parent is its newest child: it holds
/// a slot there only while the parent has room, and otherwise moves at its next ask, so the
/// fan-out budgets count the relays parents really feed and no honest child is displaced.
pub fn real_moves(
    assignments: &[Assignment],
    layout: &Layout<'_>,
    real: &HashMap<String, RealUpstream>,
    grace_ms: i64,
) -> Vec<(String, String)> {
    let tree = Tree::new(
        layout.origin,
        layout.origin_fanout,
        layout.members,
        assignments,
    );
    let mut moves: Vec<(String, String)> = Vec::new();
    let mut relays: Vec<&String> = real.keys().collect();
    relays.sort();
    for relay in relays {
        let Some(reported) = real.get(relay) else {
            continue;
        };
        let Some(row) = assignments.iter().find(|a| &a.node_id == relay) else {
            continue;
        };
        let upstream = reported.upstream.as_str();
        if row.parent_id == upstream
            || reported.heartbeat_ms <= row.assigned_at_ms.saturating_add(grace_ms)
            || upstream == relay.as_str()
        {
            continue;
        }
        let known = upstream == layout.origin || layout.members.contains_key(upstream);
        // Not below the relay itself: the upstream's own stored chain must not pass it.
        let below_itself = tree.ancestry(upstream).iter().any(|a| a == relay);
        if known && !below_itself {
            moves.push((relay.clone(), upstream.to_owned()));
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(k: usize, members: &HashMap<String, usize>) -> Layout<'_> {
        Layout {
            origin: "o",
            origin_fanout: k,
            members,
            homes: &NO_HOMES,
        }
    }

    fn assign(node: &str, parent: &str, at: i64) -> Assignment {
        Assignment {
            node_id: node.into(),
            parent_id: parent.into(),
            assigned_at_ms: at,
        }
    }

    /// Adds relays one by one as `choose_parent` places them; returns the assignments.
    fn grow(members: &HashMap<String, usize>, order: &[String], k: usize) -> Vec<Assignment> {
        let mut assignments: Vec<Assignment> = Vec::new();
        for (at, node) in order.iter().enumerate() {
            let tree = Tree::new("o", k, members, &assignments);
            if let Some(parent) = tree.choose_parent(&assignments, node, &HashSet::new()) {
                let at = i64::try_from(at).unwrap_or(0);
                assignments.retain(|a| &a.node_id != node);
                assignments.push(assign(node, &parent, at));
            }
        }
        assignments
    }

    #[test]
    fn the_origin_feeds_k_relays_and_depth_grows_as_log_k() {
        let names: Vec<String> = (0..100).map(|i| format!("r{i:03}")).collect();
        let members: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 4)).collect();
        let assignments = grow(&members, &names, 4);
        let tree = Tree::new("o", 4, &members, &assignments);
        let under_origin = assignments.iter().filter(|a| a.parent_id == "o").count();
        assert_eq!(under_origin, 4);
        let depth = names
            .iter()
            .map(|n| tree.chain(n, &HashSet::new()).expect("whole chain").len())
            .max()
            .unwrap_or(0);
        // 4 + 16 + 64 = 84 relays fit in three tiers; 100 need a fourth.
        assert_eq!(depth, 4);
        for name in &names {
            let children = assignments.iter().filter(|a| &a.parent_id == name).count();
            assert!(children <= 4, "{name} feeds {children}");
        }
    }

    #[test]
    fn poor_relays_stay_leaves_and_a_dead_parent_is_replaced_with_its_subtree_kept() {
        let mut members: HashMap<String, usize> = ["a", "b", "c"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        members.insert("poor".into(), 0);
        let order: Vec<String> = ["poor", "a", "b", "c"]
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let assignments = grow(&members, &order, 2);
        // poor and a under the origin; b and c under a (poor feeds nobody).
        let parent = |n: &str| {
            assignments
                .iter()
                .find(|a| a.node_id == n)
                .map(|a| a.parent_id.clone())
        };
        assert_eq!(parent("poor").as_deref(), Some("o"));
        assert_eq!(parent("b").as_deref(), Some("a"));
        assert_eq!(parent("c").as_deref(), Some("a"));
        // a dies: b is re-parented (under the origin, where poor leaves a slot after a).
        members.remove("a");
        let tree = Tree::new("o", 2, &members, &assignments);
        assert_eq!(tree.chain("b", &HashSet::new()), None);
        assert_eq!(
            tree.choose_parent(&assignments, "b", &HashSet::new())
                .as_deref(),
            Some("o")
        );
        // A relay reporting its parent failed moves although the parent looks live.
        members.insert("a".into(), 2);
        let tree = Tree::new("o", 2, &members, &assignments);
        assert_eq!(tree.choose_parent(&assignments, "b", &HashSet::new()), None);
        let failed = HashSet::from(["a".to_owned()]);
        let moved = tree.choose_parent(&assignments, "b", &failed);
        assert!(
            moved.is_some() && moved.as_deref() != Some("a"),
            "{moved:?}"
        );
    }

    /// Applies `moves` to `assignments` as the storage does.
    fn apply(assignments: &mut Vec<Assignment>, moves: &[(String, String)], at: i64) {
        for (node, parent) in moves {
            assignments.retain(|a| &a.node_id != node);
            assignments.push(assign(node, parent, at));
        }
    }

    #[test]
    fn a_dead_inner_relays_whole_subtree_is_rehomed_in_one_decision_under_healthy_relays() {
        let names: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        let mut members: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 2)).collect();
        // Tiers of k = 2: r00 r01 | r02..r05 | r06..r11 (r09..r11 still have room).
        let mut assignments = grow(&members, &names, 2);
        let parent_of = |assignments: &[Assignment], n: &str| {
            assignments
                .iter()
                .find(|a| a.node_id == n)
                .map(|a| a.parent_id.clone())
        };
        let victim = parent_of(&assignments, "r06").expect("r06 placed");
        assert_ne!(victim, "o");
        let orphans: Vec<String> = assignments
            .iter()
            .filter(|a| a.parent_id == victim)
            .map(|a| a.node_id.clone())
            .collect();
        assert_eq!(orphans.len(), 2, "{assignments:?}");
        // A leaf below an orphan: it keeps its parent and goes along.
        apply(&mut assignments, &[("leaf".into(), orphans[0].clone())], 50);
        members.insert("leaf".into(), 2);

        // The victim misses its heartbeats; the leaf asks first (nothing failed for it).
        members.remove(&victim);
        let none = HashSet::new();
        let moves = Tree::rehome(&assignments, &layout(2, &members), "leaf", &none, &none);
        let moved: HashSet<&str> = moves.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            moved,
            orphans.iter().map(String::as_str).collect(),
            "both of the victim's children move at once, the leaf stays: {moves:?}"
        );
        apply(&mut assignments, &moves, 100);
        let tree = Tree::new("o", 2, &members, &assignments);
        for (node, parent) in &moves {
            assert_ne!(parent, "o", "the full origin is not taken: {moves:?}");
            assert!(
                members.get(parent).is_some_and(|&room| room > 0),
                "{parent}"
            );
            assert!(
                tree.chain(node, &HashSet::new()).is_some(),
                "{node} has a whole chain"
            );
        }
        assert_eq!(
            parent_of(&assignments, "leaf").as_deref(),
            Some(orphans[0].as_str())
        );
        assert!(tree.chain("leaf", &HashSet::new()).is_some());
        for name in members.keys().map(String::as_str).chain(["o"]) {
            let children = tree.children(&assignments, name, "").len();
            assert!(children <= 2, "{name} feeds {children}");
        }
        // The next ask changes nothing: the decision was whole.
        for orphan in &orphans {
            assert!(
                Tree::rehome(&assignments, &layout(2, &members), orphan, &none, &none).is_empty()
            );
        }
    }

    #[test]
    fn one_childs_report_moves_only_that_child_a_confirmed_one_moves_its_siblings_too() {
        let members: HashMap<String, usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        let assignments = vec![
            assign("a", "o", 0),
            assign("d", "o", 1),
            assign("b", "a", 2),
            assign("c", "a", 3),
        ];
        let failed = HashSet::from(["a".to_owned()]);
        // a still heartbeats; b alone says its pull from a broke: b leaves a for a parent
        // with room (d: a keeps its slot at the full origin), and c stays (b may be lying).
        let moves = Tree::rehome(
            &assignments,
            &layout(2, &members),
            "b",
            &failed,
            &HashSet::new(),
        );
        assert_eq!(moves, vec![("b".to_owned(), "d".to_owned())]);
        // Confirmed (another child reported a too, or a's heartbeat lacks the stream): b and
        // c both leave a in one decision; b takes a's slot, c goes below b.
        let moves = Tree::rehome(&assignments, &layout(2, &members), "b", &failed, &failed);
        assert_eq!(
            moves,
            vec![
                ("b".to_owned(), "o".to_owned()),
                ("c".to_owned(), "b".to_owned())
            ]
        );
    }

    /// The attack: a child says its healthy parent failed, so that it takes the parent's
    /// slot at the grandparent (a shallower, better paid place), overfilling it by one.
    #[test]
    fn a_lying_child_cannot_take_its_reported_parents_slot_at_the_grandparent() {
        let members: HashMap<String, usize> = ["a", "b", "c"]
            .iter()
            .map(|n| ((*n).to_owned(), 1))
            .collect();
        // A chain of fan-out 1: o → a → b → c. b still heartbeats; c says its pull broke.
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "a", 1),
            assign("c", "b", 2),
        ];
        let failed = HashSet::from(["b".to_owned()]);
        let none = HashSet::new();
        // Unconfirmed: a is full with b, and there is no room anywhere else: c keeps its
        // place (it avoids b in its own pulls) until the failure is confirmed.
        assert!(Tree::rehome(&assignments, &layout(1, &members), "c", &failed, &none).is_empty());
        // Confirmed (b's heartbeat lacks the stream, a probe found it down, or children of
        // distinct homes report it): b holds no slot, and c takes it at once.
        let moves = Tree::rehome(&assignments, &layout(1, &members), "c", &failed, &failed);
        assert_eq!(moves, vec![("c".to_owned(), "a".to_owned())]);
        // With room elsewhere (d under the origin), the liar goes there, not to a.
        let mut wider = members.clone();
        wider.insert("d".into(), 1);
        let mut with_d = assignments.clone();
        with_d.push(assign("d", "o", 3));
        let moves = Tree::rehome(&with_d, &layout(2, &wider), "c", &failed, &none);
        assert_eq!(moves, vec![("c".to_owned(), "d".to_owned())]);
    }

    proptest::proptest! {
        /// Fan-out bounds hold against any report: whatever relays a child names failed
        /// (unconfirmed), no parent ends up feeding more live children than its fan-out
        /// unless it already did.
        #[test]
        fn no_report_overfills_a_parent(
            fanouts in proptest::collection::vec(0usize..4, 2..14),
            k in 1usize..4,
            reporter in 0usize..14,
            reported in proptest::collection::vec(0usize..14, 1..3),
        ) {
            let names: Vec<String> = (0..fanouts.len()).map(|i| format!("r{i:02}")).collect();
            let members: HashMap<String, usize> =
                names.iter().cloned().zip(fanouts.iter().copied()).collect();
            let assignments = grow(&members, &names, k);
            let node = &names[reporter % names.len()];
            let failed: HashSet<String> =
                reported.iter().map(|i| names[i % names.len()].clone()).collect();
            let none = HashSet::new();
            let count = |assignments: &[Assignment], parent: &str| {
                assignments
                    .iter()
                    .filter(|a| a.parent_id == parent && members.contains_key(&a.node_id))
                    .count()
            };
            let moves = Tree::rehome(&assignments, &layout(k, &members), node, &failed, &none);
            let mut after = assignments.clone();
            apply(&mut after, &moves, 100);
            for parent in names.iter().map(String::as_str).chain(["o"]) {
                let bound = if parent == "o" { k } else { members[parent] };
                let before = count(&assignments, parent);
                let now = count(&after, parent);
                proptest::prop_assert!(
                    now <= bound.max(before),
                    "{parent} feeds {now} > {bound} (before {before}) after {moves:?}"
                );
            }
        }
    }

    fn report(node: &str, reporter: &str, at: i64) -> Report {
        Report {
            node_id: node.into(),
            reporter_id: reporter.into(),
            reported_at_ms: at,
        }
    }

    /// Every node in its own /24 with its own operator.
    fn distinct_homes_of(nodes: &[&str]) -> HashMap<String, Home> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let home = Home {
                    subnet: format!("10.0.{i}"),
                    operator: format!("op-{n}"),
                };
                ((*n).to_owned(), home)
            })
            .collect()
    }

    /// `confirmed_failures` with only `lacking` and `homes` as evidence.
    fn confirmed_by(
        assignments: &[Assignment],
        reports: &[Report],
        lacking: &HashMap<String, i64>,
        homes: &HashMap<String, Home>,
    ) -> HashSet<String> {
        let evidence = Evidence {
            lacking,
            checked: &HashMap::new(),
            self_check: false,
            homes,
        };
        confirmed_failures(assignments, reports, &evidence)
    }

    #[test]
    fn a_failure_is_confirmed_by_two_reporters_below_it_or_its_own_heartbeat() {
        // o → p → {x, y, z}; q elsewhere under o.
        let assignments = vec![
            assign("p", "o", 0),
            assign("q", "o", 1),
            assign("x", "p", 2),
            assign("y", "p", 3),
            assign("z", "p", 4),
        ];
        let none = HashMap::new();
        let homes = distinct_homes_of(&["o", "p", "q", "x", "y", "z"]);
        let confirmed = |reports: &[Report], lacking: &HashMap<String, i64>| {
            confirmed_by(&assignments, reports, lacking, &homes)
        };
        let p = HashSet::from(["p".to_owned()]);
        // One reporter, however often: not confirmed.
        assert!(confirmed(&[report("p", "x", 10)], &none).is_empty());
        // Two below p: confirmed.
        assert_eq!(
            confirmed(&[report("p", "x", 10), report("p", "y", 11)], &none),
            p
        );
        // A relay not below p (nor moved by its report) does not count.
        assert!(confirmed(&[report("p", "x", 10), report("p", "q", 11)], &none).is_empty());
        // A reporter that moved away at its report still counts (it was below p then)...
        let mut moved = assignments.clone();
        apply(&mut moved, &[("x".into(), "q".into())], 10);
        let reports = [report("p", "x", 10), report("p", "y", 11)];
        assert_eq!(confirmed_by(&moved, &reports, &none, &homes), p);
        // ...but not for a report made later from its new place.
        let reports = [report("p", "x", 12), report("p", "y", 13)];
        assert!(confirmed_by(&moved, &reports, &none, &homes).is_empty());
        // One report and p's own heartbeat, after it took its place, lacking the stream.
        let lacking = HashMap::from([("p".to_owned(), 5)]);
        assert_eq!(confirmed(&[report("p", "x", 10)], &lacking), p);
        // A heartbeat from before it took its place says nothing.
        let stale = HashMap::from([("p".to_owned(), 0)]);
        assert!(confirmed(&[report("p", "x", 10)], &stale).is_empty());
        // One report and the coordinator's own check of p failing.
        let not_serving = HashMap::from([("p".to_owned(), ParentCheck::NotServing)]);
        let evidence = Evidence {
            lacking: &none,
            checked: &not_serving,
            self_check: true,
            homes: &homes,
        };
        assert_eq!(
            confirmed_failures(&assignments, &[report("p", "x", 10)], &evidence),
            p
        );
    }

    /// The attack: two nodes of one operator (or one /24) get placed below an honest parent
    /// and both report it failed, evicting it and its other children from the tree (and from
    /// what they earn as relays). Two reporters corroborate only from distinct homes.
    #[test]
    fn two_colluding_children_of_one_operator_or_slash_24_cannot_confirm_a_false_failure() {
        // o → p → {x, y, z}.
        let assignments = vec![
            assign("p", "o", 0),
            assign("x", "p", 2),
            assign("y", "p", 3),
            assign("z", "p", 4),
        ];
        let home = |subnet: &str, operator: &str| Home {
            subnet: subnet.into(),
            operator: operator.into(),
        };
        let none = HashMap::new();
        let both = [report("p", "x", 10), report("p", "y", 11)];
        let with = |x: Home, y: Home| {
            let mut homes = distinct_homes_of(&["o", "p", "z"]);
            homes.insert("x".into(), x);
            homes.insert("y".into(), y);
            confirmed_by(&assignments, &both, &none, &homes)
        };
        // One operator on two /24s: not confirmed.
        assert!(with(home("10.1.1", "evil"), home("10.2.2", "evil")).is_empty());
        // Two operators on one /24: not confirmed.
        assert!(with(home("10.1.1", "evil-a"), home("10.1.1", "evil-b")).is_empty());
        // A reporter whose home is unknown proves nothing.
        let mut homes = distinct_homes_of(&["o", "p", "x"]);
        homes.remove("x");
        assert!(confirmed_by(&assignments, &both, &none, &homes).is_empty());
        // Distinct /24s and operators: confirmed.
        assert_eq!(
            with(home("10.1.1", "a"), home("10.2.2", "b")),
            HashSet::from(["p".to_owned()])
        );
        // A third reporter of a distinct home with one of a colluding pair: confirmed.
        let mut homes = distinct_homes_of(&["o", "p", "z"]);
        homes.insert("x".into(), home("10.1.1", "evil"));
        homes.insert("y".into(), home("10.2.2", "evil"));
        let three = [
            report("p", "x", 10),
            report("p", "y", 11),
            report("p", "z", 12),
        ];
        assert_eq!(
            confirmed_by(&assignments, &three, &none, &homes),
            HashSet::from(["p".to_owned()])
        );
    }

    #[test]
    fn a_relay_is_recorded_where_its_heartbeat_says_it_pulls_from() {
        let members: HashMap<String, usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        // o → {a, b}; a → c; c → d. d was moved below c at 100, but its answer was lost and
        // it still pulls from a (its old parent, an ancestor it holds a grant for).
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "o", 1),
            assign("c", "a", 2),
            assign("d", "c", 100),
        ];
        let real = |upstream: &str, at: i64| {
            HashMap::from([(
                "d".to_owned(),
                RealUpstream {
                    upstream: upstream.into(),
                    heartbeat_ms: at,
                },
            )])
        };
        let layout = layout(2, &members);
        // Recorded below a, once its heartbeat is well after the move.
        assert_eq!(
            real_moves(&assignments, &layout, &real("a", 200), 50),
            vec![("d".to_owned(), "a".to_owned())]
        );
        // A heartbeat within the grace may predate the switch: nothing moves.
        assert!(real_moves(&assignments, &layout, &real("a", 140), 50).is_empty());
        // Where it is stored already, or an unknown node, or below itself: nothing moves.
        assert!(real_moves(&assignments, &layout, &real("c", 200), 50).is_empty());
        assert!(real_moves(&assignments, &layout, &real("stranger", 200), 50).is_empty());
        let mut below = assignments.clone();
        below.push(assign("e", "d", 101));
        let mut with_e = members.clone();
        with_e.insert("e".into(), 2);
        assert!(real_moves(
            &below,
            &super::tests::layout(2, &with_e),
            &real("e", 200),
            50
        )
        .is_empty());
        // The budgets count it at a, as its newest child: a full parent's older children keep
        // their slots, and d (beyond a's fan-out) moves at its next ask.
        let mut recorded = assignments.clone();
        apply(&mut recorded, &[("d".into(), "a".into())], 200);
        let mut full = recorded.clone();
        full.push(assign("f", "a", 150));
        let mut with_f = members.clone();
        with_f.insert("f".into(), 2);
        let tree = Tree::new("o", 2, &with_f, &full);
        assert_eq!(tree.children(&full, "a", "").len(), 3);
        let moved = tree.choose_parent(&full, "d", &HashSet::new());
        assert!(
            moved.is_some() && moved.as_deref() != Some("a"),
            "{moved:?}"
        );
        assert_eq!(tree.choose_parent(&full, "f", &HashSet::new()), None);
        assert_eq!(tree.choose_parent(&full, "c", &HashSet::new()), None);
    }

    #[test]
    fn a_relay_goes_below_a_node_of_its_own_slash_24_or_operator_only_when_no_other_has_room() {
        let members: HashMap<String, usize> = ["a", "b", "c", "x"]
            .iter()
            .map(|n| ((*n).to_owned(), 1))
            .collect();
        let home = |subnet: &str, operator: &str| Home {
            subnet: subnet.into(),
            operator: operator.into(),
        };
        let homes: HashMap<String, Home> = [
            ("o", home("192.0.2", "op-o")),
            ("a", home("10.0.0", "op-a")),
            ("b", home("10.0.1", "op-x")),
            ("c", home("10.0.2", "op-c")),
            ("x", home("10.0.0", "op-x")),
        ]
        .into_iter()
        .map(|(n, h)| (n.to_owned(), h))
        .collect();
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "o", 1),
            assign("c", "o", 2),
        ];
        // a and b come first by id, but a shares x's /24 and b its operator: x goes below c.
        let tree = Tree::new("o", 3, &members, &assignments).with_homes(&homes);
        assert_eq!(
            tree.choose_parent(&assignments, "x", &HashSet::new())
                .as_deref(),
            Some("c")
        );
        // c is full: a neighbour is still better than no room.
        let mut full = assignments.clone();
        full.push(assign("y", "c", 3));
        let mut members = members.clone();
        members.insert("y".into(), 0);
        let tree = Tree::new("o", 3, &members, &full).with_homes(&homes);
        assert_eq!(
            tree.choose_parent(&full, "x", &HashSet::new()).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_relay_never_goes_below_its_own_subtree() {
        let members: HashMap<String, usize> = ["a", "b", "x"]
            .iter()
            .map(|n| ((*n).to_owned(), 4))
            .collect();
        // The origin is full (fan-out 1, taken by x); b is a's child.
        let assignments = vec![
            assign("x", "o", 0),
            assign("a", "o", 1),
            assign("b", "a", 2),
        ];
        let tree = Tree::new("o", 1, &members, &assignments);
        // a is beyond the origin's fan-out: it must move, but not under b.
        let moved = tree.choose_parent(&assignments, "a", &HashSet::new());
        assert_ne!(moved.as_deref(), Some("b"));
    }

    /// The attack the /24-and-operator rule leaves open: a group holding two /24s and two
    /// operators gets two relays below one honest parent; both report it failed. Where the
    /// coordinator checks the parent itself and sees it serve, that corroborates nothing.
    #[test]
    fn a_group_of_two_slash_24s_and_two_operators_cannot_confirm_a_parent_seen_serving() {
        // o → p → {x, y, z}; x and y are the group's (distinct /24s and operators).
        let assignments = vec![
            assign("p", "o", 0),
            assign("x", "p", 2),
            assign("y", "p", 3),
            assign("z", "p", 4),
        ];
        let homes = distinct_homes_of(&["o", "p", "x", "y", "z"]);
        let none = HashMap::new();
        let both = [report("p", "x", 10), report("p", "y", 11)];
        let with = |checked: &HashMap<String, ParentCheck>, self_check: bool| {
            let evidence = Evidence {
                lacking: &none,
                checked,
                self_check,
                homes: &homes,
            };
            confirmed_failures(&assignments, &both, &evidence)
        };
        let p = HashSet::from(["p".to_owned()]);
        let check = |c: ParentCheck| HashMap::from([("p".to_owned(), c)]);
        // Seen serving: not confirmed, and no more with the honest child z reporting too.
        assert!(with(&check(ParentCheck::Serving), true).is_empty());
        let three = [
            report("p", "x", 10),
            report("p", "y", 11),
            report("p", "z", 12),
        ];
        let evidence = Evidence {
            lacking: &none,
            checked: &check(ParentCheck::Serving),
            self_check: true,
            homes: &homes,
        };
        assert!(confirmed_failures(&assignments, &three, &evidence).is_empty());
        // Checking on but p not checked in this decision: children alone confirm nothing.
        assert!(with(&HashMap::new(), true).is_empty());
        // Seen not serving: confirmed (one report would do).
        assert_eq!(with(&check(ParentCheck::NotServing), true), p);
        // The node could not say, or the coordinator checks nothing: the old rule (two
        // reporters of distinct /24s and operators).
        assert_eq!(with(&check(ParentCheck::Unknown), true), p);
        assert_eq!(with(&HashMap::new(), false), p);
        // Its own heartbeat lacking the stream outweighs a check that saw it serve.
        let lacking = HashMap::from([("p".to_owned(), 5)]);
        let evidence = Evidence {
            lacking: &lacking,
            checked: &check(ParentCheck::Serving),
            self_check: true,
            homes: &homes,
        };
        assert_eq!(
            confirmed_failures(&assignments, &[report("p", "x", 10)], &evidence),
            p
        );
    }

    proptest::proptest! {
        /// Whatever children report, however many and from whatever homes, a relay the
        /// coordinator saw serving (and whose own heartbeat carries the stream) is never
        /// confirmed failed, so no child but a reporter moves.
        #[test]
        fn no_reports_confirm_a_relay_seen_serving(
            fanouts in proptest::collection::vec(1usize..4, 2..12),
            k in 1usize..4,
            reports in proptest::collection::vec((0usize..12, 0usize..12, 0i64..200), 0..12),
            subnets in proptest::collection::vec(0u8..4, 12),
            operators in proptest::collection::vec(0u8..4, 12),
        ) {
            let names: Vec<String> = (0..fanouts.len()).map(|i| format!("r{i:02}")).collect();
            let members: HashMap<String, usize> =
                names.iter().cloned().zip(fanouts.iter().copied()).collect();
            let assignments = grow(&members, &names, k);
            let homes: HashMap<String, Home> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (n.clone(), Home {
                        subnet: format!("10.0.{}", subnets[i]),
                        operator: format!("op{}", operators[i]),
                    })
                })
                .collect();
            let reports: Vec<Report> = reports
                .iter()
                .map(|&(node, reporter, at)| {
                    report(&names[node % names.len()], &names[reporter % names.len()], at)
                })
                .collect();
            let checked: HashMap<String, ParentCheck> = names
                .iter()
                .map(|n| (n.clone(), ParentCheck::Serving))
                .collect();
            let evidence = Evidence {
                lacking: &HashMap::new(),
                checked: &checked,
                self_check: true,
                homes: &homes,
            };
            let confirmed = confirmed_failures(&assignments, &reports, &evidence);
            proptest::prop_assert!(confirmed.is_empty(), "{confirmed:?}");
            // And the reporters' asks move no relay but the asker.
            for r in &reports {
                let failed = HashSet::from([r.node_id.clone()]);
                let moves = Tree::rehome(
                    &assignments, &layout(k, &members), &r.reporter_id, &failed, &confirmed,
                );
                for (moved, _) in &moves {
                    proptest::prop_assert_eq!(moved, &r.reporter_id);
                }
            }
        }
    }

    /// Decides `node`'s ask (reporting `failed`) with no evidence but `delivered`, and
    /// applies the moves at `now` as the storage does (a move to [`FORGOTTEN`] deletes).
    fn decide_and_apply(
        assignments: &mut Vec<Assignment>,
        reports: &[Report],
        members: &HashMap<String, usize>,
        (k, node, failed): (usize, &str, &[&str]),
        delivered: &HashSet<(String, String)>,
        now: i64,
    ) -> Vec<(String, String)> {
        let failed: HashSet<String> = failed.iter().map(|f| (*f).to_owned()).collect();
        let none = HashMap::new();
        let ask = Ask {
            node,
            failed: &failed,
            layout: layout(k, members),
            evidence: Evidence {
                lacking: &none,
                checked: &HashMap::new(),
                self_check: false,
                homes: &NO_HOMES,
            },
            real: &HashMap::new(),
            grace_ms: 0,
            now_ms: now,
            delivered,
        };
        let moves = decide(assignments, reports, &ask);
        for (relay, parent) in &moves {
            assignments.retain(|a| &a.node_id != relay);
            if parent != FORGOTTEN {
                assignments.push(assign(relay, parent, now));
            }
        }
        moves
    }

    fn parent_of(assignments: &[Assignment], node: &str) -> Option<String> {
        assignments
            .iter()
            .find(|a| a.node_id == node)
            .map(|a| a.parent_id.clone())
    }

    /// The flap: a relay leaves, an orphan of it takes its slot at the origin, and it comes
    /// back. It rejoins as a new child where there is room; the relay serving in its old slot
    /// keeps it.
    #[test]
    fn a_returning_relay_rejoins_where_there_is_room_and_the_relay_in_its_old_slot_stays() {
        let mut members: HashMap<String, usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        // o → {a, b}; a → {c, d}.
        let mut tree = vec![
            assign("a", "o", 0),
            assign("b", "o", 1),
            assign("c", "a", 2),
            assign("d", "a", 3),
        ];
        let delivered = HashSet::new();
        // a dies; c reports it: c takes a's slot at the origin, d goes below b, and a's own
        // place is forgotten.
        members.remove("a");
        let moves = decide_and_apply(&mut tree, &[], &members, (2, "c", &["a"]), &delivered, 100);
        assert!(
            moves.contains(&("a".to_owned(), FORGOTTEN.to_owned())),
            "{moves:?}"
        );
        assert_eq!(parent_of(&tree, "c").as_deref(), Some("o"));
        assert_eq!(parent_of(&tree, "a"), None);
        // a comes back and asks: the origin is full (b, c), so it goes below a relay with room.
        members.insert("a".into(), 2);
        decide_and_apply(&mut tree, &[], &members, (2, "a", &[]), &delivered, 200);
        let back = parent_of(&tree, "a").expect("a placed");
        assert_ne!(back, "o");
        // c keeps the slot it serves from, at its own next ask too.
        assert_eq!(parent_of(&tree, "c").as_deref(), Some("o"));
        let moves = decide_and_apply(&mut tree, &[], &members, (2, "c", &[]), &delivered, 300);
        assert!(moves.is_empty(), "{moves:?}");
        let under_origin = tree.iter().filter(|a| a.parent_id == "o").count();
        assert_eq!(under_origin, 2);
        // A gone relay nobody took the place of keeps it (it comes back where it was).
        members.remove("d");
        let moves = decide_and_apply(&mut tree, &[], &members, (2, "b", &[]), &delivered, 400);
        assert!(moves.is_empty(), "{moves:?}");
        assert!(parent_of(&tree, "d").is_some());
    }

    /// The attack: a parent answers that it serves but does not feed its child. The child's
    /// own receipts show nothing delivered: the child leaves, the parent's other children
    /// stay, and it is handed no new child while the report stands.
    #[test]
    fn a_parent_its_childs_receipts_show_unfed_takes_no_new_child_and_keeps_its_others() {
        let members: HashMap<String, usize> = ["p", "q", "x", "y", "n"]
            .iter()
            .map(|n| ((*n).to_owned(), 3))
            .collect();
        // o → {p, q}; p → {x, y}.
        let start = vec![
            assign("p", "o", 0),
            assign("q", "o", 1),
            assign("x", "p", 2),
            assign("y", "p", 3),
        ];
        let reports = [report("p", "x", 10)];
        let unfed = HashSet::new();
        let fed = HashSet::from([("x".to_owned(), "p".to_owned())]);
        assert_eq!(
            unfed_parents(&reports, &unfed),
            HashSet::from(["p".to_owned()])
        );
        assert!(unfed_parents(&reports, &fed).is_empty());
        // Unfed: x leaves p, y stays, and a new relay goes below q, not p (p sorts first).
        let mut tree = start.clone();
        decide_and_apply(&mut tree, &reports, &members, (2, "x", &["p"]), &unfed, 20);
        assert_ne!(parent_of(&tree, "x").as_deref(), Some("p"));
        let moves = decide_and_apply(&mut tree, &reports, &members, (2, "y", &[]), &unfed, 21);
        assert!(moves.is_empty(), "{moves:?}");
        decide_and_apply(&mut tree, &reports, &members, (2, "n", &[]), &unfed, 22);
        assert_eq!(parent_of(&tree, "n").as_deref(), Some("q"));
        // A report of the origin (no receipts: it is paid otherwise) never closes it.
        let mut tree = vec![assign("p", "o", 0)];
        let of_origin = [report("o", "p", 10)];
        decide_and_apply(&mut tree, &of_origin, &members, (2, "n", &[]), &unfed, 22);
        assert_eq!(parent_of(&tree, "n").as_deref(), Some("o"));
        // The same report with receipts showing p fed x: p takes the new relay.
        let mut tree = start;
        decide_and_apply(&mut tree, &reports, &members, (2, "x", &["p"]), &fed, 20);
        decide_and_apply(&mut tree, &reports, &members, (2, "n", &[]), &fed, 22);
        assert_eq!(parent_of(&tree, "n").as_deref(), Some("p"));
    }

    #[test]
    fn with_no_room_anywhere_a_relay_overfills_a_relay_never_the_origin() {
        let mut members: HashMap<String, usize> = HashMap::new();
        members.insert("a".into(), 1);
        members.insert("b".into(), 0);
        members.insert("n".into(), 0);
        // o → a → b: the origin (k = 1) and a are full, b feeds nobody.
        let tree = vec![assign("a", "o", 0), assign("b", "a", 1)];
        let chosen = Tree::new("o", 1, &members, &tree).choose_parent(&tree, "n", &HashSet::new());
        assert_eq!(chosen.as_deref(), Some("a"));
    }

    proptest::proptest! {
        /// Whatever relays join, die, come back and report, the stored tree never has the
        /// origin feed more than k live relays after any decision.
        #[test]
        fn the_origin_never_feeds_more_than_k(
            fanouts in proptest::collection::vec(0usize..3, 2..10),
            k in 1usize..4,
            steps in proptest::collection::vec((0usize..10, 0u8..4, 0usize..10), 1..40),
        ) {
            let names: Vec<String> = (0..fanouts.len()).map(|i| format!("r{i:02}")).collect();
            let all: HashMap<String, usize> =
                names.iter().cloned().zip(fanouts.iter().copied()).collect();
            let mut members = all.clone();
            let mut tree: Vec<Assignment> = Vec::new();
            let mut reports: Vec<Report> = Vec::new();
            let delivered = HashSet::new();
            for (at, &(who, action, other)) in steps.iter().enumerate() {
                let now = i64::try_from(at).unwrap_or(0) * 100 + 100;
                let node = &names[who % names.len()];
                let other = &names[other % names.len()];
                match action {
                    // Dies.
                    0 => {
                        members.remove(node);
                        continue;
                    }
                    // Comes back.
                    1 => {
                        members.insert(node.clone(), all[node]);
                    }
                    _ => {}
                }
                if !members.contains_key(node) {
                    continue;
                }
                let failed: Vec<&str> = if action == 3 && other != node {
                    reports.push(report(other, node, now));
                    vec![other.as_str()]
                } else {
                    Vec::new()
                };
                decide_and_apply(&mut tree, &reports, &members, (k, node, &failed), &delivered, now);
                let fed = tree
                    .iter()
                    .filter(|a| a.parent_id == "o" && members.contains_key(&a.node_id))
                    .count();
                proptest::prop_assert!(fed <= k, "the origin feeds {fed} > {k}: {tree:?}");
            }
        }
    }
}
