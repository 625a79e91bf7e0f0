//! Relay-tree scenarios: relays paid on their children's receipts, and the attacks on that
//! (`streamr-sim --relay-scenarios`).
//!
//! Each scenario builds one epoch of a small relay tree with the real pipeline: the coordinator
//! signs every grant (viewers' and the tree edges', which name the child's node key as the
//! viewer), viewers and children sign cumulative receipts over the origin's segment chain, the
//! verifier checks them, the fraud rules assess and the pool is split. It is run once as the
//! honest baseline and once with the attack, and reports what the attacker's nodes were credited
//! beyond the baseline (bytes: eligible verified bytes plus counted unattested bytes at the
//! discount) against the bound the rules promise: what the attacker's subtree really delivered
//! to viewers, never more than one stream per edge.

use std::collections::BTreeMap;

use serde::Serialize;
use streamr_core::{
    segment_hash, split_pool, EpochObservations, FraudConfig, FraudEngine, IssuedGrant, KeyPair,
    NodeClaims, NodeId, NodeProfile, OperatorId, OriginDigests, ProbeSummary, ReceiptTally,
    ReceiptVerifier, RewardConfig, RuleId, SegmentChain, SegmentRecord, SessionGrant, SessionId,
    Signed, SignedReceipt, StreamId, Subnet24, VerifierConfig, ViewerKey, ViewerProfile,
    ViewerReceipt,
};

/// Stream bitrate, bytes per second (4 Mbit/s).
const BITRATE: u64 = 500_000;
const EPOCH_MS: u64 = 3_600_000;
const SEGMENT_MS: u64 = 2_000;
const RECEIPT_MS: u64 = 60_000;
const T0_MS: u64 = 1_800_000_000_000;
const EPOCH: u64 = T0_MS / EPOCH_MS;
const POOL: u64 = 1_000_000_000;

/// What a child signs for an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signing {
    /// What the parent delivered.
    Honest,
    /// `factor` times what was delivered.
    Inflated(u64),
}

/// Which segment chain the receipts are over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// The MPEG-TS rendition.
    Ts,
    /// The LL-HLS (fMP4) rendition: its own segment hashes, parts concatenated.
    Ll,
}

/// One session: `node` delivers `minutes` of stream `stream` to `to`.
#[derive(Clone, Debug)]
struct Session {
    node: usize,
    to: Receiver,
    minutes: u64,
    signing: Signing,
    chain: Chain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    /// A viewer (by index).
    Viewer(usize),
    /// A relay child (node index): a tree edge.
    Child(usize),
}

/// One scenario's network for one epoch.
#[derive(Clone, Debug, Default)]
struct World {
    /// Operator of each node (index); each node has its own /24 unless `subnet` says otherwise.
    operators: Vec<&'static str>,
    sessions: Vec<Session>,
    /// Edge grants issued but never pulled on: (parent, child, index of a stream never served).
    idle_edges: Vec<(usize, usize, usize)>,
    /// Unattested bytes each node claims beyond its silent sessions.
    unattested: BTreeMap<usize, u64>,
    /// Receipts of an earlier epoch the parent hands in again: (session index).
    replayed: Vec<usize>,
}

const ORIGIN: usize = 0;
const H1: usize = 1;
const H2: usize = 2;
const L1: usize = 3;
const L2: usize = 4;
/// Unrelated honest nodes serving viewers: 5..=12.
const OTHERS: std::ops::RangeInclusive<usize> = 5..=12;
/// The attacker's parent.
const A: usize = 13;
/// A child of the attacker's own operator, in its /24.
const M: usize = 14;
/// A child of a second operator colluding with the attacker.
const C: usize = 15;

fn viewer_session(node: usize, viewer: usize, minutes: u64) -> Session {
    Session {
        node,
        to: Receiver::Viewer(viewer),
        minutes,
        signing: Signing::Honest,
        chain: Chain::Ts,
    }
}

fn edge(parent: usize, child: usize, minutes: u64) -> Session {
    Session {
        to: Receiver::Child(child),
        ..viewer_session(parent, 0, minutes)
    }
}

