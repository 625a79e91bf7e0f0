//! Reward-split scenarios: attacks on who the rules group together and on what a node's grants
//! let it claim (`streamr-sim --reward-scenarios`).
//!
//! Each scenario runs two epochs of a small network through the fraud rules and the pool split
//! (`FraudEngine::assess`, `split_pool`, the code settlement runs), once as the honest baseline
//! and once with the attack, and compares the second epoch's rewards:
//!
//! - **Operator names are free text.** A node registers with any operator name it likes (the
//!   node's default is `anonymous`), and the coordinator lists a penalized node's prefix and
//!   operator name as recently penalized. A throwaway node named after another operator, caught
//!   handing in a forged receipt, must not cost that operator's nodes anything.
//! - **The operator cap groups by that name.** Nodes that declare one operator are paid at most
//!   20 % of the pool together; nodes of an attacker naming themselves after an operator near
//!   the cap share it.
//! - **Grants outlive their sessions.** The coordinator's grant log has each grant live from
//!   its issue to its expiry (an hour), clipped to the epoch, whether its viewer watched two
//!   minutes or the hour. A node that serves its viewers honestly and then claims, as
//!   unattested, everything their grants could have carried beyond their receipts must earn no
//!   more than what it delivered; nor one that goes dark through a prober outage (every node
//!   keeps its last probed availability) while its viewers watch elsewhere.
//!
//! Nodes register through the coordinator's decision on operator names
//! (`OperatorMembership::judge`), and the collusion rule's route shares are computed as the
//! coordinator's settlement computes them (`operator_route_shares`).
//!
//! Sessions are fed to the rules as the verifier reports them (`SessionUsage`): every byte a
//! session's receipts acknowledged was delivered, on time, at the stream's bitrate.

use std::collections::BTreeMap;

use serde::Serialize;
use streamr_core::{
    canonical_operator_name, operator_route_shares, split_pool, EpochObservations, FraudConfig,
    FraudEngine, FraudReport, IssuedGrant, KeyPair, NetPrefix, NodeClaims, NodeId, NodeProfile,
    OperatorId, OperatorKey, OperatorMembership, OperatorRotation, ProbeSummary, ReceiptTally,
    RewardConfig, Router, RuleId, SessionId, SessionUsage, StreamId, Subnet24, ViewerKey,
    ViewerProfile,
};

/// Stream bitrate, bytes per second (4 Mbit/s).
const BITRATE: u64 = 500_000;
const EPOCH_MS: u64 = 3_600_000;
/// The first of the two epochs (the second is measured).
const FIRST: u64 = 500_000;
const POOL: u64 = 1_000_000_000;
/// Epochs a new node is on probation (the rules' default).
const PROBATION_EPOCHS: u64 = 24;

/// One node of a scenario.
#[derive(Clone, Debug)]
struct Node {
    /// The operator name it registered with.
    operator: &'static str,
    /// Whose operator key signed its membership (`streamr-node --operator-key`): its operator
    /// name's own key for an honest node, another's or none for a node squatting a name.
    key: Option<&'static str>,
    /// Registers before every other node (to bind a name first).
    registers_first: bool,
    /// The third octet of its /24 (`10.0.x.0/24`).
    net: u8,
    /// Registered two epochs ago (on probation), not long ago.
    new: bool,
    /// Viewer sessions it serves each epoch, minutes watched each.
    sessions: Vec<u64>,
    /// Claims, as unattested, what its grants carried beyond their receipts.
    claims_grant_tails: bool,
    /// Hands in a forged receipt in the first epoch.
    forges_first_epoch: bool,
    /// Hands in none of its viewers' receipts (so nothing is verified) and claims all that
    /// their grants carried as unattested.
    drops_receipts: bool,
    /// Registered in this epoch (instead of long ago, or one epoch before the first for `new`).
    registered: Option<u64>,
    /// Runs only from the second epoch on: before, it is registered but neither serves nor is
    /// probed (a spare identity left idle).
    spare: bool,
    /// Registers again under this operator name (with that operator's key) before the second
    /// epoch.
    second_name: Option<&'static str>,
    /// Registered but never serving nor probed (an identity registered to count, not to run).
    idle: bool,
    /// Colluding viewer keys (one /24 each), each watching three 10-minute sessions an epoch on
    /// this node and nowhere else.
    colluders: usize,
    /// One-minute sessions of a bot farm (fresh keys, one /24) on this node in the second
    /// epoch, each acknowledging the stream at `bot_rate_ppm` of its bitrate.
    bots: usize,
    /// What the bots' receipts acknowledge, ppm of the bitrate.
    bot_rate_ppm: u64,
    /// Serves no one in the second epoch, while its heartbeats keep viewers routed to it: each
    /// asks again and watches on the first node instead, and it claims all that their grants
    /// on it carried as unattested.
    dark_second_epoch: bool,
    /// Serves each viewer only this many minutes, then goes dark while it keeps answering
    /// probes (it is up around the prober's rounds, not between them): the viewer asks again
    /// and watches the rest on the first node.
    flaps_after: Option<u64>,
    /// Its colluding keys were bought seasoned: in the history epoch each watched a 10-minute
    /// session on each of the first three nodes (three /24s), as a real viewer's key would
    /// have, and they watch on this node only once it runs.
    colluders_seasoned: bool,
    /// Holds its operator's key through a leak (`key` names that operator): it keeps the
    /// old key's proof when the operator rotates its key.
    leaked_key: bool,
    /// Its (colluding) viewers sign nothing in the first epoch and it claims nothing there;
    /// each of those sessions then signs one receipt for all it received, at the earliest in
    /// the second epoch (within its grant), booked there with the span it covers since its
    /// grant's start, as a backlog after a coordinator outage is.
    withholds_first_epoch: bool,
    /// All its sessions are one viewer key's (watching them in parallel), not one key each.
    one_viewer: bool,
}

fn node(operator: &'static str, net: u8, sessions: &[u64]) -> Node {
    Node {
        operator,
        key: Some(operator),
        registers_first: false,
        net,
        new: false,
        sessions: sessions.to_vec(),
        claims_grant_tails: false,
        forges_first_epoch: false,
        drops_receipts: false,
        registered: None,
        spare: false,
        idle: false,
        second_name: None,
        colluders: 0,
        bots: 0,
        bot_rate_ppm: 1_000_000,
        dark_second_epoch: false,
        flaps_after: None,
        colluders_seasoned: false,
        leaked_key: false,
        withholds_first_epoch: false,
        one_viewer: false,
    }
}

/// One scenario's network.
#[derive(Clone, Debug)]
struct World {
    nodes: Vec<Node>,
    /// Grants live until the epoch's end (the coordinator's hour-long grants, clipped), not
    /// only while their viewer watched.
    grants_to_epoch_end: bool,
    /// The coordinator's prober records nothing in the second epoch (an outage): every node
    /// keeps the availability of its last probed epoch.
    prober_outage_second_epoch: bool,
    /// The rules' history begins 40 epochs before the first (one epoch of the network as
    /// it is then: spare nodes idle), so a node registered since has a history there.
    history: bool,
    /// In the history epoch every honest viewer key also watched 10 minutes on the next two
    /// of the first ten nodes (three /24s in all): an established network, whose typical key
    /// has the history the new-key rule asks for.
    viewers_seasoned: bool,
    /// This operator rotates its key (`OperatorRotation`) once every node registered: its own
    /// nodes register again with the new key's proof.
    rotates: Option<&'static str>,
}