/// The honest network: the origin feeds H1 and H2; H1 feeds L1, H2 feeds L2 (the whole hour);
/// viewers watch on H1 (1 × 60 min), L1 (2 × 60 min) and L2 (1 × 30 min); eight other nodes and
/// the attacker's A serve viewers of their own.
fn honest() -> World {
    let mut operators = vec!["origin", "h1", "h2", "l1", "l2"];
    operators.extend(["o5", "o6", "o7", "o8", "o9", "o10", "o11", "o12"]);
    operators.extend(["evil", "evil", "accomplice"]);
    let mut sessions = vec![
        edge(ORIGIN, H1, 60),
        edge(ORIGIN, H2, 60),
        edge(H1, L1, 60),
        edge(H2, L2, 60),
        viewer_session(H1, 1, 60),
        viewer_session(L1, 2, 60),
        viewer_session(L1, 3, 60),
        viewer_session(L2, 4, 30),
    ];
    let mut viewer = 10;
    for node in OTHERS.chain([A]) {
        for _ in 0..2 {
            sessions.push(viewer_session(node, viewer, 45));
            viewer += 1;
        }
    }
    World {
        operators,
        sessions,
        ..World::default()
    }
}

/// What one epoch came to.
#[derive(Debug, Default)]
struct Settled {
    /// Per node: eligible verified bytes plus unattested bytes at the discount.
    credited: BTreeMap<usize, u64>,
    /// Per node: its reward.
    rewards: BTreeMap<usize, u64>,
    /// Nodes penalized.
    penalized: Vec<usize>,
    /// Rules that fired, per node.
    rules: BTreeMap<usize, Vec<RuleId>>,
    /// Receipts the verifier refused.
    rejected: usize,
}