/// Ten unrelated honest nodes (operators `o0`–`o9`, one /24 each) serving two viewers an
/// hour each.
fn others() -> Vec<Node> {
    const NAMES: [&str; 10] = ["o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"];
    NAMES
        .iter()
        .zip(0u8..)
        .map(|(name, i)| node(name, i, &[60, 60]))
        .collect()
}

fn node_key(i: usize) -> NodeId {
    let mut seed = [0x52u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(seed).node_id()
}

fn viewer_key(node: usize, session: usize) -> ViewerKey {
    let mut seed = [0x7bu8; 32];
    seed[..8].copy_from_slice(&(node as u64).to_be_bytes());
    seed[8..16].copy_from_slice(&(session as u64).to_be_bytes());
    KeyPair::from_seed(seed).viewer_key()
}

fn session_id(epoch: u64, node: usize, session: usize) -> SessionId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&(epoch as u32).to_be_bytes());
    bytes[4..10].copy_from_slice(&(node as u64).to_be_bytes()[2..]);
    bytes[10..].copy_from_slice(&(session as u64).to_be_bytes()[2..]);
    SessionId::from_bytes(bytes)
}

fn stream() -> StreamId {
    StreamId::new("live").unwrap_or_else(|_| unreachable!("a valid id"))
}

/// The key of the operator called `name` in the scenarios.
fn operator_key(name: &str) -> KeyPair {
    let mut seed = [0x0au8; 32];
    for (byte, name) in seed.iter_mut().zip(name.bytes()) {
        *byte = name;
    }
    KeyPair::from_seed(seed)
}

/// Registers `world`'s nodes as the coordinator does (`OperatorMembership::judge`, the first
/// key proving a node under a name binds it): per node, the operator name it is a proven
/// member of, or `None` (its own operator). A node refused for naming a bound operator without
/// its key registers again under no name, the most it can do.
fn register(world: &World) -> Vec<Option<&'static str>> {
    let mut order: Vec<usize> = (0..world.nodes.len()).collect();
    order.sort_by_key(|&i| (!world.nodes[i].registers_first, i));
    // Names are bound in their canonical form, as the coordinator binds them.
    let mut bound: BTreeMap<String, OperatorKey> = BTreeMap::new();
    let mut members = vec![None; world.nodes.len()];
    for i in order {
        let n = &world.nodes[i];
        let proof = n
            .key
            .map(|key| OperatorMembership::sign(&operator_key(key), n.operator, &node_key(i)));
        let name = canonical_operator_name(n.operator);
        let judged =
            OperatorMembership::judge(n.operator, &node_key(i), proof.as_ref(), bound.get(&name));
        if let Ok(Some(key)) = judged {
            if *bound.entry(name).or_insert(key) == key {
                members[i] = Some(n.operator);
            }
        }
    }
    if let Some(name) = world.rotates {
        rotate(world, name, &mut bound, &mut members);
    }
    members
}

/// `name`'s operator rotates its key as the coordinator accepts it (`OperatorRotation::judge`
/// against the bound key) and every node under the name registers again: its own nodes with
/// the new key's proof, a node holding the old key through a leak with the old key's, which
/// settlement no longer groups under the name (it is its own operator).
fn rotate(
    world: &World,
    name: &'static str,
    bound: &mut BTreeMap<String, OperatorKey>,
    members: &mut [Option<&'static str>],
) {
    let canonical = canonical_operator_name(name);
    let (old, new) = (operator_key(name), operator_key(&format!("{name}/rotated")));
    let rotation = OperatorRotation::sign(&old, name, new.operator_key(), 1);
    let accepted = bound.get(&canonical).map(|key| rotation.judge(key, 0));
    if accepted != Some(Ok(())) {
        return;
    }
    bound.insert(canonical.clone(), new.operator_key());
    for (i, n) in world.nodes.iter().enumerate() {
        if canonical_operator_name(n.operator) != canonical || n.key.is_none() {
            continue;
        }
        let signer = if n.leaked_key { &old } else { &new };
        let proof = OperatorMembership::sign(signer, n.operator, &node_key(i));
        let judged = OperatorMembership::judge(
            n.operator,
            &node_key(i),
            Some(&proof),
            bound.get(&canonical),
        );
        if let Some(member) = members.get_mut(i) {
            *member = matches!(judged, Ok(Some(_))).then_some(n.operator);
        }
    }
}

/// The operator node `i` is grouped under, as the coordinator's settlement groups it: the
/// name it proved membership of, else the node alone.
fn operator(member: Option<&str>, i: usize) -> OperatorId {
    OperatorId::of_node(member, &node_key(i).to_string())
        .unwrap_or_else(|_| unreachable!("valid operator names"))
}

fn subnet(net: u8) -> NetPrefix {
    Subnet24([10, 0, net]).into()
}

fn bytes(minutes: u64) -> u64 {
    BITRATE * minutes * 60
}

/// When a node's `j`-th session of `minutes` starts after its epoch's start, ms: viewers start
/// a few minutes apart, each session within the epoch.
fn session_offset_ms(j: usize, minutes: u64) -> u64 {
    (j as u64 * 7) % (61 - minutes.min(60)) * 60_000
}

/// One epoch's observations of `world`.
fn observe(
    world: &World,
    epoch: u64,
    recently_penalized: Vec<(NetPrefix, OperatorId)>,
) -> EpochObservations {
    let renamed;
    let world = if epoch == FIRST + 1 {
        let mut now = world.clone();
        for n in &mut now.nodes {
            if let Some(name) = n.second_name {
                n.operator = name;
                n.key = Some(name);
            }
        }
        renamed = now;
        &renamed
    } else {
        world
    };
    let members = register(world);
    let start = epoch * EPOCH_MS;
    let mut viewers = Vec::new();
    let mut sessions = Vec::new();
    let mut grants = Vec::new();
    // Per node: attested claim, what its grants carried beyond their receipts, receipts
    // handed in, sessions.
    let mut claimed = vec![0u64; world.nodes.len()];
    let mut carried_beyond = vec![0u64; world.nodes.len()];
    let mut handed_in = vec![0u64; world.nodes.len()];
    let mut served = vec![0u64; world.nodes.len()];
    for (i, n) in world.nodes.iter().enumerate() {
        let dark = n.dark_second_epoch && epoch == FIRST + 1;
        let sessions_run = if n.spare && epoch <= FIRST {
            &[][..]
        } else {
            &n.sessions[..]
        };
        let withheld = n.withholds_first_epoch && epoch == FIRST;
        for (j, &minutes) in sessions_run.iter().enumerate() {
            let watcher = if n.one_viewer { 0 } else { j };
            let viewer = viewer_key(i, watcher);
            let from = start + session_offset_ms(j, minutes);
            let live_ms = if world.grants_to_epoch_end {
                start + EPOCH_MS - from
            } else {
                minutes * 60_000
            };
            viewers.push(ViewerProfile {
                viewer,
                subnet: Subnet24([192, 168, (i * 8 + watcher) as u8]).into(),
                operator: None,
            });
            if world.viewers_seasoned && epoch < FIRST && i < 10 && !n.spare {
                let (a, b) = ((i + 1) % 10, (i + 2) % 10);
                let mut first = [0x5eu8; 16];
                first[..8].copy_from_slice(&epoch.to_be_bytes());
                first[8] = i as u8;
                first[9] = j as u8;
                first[15] = 0;
                watch_elsewhere(
                    &[a, b],
                    SessionId::from_bytes(first),
                    epoch,
                    viewer,
                    &mut grants,
                    &mut sessions,
                );
                for at in [a, b] {
                    claimed[at] += bytes(10);
                    handed_in[at] += 1;
                    served[at] += 1;
                }
            }
            let carried = BITRATE * live_ms / 1_000;
            let mut grant = IssuedGrant {
                session_id: session_id(epoch, i, j),
                node_id: node_key(i),
                viewer,
                stream_id: stream(),
                live_ms,
                probe: false,
            };
            grants.push(grant.clone());
            served[i] += 1;
            if withheld {
                continue;
            }
            if n.drops_receipts && !dark {
                carried_beyond[i] += carried;
                continue;
            }
            if let Some(up) = n.flaps_after.filter(|&up| up < minutes && !dark) {
                // Served `up` minutes here, the rest on node 0 under a second grant.
                carried_beyond[i] += carried.saturating_sub(bytes(up));
                sessions.push(SessionUsage {
                    session_id: grant.session_id,
                    node_id: grant.node_id,
                    viewer,
                    stream_id: stream(),
                    bytes: bytes(up),
                    on_time_bytes: bytes(up),
                    bytes_total: bytes(up),
                    started_ms: from,
                    last_receipt_ms: from + up * 60_000,
                    covers_from_ms: Some(from),
                });
                claimed[i] += bytes(up);
                handed_in[i] += 1;
                let moved_from = from + up * 60_000;
                let rest = minutes - up;
                let moved = IssuedGrant {
                    session_id: session_id(epoch, i, 200 + j),
                    node_id: node_key(0),
                    live_ms: if world.grants_to_epoch_end {
                        start + EPOCH_MS - moved_from
                    } else {
                        rest * 60_000
                    },
                    ..grant
                };
                grants.push(moved.clone());
                served[0] += 1;
                sessions.push(SessionUsage {
                    session_id: moved.session_id,
                    node_id: node_key(0),
                    viewer,
                    stream_id: stream(),
                    bytes: bytes(rest),
                    on_time_bytes: bytes(rest),
                    bytes_total: bytes(rest),
                    started_ms: moved_from,
                    last_receipt_ms: moved_from + rest * 60_000,
                    covers_from_ms: Some(moved_from),
                });
                claimed[0] += bytes(rest);
                handed_in[0] += 1;
                continue;
            }
            let by = if dark {
                // Nothing came: the viewer asks again and watches on node 0.
                carried_beyond[i] += carried;
                grant.session_id = session_id(epoch, i, 100 + j);
                grant.node_id = node_key(0);
                grants.push(grant.clone());
                served[0] += 1;
                0
            } else {
                carried_beyond[i] += carried.saturating_sub(bytes(minutes));
                i
            };
            sessions.push(SessionUsage {
                session_id: grant.session_id,
                node_id: grant.node_id,
                viewer,
                stream_id: stream(),
                bytes: bytes(minutes),
                on_time_bytes: bytes(minutes),
                bytes_total: bytes(minutes),
                started_ms: from,
                last_receipt_ms: from + minutes * 60_000,
                covers_from_ms: Some(from),
            });
            claimed[by] += bytes(minutes);
            handed_in[by] += 1;
        }
        if n.withholds_first_epoch && epoch == FIRST + 1 {
            // The first epoch's sessions, signed now: one receipt each for all they received.
            let before = start - EPOCH_MS;
            for (j, &minutes) in n.sessions.iter().enumerate() {
                let from = before + session_offset_ms(j, minutes);
                let signed = (from + minutes * 60_000).max(start);
                sessions.push(SessionUsage {
                    session_id: session_id(FIRST, i, j),
                    node_id: node_key(i),
                    viewer: viewer_key(i, if n.one_viewer { 0 } else { j }),
                    stream_id: stream(),
                    bytes: bytes(minutes),
                    on_time_bytes: bytes(minutes),
                    bytes_total: bytes(minutes),
                    started_ms: from,
                    last_receipt_ms: signed,
                    covers_from_ms: Some(from),
                });
                claimed[i] += bytes(minutes);
                handed_in[i] += 1;
                served[i] += 1;
            }
        }
        for k in 0..n.colluders {
            let viewer = viewer_key(i, 2_000 + k);
            viewers.push(ViewerProfile {
                viewer,
                subnet: Subnet24([172, 17, k as u8]).into(),
                operator: None,
            });
            // A spare node's colluders wait for it (bought keys are seasoned meanwhile).
            if n.spare && epoch <= FIRST {
                if n.colluders_seasoned && epoch < FIRST {
                    season(i, k, epoch, viewer, &mut grants, &mut sessions);
                    for (at, claim) in claimed.iter_mut().take(3).enumerate() {
                        *claim += bytes(10);
                        handed_in[at] += 1;
                        served[at] += 1;
                    }
                }
                continue;
            }
            for m in 0..3 {
                let session = session_id(epoch, i, 2_000 + 3 * k + m);
                let from = start + (m as u64) * 20 * 60_000;
                grants.push(IssuedGrant {
                    session_id: session,
                    node_id: node_key(i),
                    viewer,
                    stream_id: stream(),
                    live_ms: 10 * 60_000,
                    probe: false,
                });
                sessions.push(SessionUsage {
                    session_id: session,
                    node_id: node_key(i),
                    viewer,
                    stream_id: stream(),
                    bytes: bytes(10),
                    on_time_bytes: bytes(10),
                    bytes_total: bytes(10),
                    started_ms: from,
                    last_receipt_ms: from + 10 * 60_000,
                    covers_from_ms: Some(from),
                });
                claimed[i] += bytes(10);
                handed_in[i] += 1;
                served[i] += 1;
            }
        }
        if epoch == FIRST + 1 {
            for k in 0..n.bots {
                let viewer = viewer_key(i, 1_000 + k);
                let from = start + (k as u64 % 50) * 60_000;
                let acknowledged = bytes(1) * n.bot_rate_ppm / 1_000_000;
                viewers.push(ViewerProfile {
                    viewer,
                    subnet: Subnet24([172, 16, 0]).into(),
                    operator: None,
                });
                grants.push(IssuedGrant {
                    session_id: session_id(epoch, i, 1_000 + k),
                    node_id: node_key(i),
                    viewer,
                    stream_id: stream(),
                    live_ms: 60_000,
                    probe: false,
                });
                sessions.push(SessionUsage {
                    session_id: session_id(epoch, i, 1_000 + k),
                    node_id: node_key(i),
                    viewer,
                    stream_id: stream(),
                    bytes: acknowledged,
                    on_time_bytes: acknowledged,
                    bytes_total: acknowledged,
                    started_ms: from,
                    last_receipt_ms: from + 60_000,
                    covers_from_ms: Some(from),
                });
                claimed[i] += acknowledged;
                handed_in[i] += 1;
                served[i] += 1;
            }
        }
    }
    let claims = world
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let forged = u64::from(n.forges_first_epoch && epoch == FIRST);
            let dark = n.dark_second_epoch && epoch == FIRST + 1;
            NodeClaims {
                node_id: node_key(i),
                claimed_bytes: claimed[i],
                unattested_bytes: if n.claims_grant_tails || n.drops_receipts || dark {
                    carried_beyond[i]
                } else {
                    0
                },
                sessions: served[i],
                receipts: ReceiptTally {
                    submitted: handed_in[i] + forged,
                    accepted: handed_in[i],
                    forged,
                    ..ReceiptTally::default()
                },
                viewer_posted: ReceiptTally::default(),
                heartbeats: Some(720),
            }
        })
        .collect();
    let good = ProbeSummary {
        total: 12,
        passed: 12,
        capacity_bytes_per_s: 4 * BITRATE,
        ..ProbeSummary::default()
    };
    let count = world.nodes.len() as u64;
    let outage = world.prober_outage_second_epoch && epoch == FIRST + 1;
    let probed = |i: usize| {
        let n = &world.nodes[i];
        let waiting = n.spare && epoch <= FIRST;
        !(n.idle || waiting)
    };
    let operators: Vec<OperatorId> = (0..world.nodes.len())
        .map(|i| operator(members.get(i).copied().flatten(), i))
        .collect();
    // Nodes that served viewers verified bytes (route shares count them).
    let serving: std::collections::BTreeSet<NodeId> = sessions
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| s.node_id)
        .collect();
    EpochObservations {
        epoch,
        epoch_ms: EPOCH_MS,
        nodes: world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeProfile {
                node_id: node_key(i),
                operator: operators[i].clone(),
                subnet: subnet(n.net),
                first_epoch: match (n.registered, n.new) {
                    (Some(epoch), _) => epoch,
                    (None, true) => FIRST - 1,
                    (None, false) => FIRST - 10 * PROBATION_EPOCHS,
                },
                average_reward: POOL / count,
            })
            .collect(),
        viewers,
        sessions,
        claims,
        probes: if outage {
            Vec::new()
        } else {
            (0..world.nodes.len())
                .filter(|&i| probed(i))
                .map(|i| (node_key(i), good))
                .collect()
        },
        bitrates: vec![(stream(), BITRATE)],
        // As the coordinator's settlement computes them, from the nodes the probes found
        // serving.
        operator_route_share_ppm: operator_route_shares(
            operators.iter().zip(0..).map(|(operator, i)| {
                let summary = (probed(i) && !outage).then_some(&good);
                (operator, summary, serving.contains(&node_key(i)))
            }),
            Router::default().newcomer_floor_ppm,
        ),
        recently_penalized,
        grants: Some(grants),
        // The scenarios' probes take nothing that no receipt acknowledged.
        probe_traffic: Vec::new(),
    }
}