fn node_key(i: usize) -> KeyPair {
    let mut seed = [0x51u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(seed)
}

fn viewer_keypair(i: usize) -> KeyPair {
    let mut seed = [0x7au8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(seed)
}

fn session_id(i: usize, epoch_offset: u64) -> SessionId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    bytes[8..].copy_from_slice(&epoch_offset.to_be_bytes());
    SessionId::from_bytes(bytes)
}

/// The origin's chains of both renditions over `epochs` epochs from T0.
fn origin(stream: &StreamId, epochs: u64) -> (OriginDigests, OriginDigests) {
    let mut ts = OriginDigests::new();
    let mut ll = OriginDigests::new();
    let mut ts_chain = SegmentChain::genesis(0);
    let mut ll_chain = SegmentChain::genesis(0);
    for seq in 0..epochs * EPOCH_MS / SEGMENT_MS {
        let published_ms = T0_MS + seq * SEGMENT_MS;
        let ts_digest = ts_chain.push(&segment_hash(
            &[b"ts".as_slice(), &seq.to_be_bytes()].concat(),
        ));
        // An fMP4 segment is its parts concatenated; its hash is over all of them.
        let parts: Vec<u8> = (0..4u8)
            .flat_map(|part| [b'p', part].into_iter().chain(seq.to_be_bytes()))
            .collect();
        let ll_digest = ll_chain.push(&segment_hash(&parts));
        ts.insert(
            stream.clone(),
            seq,
            SegmentRecord {
                digest: ts_digest,
                published_ms,
            },
        );
        ll.insert(
            stream.clone(),
            seq,
            SegmentRecord {
                digest: ll_digest,
                published_ms,
            },
        );
    }
    (ts, ll)
}

/// Cumulative receipts for `session` over `minutes` from `start_ms`, signed by `signer`.
fn receipts(
    id: SessionId,
    session: &Session,
    start_ms: u64,
    content: &OriginDigests,
    stream: &StreamId,
    signer: &KeyPair,
) -> Vec<SignedReceipt> {
    use streamr_core::SegmentDigestSource;
    let end = start_ms + session.minutes * 60_000;
    let factor = match session.signing {
        Signing::Honest => 1,
        Signing::Inflated(factor) => factor,
    };
    let mut out = Vec::new();
    let mut t = start_ms;
    let mut seq = 0;
    while t < end {
        t = (t + RECEIPT_MS).min(end);
        let segment = (t - T0_MS) / SEGMENT_MS - 1;
        let Some(record) = content.segment(stream, segment) else {
            break;
        };
        seq += 1;
        out.push(Signed::sign(
            ViewerReceipt {
                session_id: id,
                seq,
                bytes_total: BITRATE * (t - start_ms) / 1_000 * factor,
                last_segment_seq: segment,
                segments_digest: record.digest,
                t_ms: t,
            },
            signer,
        ));
    }
    out
}

/// Runs one epoch of `world` through grants, receipts, verification, the rules and the split.
fn settle(world: &World) -> Settled {
    let coordinator = KeyPair::from_seed([0xc0; 32]);
    let stream = StreamId::new("live").unwrap_or_else(|_| unreachable!("a valid id"));
    // Two epochs of content: the one before (for replays) and this one.
    let (ts, ll) = origin(&stream, 2);
    let start = T0_MS + EPOCH_MS;
    let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
    let mut earlier = ReceiptVerifier::new(VerifierConfig::default());
    let nodes: Vec<KeyPair> = (0..world.operators.len()).map(node_key).collect();
    let node_ids: Vec<NodeId> = nodes.iter().map(KeyPair::node_id).collect();
    let mut grants = Vec::new();
    let mut viewers = BTreeMap::new();
    let mut tallies: BTreeMap<usize, ReceiptTally> = BTreeMap::new();
    let mut claimed: BTreeMap<usize, u64> = BTreeMap::new();
    let mut served_sessions: BTreeMap<usize, u64> = BTreeMap::new();
    let mut rejected = 0;
    let mut issue = |id: SessionId, node: usize, viewer: ViewerKey, live_ms: u64, on: &StreamId| {
        let grant = SessionGrant {
            session_id: id,
            viewer,
            node_id: node_ids[node],
            stream_id: on.clone(),
            max_bytes: 2_000_000 * 3_600,
            expiry_ms: start + EPOCH_MS,
        };
        grants.push(IssuedGrant {
            session_id: id,
            node_id: node_ids[node],
            viewer,
            stream_id: on.clone(),
            live_ms,
            probe: false,
        });
        Signed::sign(grant, &coordinator)
    };
    for (i, session) in world.sessions.iter().enumerate() {
        let id = session_id(i, 1);
        let (signer, viewer) = match session.to {
            Receiver::Viewer(v) => {
                let key = viewer_keypair(v);
                viewers.insert(
                    key.viewer_key(),
                    ViewerProfile {
                        viewer: key.viewer_key(),
                        subnet: Subnet24([192, 168, (v % 250) as u8]).into(),
                        operator: None,
                    },
                );
                (key.clone(), key.viewer_key())
            }
            Receiver::Child(c) => (
                nodes[c].clone(),
                ViewerKey::from_bytes(*node_ids[c].as_bytes()),
            ),
        };
        let grant = issue(id, session.node, viewer, session.minutes * 60_000, &stream);
        let content = match session.chain {
            Chain::Ts => &ts,
            Chain::Ll => &ll,
        };
        let signed = receipts(id, session, start, content, &stream, &signer);
        if verifier
            .admit_signed_grant(&grant, &coordinator.coordinator_key(), start)
            .is_err()
        {
            continue;
        }
        let outcomes =
            verifier.verify_batch(&node_ids[session.node], &signed, content, start + EPOCH_MS);
        let tally = tallies.entry(session.node).or_default();
        for outcome in &outcomes {
            tally.record(outcome);
        }
        rejected += outcomes.iter().filter(|o| o.is_err()).count();
        if let Some(last) = signed.last() {
            *claimed.entry(session.node).or_default() += last.body.bytes_total;
        }
        *served_sessions.entry(session.node).or_default() += 1;
        if world.replayed.contains(&i) {
            // The same edge's receipts of the epoch before, handed in again now.
            let before = T0_MS;
            let old_id = session_id(i, 0);
            let old_grant = Signed::sign(
                SessionGrant {
                    session_id: old_id,
                    expiry_ms: before + EPOCH_MS,
                    ..grant.body.clone()
                },
                &coordinator,
            );
            let old = receipts(old_id, session, before, content, &stream, &signer);
            if earlier
                .admit_signed_grant(&old_grant, &coordinator.coordinator_key(), before)
                .is_ok()
            {
                earlier.verify_batch(&node_ids[session.node], &old, content, before + EPOCH_MS);
            }
            // Into this epoch's session (another session id: refused) and its own, already
            // credited session (refused as replays).
            let mut moved = old.clone();
            for r in &mut moved {
                r.body.session_id = id;
            }
            for batch in [&moved, &old] {
                let outcomes =
                    earlier.verify_batch(&node_ids[session.node], batch, content, start + EPOCH_MS);
                let more = verifier.verify_batch(
                    &node_ids[session.node],
                    batch,
                    content,
                    start + EPOCH_MS,
                );
                let tally = tallies.entry(session.node).or_default();
                for outcome in outcomes.iter().chain(&more) {
                    tally.record(outcome);
                }
                rejected += outcomes.iter().chain(&more).filter(|o| o.is_err()).count();
            }
        }
    }
    for &(parent, child, other) in &world.idle_edges {
        let id = session_id(1_000 + parent * 100 + child * 10 + other, 1);
        let on =
            StreamId::new(format!("other{other}")).unwrap_or_else(|_| unreachable!("a valid id"));
        issue(
            id,
            parent,
            ViewerKey::from_bytes(*node_ids[child].as_bytes()),
            EPOCH_MS,
            &on,
        );
    }
    let good = ProbeSummary {
        total: 12,
        passed: 12,
        capacity_bytes_per_s: 4 * BITRATE,
        ..ProbeSummary::default()
    };
    let observations = EpochObservations {
        epoch: EPOCH + 1,
        epoch_ms: EPOCH_MS,
        nodes: (0..nodes.len())
            .map(|i| NodeProfile {
                node_id: node_ids[i],
                operator: OperatorId::new(world.operators[i])
                    .unwrap_or_else(|_| unreachable!("valid operator names")),
                // M shares A's /24.
                subnet: Subnet24([10, 0, if i == M { A as u8 } else { i as u8 }]).into(),
                first_epoch: 0,
                average_reward: POOL / nodes.len() as u64,
            })
            .collect(),
        viewers: viewers.into_values().collect(),
        sessions: verifier.take_usage(),
        claims: (0..nodes.len())
            .map(|i| NodeClaims {
                node_id: node_ids[i],
                claimed_bytes: claimed.get(&i).copied().unwrap_or(0),
                unattested_bytes: world.unattested.get(&i).copied().unwrap_or(0),
                sessions: served_sessions.get(&i).copied().unwrap_or(0),
                receipts: tallies.get(&i).copied().unwrap_or_default(),
                viewer_posted: ReceiptTally::default(),
                heartbeats: Some(1),
            })
            .collect(),
        probes: node_ids.iter().map(|id| (*id, good)).collect(),
        bitrates: vec![(stream.clone(), BITRATE)],
        operator_route_share_ppm: Vec::new(),
        recently_penalized: Vec::new(),
        grants: Some(grants),
        probe_traffic: Vec::new(),
    };
    let report = FraudEngine::new(FraudConfig::default()).assess(&observations);
    let config = RewardConfig::default();
    let split = split_pool(POOL, &report.node_inputs, &config);
    let index: BTreeMap<NodeId, usize> = node_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let mut settled = Settled {
        rejected,
        ..Settled::default()
    };
    for input in &report.node_inputs {
        let Some(&i) = index.get(&input.node_id) else {
            continue;
        };
        let eligible = input.verified_bytes.saturating_sub(input.flagged_bytes);
        let unattested = input.unattested_bytes.min(input.probe_capacity_bytes)
            * config.unattested_discount_ppm
            / 1_000_000;
        settled.credited.insert(i, eligible + unattested);
    }
    for reward in &split.rewards {
        if let Some(&i) = index.get(&reward.node_id) {
            settled.rewards.insert(i, reward.amount);
        }
    }
    for penalty in &report.penalties {
        if let Some(&i) = index.get(&penalty.node_id) {
            settled.penalized.push(i);
        }
    }
    for evidence in &report.evidence {
        if let Some(&i) = index.get(&evidence.node_id) {
            settled.rules.entry(i).or_default().push(evidence.rule);
        }
    }
    settled
}

/// One scenario's result.
#[derive(Clone, Debug, Serialize)]
pub struct RelayOutcome {
    /// The scenario.
    pub name: &'static str,
    /// Bytes credited to the attacker's nodes beyond the honest baseline.
    pub attacker_gain_bytes: u64,
    /// What the rules allow it: the bytes its subtree really delivered to viewers beyond the
    /// baseline (0 where it delivered nothing new), never more than one stream per edge.
    pub bound_bytes: u64,
    /// Share of the pool the attacker's nodes got beyond the baseline, ppm (0 when less).
    pub attacker_pool_gain_ppm: u64,
    /// Honest nodes penalized.
    pub honest_penalized: usize,
    /// Bytes the honest tree's parents were credited for their edges, and the bytes those
    /// edges delivered.
    pub honest_relay_credit_bytes: u64,
    /// Bytes the honest tree's edges delivered.
    pub honest_relay_delivered_bytes: u64,
    /// Receipts the verifier refused.
    pub rejected_receipts: usize,
    /// Rules that fired on the attacker's nodes.
    pub rules: Vec<String>,
}

fn minutes(m: u64) -> u64 {
    BITRATE * m * 60
}

fn honest_penalized(settled: &Settled) -> usize {
    settled
        .penalized
        .iter()
        .filter(|i| ![A, M, C].contains(i))
        .count()
}

/// The honest tree's parents' credit for their edges: their credit minus what a tree without
/// edges gives them.
fn relay_credit(with: &Settled, without: &Settled) -> u64 {
    [ORIGIN, H1, H2]
        .iter()
        .map(|n| {
            with.credited
                .get(n)
                .copied()
                .unwrap_or(0)
                .saturating_sub(without.credited.get(n).copied().unwrap_or(0))
        })
        .sum()
}

fn outcome(
    name: &'static str,
    baseline: &Settled,
    attacked: &Settled,
    bound: u64,
    no_edges: &Settled,
) -> RelayOutcome {
    let attackers = [A, M, C];
    let sum = |s: &Settled, map: fn(&Settled) -> &BTreeMap<usize, u64>| -> u64 {
        attackers
            .iter()
            .map(|i| map(s).get(i).copied().unwrap_or(0))
            .sum()
    };
    fn credited(s: &Settled) -> &BTreeMap<usize, u64> {
        &s.credited
    }
    fn rewards(s: &Settled) -> &BTreeMap<usize, u64> {
        &s.rewards
    }
    let mut rules: Vec<String> = attackers
        .iter()
        .flat_map(|i| attacked.rules.get(i).cloned().unwrap_or_default())
        .map(|r| r.as_str().to_owned())
        .collect();
    rules.sort();
    rules.dedup();
    RelayOutcome {
        name,
        attacker_gain_bytes: sum(attacked, credited).saturating_sub(sum(baseline, credited)),
        bound_bytes: bound,
        attacker_pool_gain_ppm: (sum(attacked, rewards).saturating_sub(sum(baseline, rewards)))
            * 1_000_000
            / POOL,
        honest_penalized: honest_penalized(attacked),
        honest_relay_credit_bytes: relay_credit(attacked, no_edges),
        honest_relay_delivered_bytes: minutes(4 * 60),
        rejected_receipts: attacked.rejected,
        rules,
    }
}

/// Runs every relay scenario.
pub fn run_all() -> Vec<RelayOutcome> {
    let baseline = settle(&honest());
    let no_edges = settle(&World {
        sessions: honest()
            .sessions
            .into_iter()
            .filter(|s| matches!(s.to, Receiver::Viewer(_)))
            .collect(),
        ..honest()
    });
    let mut out = vec![outcome("honest tree", &baseline, &baseline, 0, &no_edges)];

    // A receipt mill: C (another operator) has no viewers; it signs a whole hour for A.
    let mut world = honest();
    world.sessions.push(edge(A, C, 60));
    out.push(outcome(
        "receipt mill (child without viewers)",
        &baseline,
        &settle(&world),
        0,
        &no_edges,
    ));

    // A and its own M, in one /24: M serves a real viewer and signs for an hour A never
    // delivered.
    let mut world = honest();
    world.sessions.push(viewer_session(M, 90, 60));
    world.sessions.push(edge(A, M, 60));
    let with_viewer = {
        let mut w = honest();
        w.sessions.push(viewer_session(M, 90, 60));
        settle(&w)
    };
    out.push(outcome(
        "same-/24 pair fabricating an edge",
        &with_viewer,
        &settle(&world),
        0,
        &no_edges,
    ));

    // A and an accomplice C of another operator and /24: C serves 20 real minutes and signs
    // an hour for A (fabricated), or three times the hour (inflated).
    let mut base = honest();
    base.sessions.push(viewer_session(C, 91, 20));
    let base_settled = settle(&base);
    let mut world = base.clone();
    world.sessions.push(edge(A, C, 60));
    out.push(outcome(
        "colluding pair, fabricated hour (child's viewers 20 min)",
        &base_settled,
        &settle(&world),
        minutes(20),
        &no_edges,
    ));
    let mut world = base.clone();
    let mut inflated = edge(A, C, 60);
    inflated.signing = Signing::Inflated(3);
    world.sessions.push(inflated);
    out.push(outcome(
        "colluding pair, receipts inflated 3x",
        &base_settled,
        &settle(&world),
        minutes(20),
        &no_edges,
    ));

    // C asks for upstreams on A for streams it never serves; A claims the grants as unattested.
    let mut world = honest();
    world.idle_edges.extend([(A, C, 0), (A, C, 1), (A, C, 2)]);
    world.unattested.insert(A, minutes(3 * 60));
    out.push(outcome(
        "harvested edge grants claimed as unattested",
        &baseline,
        &settle(&world),
        0,
        &no_edges,
    ));

    // A hands in an edge's receipts of the epoch before again, into this epoch's session and
    // into their own.
    let mut base = honest();
    base.sessions.push(viewer_session(C, 91, 60));
    base.sessions.push(edge(A, C, 60));
    let base_settled = settle(&base);
    let mut world = base.clone();
    world.replayed.push(world.sessions.len() - 1);
    out.push(outcome(
        "relay receipts replayed across epochs and sessions",
        &base_settled,
        &settle(&world),
        0,
        &no_edges,
    ));

    // LL-HLS: C plays the fMP4 rendition from A; honest receipts over its chain, then receipts
    // counting both renditions' bytes.
    let mut base = honest();
    base.sessions.push(viewer_session(C, 91, 60));
    let base_settled = settle(&base);
    let mut world = base.clone();
    let mut ll = edge(A, C, 60);
    ll.chain = Chain::Ll;
    world.sessions.push(ll.clone());
    out.push(outcome(
        "LL-HLS chain edge, honest (paid like TS)",
        &base_settled,
        &settle(&world),
        minutes(60),
        &no_edges,
    ));
    let mut world = base;
    ll.signing = Signing::Inflated(2);
    world.sessions.push(ll);
    out.push(outcome(
        "LL-HLS chain edge, both renditions counted",
        &base_settled,
        &settle(&world),
        minutes(60),
        &no_edges,
    ));
    out
}

/// The scenarios as a table.
pub fn table(outcomes: &[RelayOutcome]) -> String {
    let mut out = String::from(
        "| scenario | attacker gain (MB) | bound (MB) | pool gain (ppm) | honest penalized | honest relay credit / delivered (MB) | receipts refused | rules on attacker |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
            o.name,
            o.attacker_gain_bytes / 1_000_000,
            o.bound_bytes / 1_000_000,
            o.attacker_pool_gain_ppm,
            o.honest_penalized,
            o.honest_relay_credit_bytes / 1_000_000,
            o.honest_relay_delivered_bytes / 1_000_000,
            o.rejected_receipts,
            o.rules.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_attacks_gain_nothing_beyond_the_bound_and_honest_relays_are_paid() {
        let outcomes = run_all();
        print!("{}", table(&outcomes));
        for o in &outcomes {
            assert!(
                o.attacker_gain_bytes <= o.bound_bytes,
                "{}: gained {} bytes, bound {}",
                o.name,
                o.attacker_gain_bytes,
                o.bound_bytes
            );
            assert_eq!(o.honest_penalized, 0, "{}: honest nodes penalized", o.name);
            // The honest tree: the origin → H1 and H1 → L1 edges fully (H1's and L1's viewers
            // watched all hour), origin → H2 and H2 → L2 up to L2's 30 minutes of viewers.
            assert_eq!(
                o.honest_relay_credit_bytes,
                minutes(60 + 60 + 30 + 30),
                "{}",
                o.name
            );
        }
        let by_name = |name: &str| {
            outcomes
                .iter()
                .find(|o| o.name.starts_with(name))
                .unwrap_or_else(|| panic!("scenario {name}"))
        };
        assert_eq!(by_name("receipt mill").attacker_gain_bytes, 0);
        assert_eq!(by_name("same-/24").attacker_gain_bytes, 0);
        assert_eq!(
            by_name("colluding pair, receipts inflated").attacker_gain_bytes,
            0
        );
        assert_eq!(by_name("harvested").attacker_gain_bytes, 0);
        assert_eq!(by_name("relay receipts replayed").attacker_gain_bytes, 0);
        assert!(by_name("relay receipts replayed").rejected_receipts > 0);
        assert_eq!(by_name("LL-HLS chain edge, both").attacker_gain_bytes, 0);
        // An honest LL edge below a child with an hour of viewers is paid the hour.
        assert_eq!(
            by_name("LL-HLS chain edge, honest").attacker_gain_bytes,
            minutes(60)
        );
    }
}