/// The seasoning of a bought key: in `epoch` (the history epoch), colluder `k` of node `i`
/// watches one 10-minute session on each of nodes 0, 1 and 2.
fn season(
    i: usize,
    k: usize,
    epoch: u64,
    viewer: ViewerKey,
    grants: &mut Vec<IssuedGrant>,
    sessions: &mut Vec<SessionUsage>,
) {
    watch_elsewhere(
        &[0, 1, 2],
        session_id(epoch, i, 3_000 + 3 * k),
        epoch,
        viewer,
        grants,
        sessions,
    );
}

/// `viewer` watches one 10-minute session on each of `nodes` (at most three) in `epoch`, 20
/// minutes apart (session ids from `first` on, its last byte counting up).
fn watch_elsewhere(
    nodes: &[usize],
    first: SessionId,
    epoch: u64,
    viewer: ViewerKey,
    grants: &mut Vec<IssuedGrant>,
    sessions: &mut Vec<SessionUsage>,
) {
    let start = epoch * EPOCH_MS;
    for (n, &at) in nodes.iter().enumerate() {
        let mut id = *first.as_bytes();
        id[15] = id[15].wrapping_add(n as u8);
        let session = SessionId::from_bytes(id);
        let from = start + (n as u64) * 20 * 60_000;
        grants.push(IssuedGrant {
            session_id: session,
            node_id: node_key(at),
            viewer,
            stream_id: stream(),
            live_ms: 10 * 60_000,
            probe: false,
        });
        sessions.push(SessionUsage {
            session_id: session,
            node_id: node_key(at),
            viewer,
            stream_id: stream(),
            bytes: bytes(10),
            on_time_bytes: bytes(10),
            bytes_total: bytes(10),
            started_ms: from,
            last_receipt_ms: from + 10 * 60_000,
            covers_from_ms: Some(from),
        });
    }
}

/// What the measured (second) epoch came to, and the first.
#[derive(Debug, Default)]
struct Settled {
    /// Per node: its reward in the second epoch.
    rewards: Vec<u64>,
    /// Per node: eligible verified bytes plus counted unattested bytes at the discount.
    credited: Vec<u64>,
    /// The same two for the first epoch.
    first_rewards: Vec<u64>,
    first_credited: Vec<u64>,
    /// Nodes penalized in the second epoch.
    penalized: Vec<usize>,
    /// Rules that fired in either epoch, per node.
    rules: BTreeMap<usize, Vec<RuleId>>,
}

/// Per node of `index`: its reward from `pool` and its credited bytes (eligible verified bytes
/// plus counted unattested bytes at the discount) in the epoch `report` judged.
fn pay(
    report: &FraudReport,
    index: &BTreeMap<NodeId, usize>,
    config: &RewardConfig,
) -> (Vec<u64>, Vec<u64>) {
    let split = split_pool(POOL, &report.node_inputs, config);
    let mut rewards = vec![0; index.len()];
    let mut credited = vec![0; index.len()];
    for input in &report.node_inputs {
        let Some(slot) = index.get(&input.node_id).and_then(|&i| credited.get_mut(i)) else {
            continue;
        };
        let eligible = input.verified_bytes.saturating_sub(input.flagged_bytes);
        let unattested = input.unattested_bytes.min(input.probe_capacity_bytes)
            * config.unattested_discount_ppm
            / 1_000_000;
        *slot = eligible + unattested;
    }
    for reward in &split.rewards {
        if let Some(slot) = index.get(&reward.node_id).and_then(|&i| rewards.get_mut(i)) {
            *slot = reward.amount;
        }
    }
    (rewards, credited)
}

/// Runs both epochs of `world`: the coordinator lists the first epoch's penalized nodes (their
/// prefix and operator name) as recently penalized in the second, as settlement does.
fn settle(world: &World) -> Settled {
    let mut engine = FraudEngine::new(FraudConfig::default());
    let config = RewardConfig::default();
    if world.history {
        engine.assess(&observe(world, FIRST - 40, Vec::new()));
    }
    let first = engine.assess(&observe(world, FIRST, Vec::new()));
    let members = register(world);
    let index: BTreeMap<NodeId, usize> = (0..world.nodes.len()).map(|i| (node_key(i), i)).collect();
    let recently_penalized = first
        .penalties
        .iter()
        .filter_map(|p| index.get(&p.node_id))
        .filter_map(|&i| Some((i, world.nodes.get(i)?)))
        .map(|(i, n)| {
            (
                subnet(n.net),
                operator(members.get(i).copied().flatten(), i),
            )
        })
        .collect();
    let second = engine.assess(&observe(world, FIRST + 1, recently_penalized));
    let (first_rewards, first_credited) = pay(&first, &index, &config);
    let (rewards, credited) = pay(&second, &index, &config);
    let mut settled = Settled {
        rewards,
        credited,
        first_rewards,
        first_credited,
        ..Settled::default()
    };
    settled.penalized = second
        .penalties
        .iter()
        .filter_map(|p| index.get(&p.node_id).copied())
        .collect();
    for evidence in first.evidence.iter().chain(&second.evidence) {
        if let Some(&i) = index.get(&evidence.node_id) {
            settled.rules.entry(i).or_default().push(evidence.rule);
        }
    }
    settled
}

/// Which epochs a scenario's outcome compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    /// The second epoch (the first sets up what it judges).
    Second,
    /// Both epochs summed: for attacks that move bytes from one epoch to the other.
    Both,
}

/// One scenario's result (second epoch, or both summed; shares of the pools in ppm).
#[derive(Clone, Debug, Serialize)]
pub struct RewardOutcome {
    /// The scenario.
    pub name: &'static str,
    /// Epochs compared (1: the second; 2: both summed, in ppm of both pools).
    pub epochs: u64,
    /// What the attacker's nodes were paid.
    pub attacker_paid_ppm: u64,
    /// What the same nodes were paid behaving honestly (their fair share).
    pub attacker_fair_ppm: u64,
    /// Bytes the attacker's nodes were credited beyond the honest baseline.
    pub attacker_gain_bytes: u64,
    /// What the honest nodes the attack aims at were paid.
    pub victims_paid_ppm: u64,
    /// What they were paid without the attack.
    pub victims_fair_ppm: u64,
    /// What every honest node together lost to the attack (0 when they gained).
    pub honest_loss_ppm: u64,
    /// Honest nodes penalized.
    pub honest_penalized: usize,
    /// Rules that fired on the attacker's nodes.
    pub rules: Vec<String>,
}

fn outcome(
    name: &'static str,
    baseline: &World,
    attacked: &World,
    attackers: &[usize],
    victims: &[usize],
) -> RewardOutcome {
    outcome_over(Window::Second, name, baseline, attacked, attackers, victims)
}

/// [`outcome`] over `window`.
fn outcome_over(
    window: Window,
    name: &'static str,
    baseline: &World,
    attacked: &World,
    attackers: &[usize],
    victims: &[usize],
) -> RewardOutcome {
    let mut before = settle(baseline);
    let mut after = settle(attacked);
    let epochs = match window {
        Window::Second => 1,
        Window::Both => 2,
    };
    if window == Window::Both {
        for s in [&mut before, &mut after] {
            let add = |into: &mut Vec<u64>, from: &[u64]| {
                for (a, b) in into.iter_mut().zip(from) {
                    *a += b;
                }
            };
            add(&mut s.rewards, &s.first_rewards);
            add(&mut s.credited, &s.first_credited);
        }
    }
    let ppm = |amount: u64| amount * 1_000_000 / (POOL * epochs);
    let sum = |s: &Settled, set: &mut dyn Iterator<Item = usize>| -> u64 {
        set.map(|i| s.rewards.get(i).copied().unwrap_or(0)).sum()
    };
    let honest: Vec<usize> = (0..attacked.nodes.len())
        .filter(|i| !attackers.contains(i))
        .collect();
    let credited = |s: &Settled| -> u64 {
        attackers
            .iter()
            .map(|&i| s.credited.get(i).copied().unwrap_or(0))
            .sum()
    };
    let mut rules: Vec<String> = attackers
        .iter()
        .flat_map(|i| after.rules.get(i).cloned().unwrap_or_default())
        .map(|r| r.as_str().to_owned())
        .collect();
    rules.sort();
    rules.dedup();
    RewardOutcome {
        name,
        epochs,
        attacker_paid_ppm: ppm(sum(&after, &mut attackers.iter().copied())),
        attacker_fair_ppm: ppm(sum(&before, &mut attackers.iter().copied())),
        attacker_gain_bytes: credited(&after).saturating_sub(credited(&before)),
        victims_paid_ppm: ppm(sum(&after, &mut victims.iter().copied())),
        victims_fair_ppm: ppm(sum(&before, &mut victims.iter().copied())),
        honest_loss_ppm: ppm(sum(&before, &mut honest.iter().copied())
            .saturating_sub(sum(&after, &mut honest.iter().copied()))),
        honest_penalized: after
            .penalized
            .iter()
            .filter(|i| !attackers.contains(i))
            .count(),
        rules,
    }
}

/// Grants live only while their viewer watched.
fn watched(nodes: Vec<Node>) -> World {
    World {
        nodes,
        grants_to_epoch_end: false,
        prober_outage_second_epoch: false,
        history: false,
        viewers_seasoned: false,
        rotates: None,
    }
}

/// Grants live until the epoch's end, as the coordinator logs its hour-long grants.
fn to_epoch_end(nodes: Vec<Node>) -> World {
    World {
        nodes,
        grants_to_epoch_end: true,
        prober_outage_second_epoch: false,
        history: false,
        viewers_seasoned: false,
        rotates: None,
    }
}

/// Runs every reward scenario.
pub fn run_all() -> Vec<RewardOutcome> {
    let mut out = Vec::new();

    // Operator "acme" runs a node of long standing and one registered an epoch before (on
    // probation). A throwaway node of the attacker's, in a /24 of its own, registers as "acme"
    // and hands in a forged receipt: it is penalized, and "acme" is listed as a recently
    // penalized operator. The baseline's throwaway forges under a name of its own.
    let mut base = others();
    let acme = base.len();
    base.push(node("acme", 20, &[60, 60]));
    base.push(Node {
        new: true,
        ..node("acme", 21, &[60, 60])
    });
    let throwaway = base.len();
    base.push(Node {
        forges_first_epoch: true,
        ..node("throwaway", 30, &[60])
    });
    let mut world = base.clone();
    world[throwaway].operator = "acme";
    out.push(outcome(
        "throwaway node registered under another operator's name, penalized",
        &watched(base),
        &watched(world),
        &[throwaway],
        &[acme, acme + 1],
    ));

    // The same on the name every node has that sets none: three honest nodes keep the
    // default, two of them new.
    let mut base = others();
    for (k, i) in [7usize, 8, 9].into_iter().enumerate() {
        base[i].operator = "anonymous";
        base[i].new = k > 0;
    }
    let throwaway = base.len();
    base.push(Node {
        forges_first_epoch: true,
        ..node("throwaway", 30, &[60])
    });
    let mut world = base.clone();
    world[throwaway].operator = "anonymous";
    out.push(outcome(
        "throwaway node on the default operator name, penalized",
        &watched(base),
        &watched(world),
        &[throwaway],
        &[7, 8, 9],
    ));

    // "acme" earns just under the operator cap (5 of 27 viewer-hours, 18.5 %); a node of the
    // attacker's serving 2 viewer-hours registers as "acme" and pushes the group over it.
    let mut base = others();
    let acme = base.len();
    base.push(node("acme", 20, &[60, 60, 60]));
    base.push(node("acme", 21, &[60, 60]));
    let squatter = base.len();
    base.push(node("squatter", 30, &[60, 60]));
    let mut world = base.clone();
    world[squatter].operator = "acme";
    out.push(outcome(
        "node registered under the name of an operator near the cap",
        &watched(base),
        &watched(world),
        &[squatter],
        &[acme, acme + 1],
    ));

    // "acme" runs three nodes serving 9 of 31 viewer-hours (29 %), so the operator cap holds it
    // at 20 %; a node of the attacker's serving 2 viewer-hours registers as "acme" without
    // acme's key (and one with a key of its own) and shares the capped 20 %.
    let mut base = others();
    let acme = base.len();
    for net in 20..23 {
        base.push(node("acme", net, &[60, 60, 60]));
    }
    let squatter = base.len();
    base.push(node("squatter", 30, &[60, 60]));
    let mut world = base.clone();
    world[squatter].operator = "acme";
    world[squatter].key = None;
    out.push(outcome(
        "node registered without a key under the name of an operator at the cap",
        &watched(base.clone()),
        &watched(world),
        &[squatter],
        &[acme, acme + 1, acme + 2],
    ));
    // The operator at the cap runs its third node under a spelling of its name that differs
    // only in case and a trailing space (with its own key): the rules must still see one
    // operator under one cap, not two under two.
    let mut world = base.clone();
    world[acme + 2].operator = "ACME ";
    out.push(outcome(
        "operator at the cap running a node under a case and space variant of its name",
        &watched(base.clone()),
        &watched(world),
        &[acme, acme + 1, acme + 2],
        &(0..acme).collect::<Vec<_>>(),
    ));
    // The same squatter registers first and binds "acme" to a key of its own: acme's nodes,
    // refused the name, register as their own operators.
    let mut world = base.clone();
    world[squatter].operator = "acme";
    world[squatter].registers_first = true;
    out.push(outcome(
        "node binding the name of an operator at the cap before it registers",
        &watched(base),
        &watched(world),
        &[squatter],
        &[acme, acme + 1, acme + 2],
    ));

    // A bot farm (40 fresh keys in one /24, one minute each, on the attacker's node) signs
    // receipts for a third of the stream's bitrate, outnumbering the 22 honest sessions of a
    // minute or more that the stream's measured bitrate is the median of. The baseline's bots
    // acknowledge the full bitrate.
    let mut base = others();
    let puller = base.len();
    base.push(Node {
        bots: 40,
        ..node("puller", 30, &[60, 60])
    });
    let mut world = base.clone();
    world[puller].bot_rate_ppm = 333_333;
    out.push(outcome(
        "bitrate median pulled down by one /24 of one-minute bot sessions",
        &watched(base),
        &watched(world),
        &[puller],
        &(0..puller).collect::<Vec<_>>(),
    ));

    // A new honest node (on probation) runs in a shared /24 (a hosting provider's). An
    // attacker rents a throwaway node there and hands in a forged receipt: the /24 is listed
    // as recently penalized. The baseline's throwaway is in a /24 of its own.
    let mut base = others();
    let newcomer = base.len();
    base.push(Node {
        new: true,
        ..node("newcomer", 40, &[60, 60])
    });
    let throwaway = base.len();
    base.push(Node {
        forges_first_epoch: true,
        ..node("throwaway", 41, &[60])
    });
    let mut world = base.clone();
    world[throwaway].net = 40;
    out.push(outcome(
        "throwaway node penalized in a new honest node's shared /24",
        &watched(base),
        &watched(world),
        &[throwaway],
        &[newcomer],
    ));

    // A cheater's node is penalized (a forged receipt) and it moves its viewers to a spare
    // identity in the same /24: registered 30 epochs before and left idle, against one
    // registered now (the baseline), which the rules take for a penalized node come back.
    let mut base = others();
    base.push(Node {
        forges_first_epoch: true,
        ..node("cheater", 30, &[60])
    });
    let spare = base.len();
    base.push(Node {
        spare: true,
        registered: Some(FIRST),
        ..node("cheater-spare", 30, &[60, 60])
    });
    let mut world = base.clone();
    world[spare].registered = Some(FIRST - 30);
    let history = |nodes: Vec<Node>| World {
        history: true,
        ..watched(nodes)
    };
    out.push(outcome(
        "penalized node's viewers moved to a spare identity registered long before, left idle",
        &history(base),
        &history(world),
        &[spare],
        &[],
    ));

    // Operator "big" (21 of 42 viewer-hours, held at the 20 % cap) moves its biggest node (9
    // viewer-hours) into a small honest node's /24 (1 viewer-hour; a shared hosting /24): the
    // /24's cap is split between them by weight, though the big node can never take its part.
    let mut base = others();
    let big = base.len();
    base.push(node("big", 24, &[60; 9]));
    for net in 25..29 {
        base.push(node("big", net, &[60, 60, 60]));
    }
    let small = base.len();
    base.push(node("small", 40, &[60]));
    let mut world = base.clone();
    world[big].net = 40;
    out.push(outcome(
        "a capped operator's big node moved into a small honest node's /24",
        &watched(base),
        &watched(world),
        &(big..small).collect::<Vec<_>>(),
        &[small],
    ));

    // Four colluding keys watch three 10-minute sessions an epoch on the colluder's node and
    // nowhere else, which routing makes unlikely (11 operators serve). The colluder registers
    // 100 idle nodes under its name, never serving, to raise its route share.
    let mut base = others();
    let colluder = base.len();
    base.push(Node {
        colluders: 4,
        ..node("colluder", 30, &[60, 60])
    });
    let mut world = base.clone();
    for k in 0..100u8 {
        world.push(Node {
            idle: true,
            ..node("colluder", 100 + k, &[])
        });
    }
    out.push(outcome(
        "colluding viewers on one operator that registered 100 idle nodes",
        &watched(base),
        &watched(world),
        &[colluder],
        &[],
    ));

    // The same colluders, their node registering under a fresh operator name (and key) in the
    // second epoch, so that their sessions of the window are split between two operators.
    let mut base = others();
    let colluder = base.len();
    base.push(Node {
        colluders: 4,
        ..node("colluder", 30, &[60, 60])
    });
    let mut world = base.clone();
    world[colluder].second_name = Some("colluder-renamed");
    out.push(outcome(
        "colluding viewers on one node that renames its operator every epoch",
        &watched(base),
        &watched(world),
        &[colluder],
        &[],
    ));

    // No attacker: six of twelve honest nodes keep the default operator name.
    let mut base = others();
    base.push(node("o10", 10, &[60, 60]));
    base.push(node("o11", 11, &[60, 60]));
    let mut world = base.clone();
    for n in world.iter_mut().take(6) {
        n.operator = "anonymous";
    }
    out.push(outcome(
        "half the honest nodes keep the default operator name",
        &watched(base),
        &watched(world),
        &[],
        &[0, 1, 2, 3, 4, 5],
    ));

    // Grants live to the epoch's end while viewers watch 20 minutes each; the attacker's node
    // serves its viewers honestly and claims, as unattested, all that their grants could have
    // carried beyond their receipts.
    let mut base: Vec<Node> = others()
        .into_iter()
        .map(|n| Node {
            sessions: vec![20, 20, 20],
            ..n
        })
        .collect();
    let harvester = base.len();
    base.push(node("harvester", 30, &[20, 20, 20]));
    let mut world = base.clone();
    world[harvester].claims_grant_tails = true;
    out.push(outcome(
        "grant tails: 20-minute viewers, grants live to the epoch's end, claimed as unattested",
        &to_epoch_end(base.clone()),
        &to_epoch_end(world),
        &[harvester],
        &[],
    ));

    // The same node hands in none of its viewers' receipts, so their grants look like those of
    // players that cannot sign, and claims all they carried as unattested.
    let mut world = base.clone();
    world[harvester].drops_receipts = true;
    out.push(outcome(
        "grant tails: the node hands in no receipt and claims the grants' whole carry",
        &to_epoch_end(base.clone()),
        &to_epoch_end(world),
        &[harvester],
        &[],
    ));

    // A prober outage in the second epoch: every node keeps its last probed availability. The
    // attacker's node serves its viewers in the first, then goes dark while it heartbeats; its
    // viewers ask again and watch elsewhere, and it claims all that their grants on it carried.
    let mut world = base.clone();
    world[harvester].dark_second_epoch = true;
    let outage = |nodes: Vec<Node>| World {
        prober_outage_second_epoch: true,
        ..to_epoch_end(nodes)
    };
    out.push(outcome(
        "dark through a prober outage, claiming its grants' whole carry",
        &outage(base.clone()),
        &outage(world),
        &[harvester],
        &[],
    ));

    // Three nodes of one operator (three /24s, three names) claim the tails.
    let harvesters = [harvester, base.len(), base.len() + 1];
    base.push(node("harvester-b", 31, &[20, 20, 20]));
    base.push(node("harvester-c", 32, &[20, 20, 20]));
    let mut world = base.clone();
    for &i in &harvesters {
        world[i].claims_grant_tails = true;
    }
    out.push(outcome(
        "grant tails claimed by three nodes under three names",
        &to_epoch_end(base),
        &to_epoch_end(world),
        &harvesters,
        &[],
    ));

    // Probe flapping: the attacker's node is up only around the prober's rounds, so it passes
    // every probe, but its viewers get ten minutes of each hour-long session before it goes
    // dark; they ask again and watch the rest on another node. It bills the whole epoch: all
    // that its grants (live to the epoch's end) could carry beyond its receipts, as
    // unattested. The baseline's flapper claims only what it served.
    let mut base = others();
    let flapper = base.len();
    base.push(Node {
        flaps_after: Some(10),
        ..node("flapper", 30, &[60, 60, 60])
    });
    let mut world = base.clone();
    world[flapper].claims_grant_tails = true;
    out.push(outcome(
        "probe flapping: up only around probe rounds, billing the whole epoch",
        &to_epoch_end(base),
        &to_epoch_end(world),
        &[flapper],
        &[],
    ));

    // Resold seasoned viewer keys: a fresh node (registered in the first epoch, serving from
    // the second) runs twelve colluding keys, one /24 each, three 10-minute sessions each on
    // it and nowhere else. The attacker bought the keys seasoned: each watched on three honest
    // nodes (three /24s) in the history epoch. The baseline's keys are fresh.
    let mut base = others();
    let buyer = base.len();
    base.push(Node {
        spare: true,
        registered: Some(FIRST),
        colluders: 12,
        colluders_seasoned: true,
        ..node("buyer", 30, &[60, 60])
    });
    let history = |nodes: Vec<Node>| World {
        history: true,
        viewers_seasoned: true,
        ..watched(nodes)
    };
    let mut fresh = base.clone();
    fresh[buyer].colluders_seasoned = false;
    out.push(outcome(
        "resold seasoned viewer keys colluding on a fresh node",
        &history(fresh),
        &history(base),
        &[buyer],
        &[],
    ));

    // A node of the attacker's holds acme's key through a leak and registers under "acme",
    // whose three nodes are held at the cap: a proven member, it shares acme's capped 20 %.
    // Then acme rotates its key: its own nodes register again with the new key, and the
    // leaked key's proof groups the attacker's node with no one.
    let mut base = others();
    let acme = base.len();
    for net in 20..23 {
        base.push(node("acme", net, &[60, 60, 60]));
    }
    let holder = base.len();
    base.push(node("holder", 30, &[60, 60]));
    let mut world = base.clone();
    world[holder].operator = "acme";
    world[holder].key = Some("acme");
    world[holder].leaked_key = true;
    out.push(outcome(
        "node with a leaked operator key under the name of an operator at the cap",
        &watched(base.clone()),
        &watched(world.clone()),
        &[holder],
        &[acme, acme + 1, acme + 2],
    ));
    let rotated = |nodes: Vec<Node>| World {
        rotates: Some("acme"),
        ..watched(nodes)
    };
    out.push(outcome(
        "the same after the operator rotated its key",
        &rotated(base),
        &rotated(world),
        &[holder],
        &[acme, acme + 1, acme + 2],
    ));
    // A node's colluding viewers sign nothing in the first epoch and it claims nothing there;
    // in the second, each of those sessions signs one receipt for all it received, so the
    // second epoch books two epochs' bytes with the span they cover (as a backlog after a
    // coordinator outage is). Compared over both epochs: moving bytes between epochs must
    // not pay more than handing them in on time.
    let mut base = others();
    let withholder = base.len();
    base.push(node("withholder", 30, &[60, 60, 60]));
    let mut world = base.clone();
    world[withholder].withholds_first_epoch = true;
    out.push(outcome_over(
        Window::Both,
        "receipts withheld through the first epoch, dumped in the second",
        &watched(base),
        &watched(world),
        &[withholder],
        &[],
    ));

    // The same by one viewer key watching three streams at once on the node (one over the
    // viewer cap each epoch): the dumped sessions' span before the epoch (an outage-like gap)
    // must not widen the cap beyond what on-time receipts got.
    let mut base = others();
    let withholder = base.len();
    base.push(Node {
        one_viewer: true,
        ..node("withholder", 30, &[60, 60, 60])
    });
    let mut world = base.clone();
    world[withholder].withholds_first_epoch = true;
    out.push(outcome_over(
        Window::Both,
        "an over-cap viewer's receipts withheld through the first epoch, dumped in the second",
        &watched(base),
        &watched(world),
        &[withholder],
        &[],
    ));
    out
}

/// The scenarios as a table.
pub fn table(outcomes: &[RewardOutcome]) -> String {
    let mut out = String::from(
        "| scenario | attacker paid / fair (ppm) | attacker gain (MB) | victims paid / fair (ppm) | honest loss (ppm) | honest penalized | rules on attacker |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {}{} | {} / {} | {} | {} / {} | {} | {} | {} |\n",
            o.name,
            if o.epochs > 1 { " (both epochs)" } else { "" },
            o.attacker_paid_ppm,
            o.attacker_fair_ppm,
            o.attacker_gain_bytes / 1_000_000,
            o.victims_paid_ppm,
            o.victims_fair_ppm,
            o.honest_loss_ppm,
            o.honest_penalized,
            o.rules.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(outcomes: &'a [RewardOutcome], name: &str) -> &'a RewardOutcome {
        outcomes
            .iter()
            .find(|o| o.name.starts_with(name))
            .unwrap_or_else(|| panic!("scenario {name}"))
    }

    #[test]
    fn operator_names_and_grant_tails_gain_nothing_beyond_their_bounds() {
        let outcomes = run_all();
        print!("{}", table(&outcomes));
        for o in &outcomes {
            assert_eq!(o.honest_penalized, 0, "{}: honest nodes penalized", o.name);
        }
        // A throwaway node penalized under another operator's name, or the default one, costs
        // that operator's new nodes nothing (the whitewash weight follows the prefix alone).
        for name in ["throwaway node registered", "throwaway node on the default"] {
            let o = by_name(&outcomes, name);
            assert_eq!(o.victims_paid_ppm, o.victims_fair_ppm, "{o:?}");
            assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        }
        // Nodes that set no operator name are not one operator under one cap.
        let o = by_name(&outcomes, "half the honest nodes");
        assert_eq!(o.victims_paid_ppm, o.victims_fair_ppm, "{o:?}");
        // A name is bound to the first operator key that proves a node under it: a node naming
        // an operator without that key's signature is refused the name and is its own
        // operator, so it shares no one's cap (before: 57 142 / 74 074 ppm for the squatter,
        // 142 857 / 185 185 for the operator near the cap; 36 363 / 72 727 and 163 636 /
        // 200 000 at the cap).
        for name in [
            "node registered under the name",
            "node registered without a key under the name",
        ] {
            let o = by_name(&outcomes, name);
            assert_eq!(o.attacker_paid_ppm, o.attacker_fair_ppm, "{o:?}");
            assert_eq!(o.victims_paid_ppm, o.victims_fair_ppm, "{o:?}");
        }
        // A name is one name however it is spelt: an operator at the cap gains nothing by
        // naming one node "ACME " (before: 290 322 of 200 000 ppm, the others losing the
        // difference).
        let o = by_name(&outcomes, "operator at the cap running a node under a case");
        assert_eq!(o.attacker_paid_ppm, o.attacker_fair_ppm, "{o:?}");
        assert_eq!(o.honest_loss_ppm, 0, "{o:?}");
        // Binding a big operator's name first takes nothing from it: its nodes, refused the
        // name, are each their own operator (and no longer capped together).
        let o = by_name(&outcomes, "node binding the name");
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        assert!(o.victims_paid_ppm >= o.victims_fair_ppm, "{o:?}");
        // One /24 of bots has one vote in the stream's measured bitrate: signing for a third
        // of it in more sessions than the honest viewers had pulls no honest session over the
        // bitrate (before: every honest session dropped, victims 0 of 882 352 ppm, the
        // attacker's node 200 000 of 117 647 ppm and the rest of the pool unallocated).
        let o = by_name(&outcomes, "bitrate median pulled down");
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        assert!(o.victims_paid_ppm >= o.victims_fair_ppm, "{o:?}");
        assert_eq!(o.honest_loss_ppm, 0, "{o:?}");
        // A throwaway penalized in a shared /24 does not put a node serving there before at
        // the whitewash weight (before: 9 433 of 45 454 ppm).
        let o = by_name(
            &outcomes,
            "throwaway node penalized in a new honest node's shared",
        );
        assert_eq!(o.victims_paid_ppm, o.victims_fair_ppm, "{o:?}");
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        // A spare identity registered long before and left idle is as new as one registered
        // now, and takes its penalized predecessor's place at the whitewash weight (before:
        // full weight, 86 956 against 9 433 ppm).
        let o = by_name(&outcomes, "penalized node's viewers moved to a spare");
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        assert!(o.rules.iter().any(|r| r == "whitewashing"), "{o:?}");
        // Idle registrations do not count in an operator's route share: its colluding viewers
        // are still unlikely, and their bytes dropped (before: 166 666 of 90 909 ppm, +3.6 GB).
        let o = by_name(&outcomes, "colluding viewers on one operator");
        assert_eq!(o.attacker_paid_ppm, o.attacker_fair_ppm, "{o:?}");
        assert_eq!(o.attacker_gain_bytes, 0, "{o:?}");
        assert!(o.rules.iter().any(|r| r == "collusion"), "{o:?}");
        // Nor does registering under a fresh operator name split the colluders' history: it
        // is read by the operator each node is registered under now (before: 166 666 of
        // 90 909 ppm, +3.6 GB).
        let o = by_name(&outcomes, "colluding viewers on one node that renames");
        assert_eq!(o.attacker_paid_ppm, o.attacker_fair_ppm, "{o:?}");
        assert!(o.rules.iter().any(|r| r == "collusion"), "{o:?}");
        // A small node sharing a /24 with a capped operator's big node keeps its share: the
        // /24's cap is refilled around what the big node can take (before: 20 000 of 38 095).
        let o = by_name(&outcomes, "a capped operator's big node moved");
        assert!(
            o.victims_paid_ppm.abs_diff(o.victims_fair_ppm) <= 1,
            "{o:?}"
        );
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        // Grant tails: a signing viewer's grant allows its silence, nothing more.
        let silence = BITRATE * FraudConfig::default().signed_silence_seconds / 2;
        let o = by_name(&outcomes, "grant tails: 20-minute");
        assert!(o.attacker_gain_bytes <= 3 * silence, "{o:?}");
        // A node dark through a prober outage keeps its availability, but its viewers signed
        // where they watched instead: it is paid their grants' silence (45 MB against the
        // 1 800 MB it delivered when it served), not what the grants could carry.
        let o = by_name(&outcomes, "dark through a prober outage");
        assert_eq!(o.attacker_gain_bytes, 0, "{o:?}");
        assert!(o.attacker_paid_ppm * 20 < o.attacker_fair_ppm, "{o:?}");
        // A node up only around the prober's rounds passes every probe, but its viewers sign
        // where they watch once it goes dark: a viewer granted the same stream on another node
        // ended its silence here, so billing the whole epoch gains nothing (it gained each
        // grant's silence allowance, 45 MB, before), let alone what the grants could carry
        // (1 800 MB).
        let o = by_name(&outcomes, "probe flapping");
        assert_eq!(o.attacker_gain_bytes, 0, "{o:?}");
        assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
        assert!(
            o.rules.iter().any(|r| r == "unattested_beyond_grants"),
            "{o:?}"
        );
        // In an established network (every honest key watched three /24s) a fresh node's
        // farm of fresh keys, one /24 each, earns nothing (new_viewer_key). The open gap: the
        // same farm of keys bought seasoned earns 130 434 ppm, 10.8 GB credited, all of it the
        // honest nodes' loss; collusion needs more than the one epoch they have run here.
        let o = by_name(&outcomes, "resold seasoned viewer keys");
        assert_eq!(o.attacker_fair_ppm, 0, "{o:?}");
        assert!(o.rules.iter().any(|r| r == "new_viewer_key"), "{o:?}");
        // A leaked operator key lets its holder share the operator's cap (the threat); once
        // the operator rotated its key the holder is its own operator and takes nothing.
        let o = by_name(&outcomes, "node with a leaked operator key");
        assert!(o.victims_paid_ppm < o.victims_fair_ppm, "{o:?}");
        let o = by_name(&outcomes, "the same after the operator rotated");
        assert_eq!(o.attacker_paid_ppm, o.attacker_fair_ppm, "{o:?}");
        assert_eq!(o.victims_paid_ppm, o.victims_fair_ppm, "{o:?}");
        let o = by_name(&outcomes, "grant tails claimed by three");
        assert!(o.attacker_gain_bytes <= 9 * silence, "{o:?}");
        // The limit: a node handing in none of its viewers' receipts (viewers that post them to
        // the node, not the coordinator, as the client does by default) makes their grants look
        // like those of players that cannot sign; it gains at most half of what they could
        // carry, less the receipted bytes it gave up.
        let o = by_name(&outcomes, "grant tails: the node hands in no receipt");
        let carry = bytes(60 + 53 + 46);
        assert!(o.attacker_gain_bytes <= carry / 2 - bytes(3 * 20), "{o:?}");
        // Receipts withheld for an epoch and dumped in the next (with the span they cover since
        // their grants' start, as after a coordinator outage) earn nothing over both epochs that
        // on-time receipts would not, not even for a viewer over the cap.
        for name in [
            "receipts withheld through",
            "an over-cap viewer's receipts withheld",
        ] {
            let o = by_name(&outcomes, name);
            assert_eq!(o.epochs, 2, "{o:?}");
            assert_eq!(o.attacker_gain_bytes, 0, "{o:?}");
            assert!(o.attacker_paid_ppm <= o.attacker_fair_ppm, "{o:?}");
            assert_eq!(o.honest_loss_ppm, 0, "{o:?}");
        }
    }
}
