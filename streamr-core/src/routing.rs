//! Viewer routing: a seeded, replayable weighted random pick among eligible nodes.
//!
//! Weight = max(measured quality, newcomer floor). The pick is a pure function of
//! (seed, candidates): candidates are sorted by node id and a ChaCha20 generator seeded with
//! `blake3(seed ‖ session id)` draws one integer below the total weight.
//!
//! [`Router::pick_loaded`] also weighs each node by its spare capacity (in viewers: what it can
//! carry minus the viewers it has or was just sent), so concurrent picks spread over the nodes
//! instead of piling onto one; when every node is full, by how little it is overloaded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::ids::SessionId;

/// A node the viewer may be sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCandidate {
    /// The node.
    pub node_id: NodeId,
    /// Measured quality, ppm (e.g. availability × on-time share).
    pub quality_ppm: u64,
}

/// A node the viewer may be sent to, with how loaded it is (see [`Router::pick_loaded`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedCandidate {
    /// The node and its measured quality.
    pub candidate: RouteCandidate,
    /// Viewers it can serve at once (see [`Router::viewer_capacity`]).
    pub capacity_viewers: u64,
    /// Viewers it serves or was sent and has not reported yet.
    pub load_viewers: u64,
}

/// Picks nodes for sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// Lowest weight any eligible node gets, ppm, so newcomers are tried and measured.
    pub newcomer_floor_ppm: u64,
    /// The upload one viewer takes, kbit/s: a node's announced capacity over this is how many
    /// viewers it can serve.
    #[serde(default = "default_viewer_kbps")]
    pub viewer_kbps: u64,
}

fn default_viewer_kbps() -> u64 {
    2_500
}

impl Default for Router {
    fn default() -> Self {
        Self {
            newcomer_floor_ppm: 100_000,
            viewer_kbps: default_viewer_kbps(),
        }
    }
}

/// Scale of the overload weight, so shares below one viewer slot keep their resolution.
const OVERLOAD_SCALE: u128 = 1_000;

impl Router {
    /// The seed of one session's pick, derived from the coordinator's epoch seed.
    pub fn session_seed(epoch_seed: &[u8; 32], session: &SessionId) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(epoch_seed);
        hasher.update(session.as_bytes());
        *hasher.finalize().as_bytes()
    }

    /// Picks one candidate; `None` when there are none. Replaying with the same seed and
    /// candidates (in any order) gives the same node.
    pub fn pick(&self, seed: [u8; 32], candidates: &[RouteCandidate]) -> Option<NodeId> {
        let weighted: Vec<(NodeId, u128)> = candidates
            .iter()
            .map(|c| (c.node_id, self.quality_weight(c)))
            .collect();
        draw(seed, weighted)
    }

    /// Viewers a node announcing `capacity_kbps` of upload can serve at once (at least one).
    pub fn viewer_capacity(&self, capacity_kbps: u64) -> u64 {
        (capacity_kbps / self.viewer_kbps.max(1)).max(1)
    }

    /// Picks one candidate weighing its quality (as [`Router::pick`]) by its spare capacity:
    /// capacity minus load, in viewers, so a node gets fewer new viewers the fuller it is and
    /// none when full while others have room. When every node is full, each is weighed by
    /// capacity over load instead, sending the overflow where it overloads least. `None` when
    /// there are no candidates. Replaying with the same seed and candidates (in any order) gives
    /// the same node.
    pub fn pick_loaded(&self, seed: [u8; 32], candidates: &[LoadedCandidate]) -> Option<NodeId> {
        let spare = |c: &LoadedCandidate| c.capacity_viewers.max(1).saturating_sub(c.load_viewers);
        let any_room = candidates.iter().any(|c| spare(c) > 0);
        let weighted: Vec<(NodeId, u128)> = candidates
            .iter()
            .map(|c| {
                let quality = self.quality_weight(&c.candidate);
                let share = if any_room {
                    u128::from(spare(c)) * OVERLOAD_SCALE
                } else {
                    u128::from(c.capacity_viewers.max(1)) * OVERLOAD_SCALE
                        / u128::from(c.load_viewers.saturating_add(1))
                };
                (c.candidate.node_id, quality * share)
            })
            .collect();
        draw(seed, weighted)
    }

    fn quality_weight(&self, candidate: &RouteCandidate) -> u128 {
        u128::from(candidate.quality_ppm.max(self.newcomer_floor_ppm).max(1))
    }
}

/// Draws one node with probability proportional to its weight, from a generator seeded with
/// `seed`, over the nodes sorted by id (so the input order does not matter).
fn draw(seed: [u8; 32], mut weighted: Vec<(NodeId, u128)>) -> Option<NodeId> {
    weighted.sort_by_key(|(node_id, _)| *node_id);
    let total: u128 = weighted.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return None;
    }
    let mut draw = ChaCha20Rng::from_seed(seed).gen_range(0..total);
    for (node_id, w) in weighted {
        if draw < w {
            return Some(node_id);
        }
        draw -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<RouteCandidate> {
        (0..5u8)
            .map(|i| RouteCandidate {
                node_id: NodeId::from_bytes([i; 32]),
                quality_ppm: if i == 0 { 0 } else { 900_000 },
            })
            .collect()
    }

    #[test]
    fn pick_is_replayable_and_order_independent() {
        let router = Router::default();
        let mut reversed = candidates();
        reversed.reverse();
        for s in 0..50u8 {
            let seed = Router::session_seed(&[s; 32], &SessionId::from_bytes([s; 16]));
            assert_eq!(
                router.pick(seed, &candidates()),
                router.pick(seed, &reversed)
            );
        }
        assert_eq!(router.pick([0; 32], &[]), None);
    }

    #[test]
    fn picks_follow_weights_with_a_newcomer_floor() {
        let router = Router::default();
        let mut counts = [0u32; 5];
        for s in 0..3_700u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&s.to_be_bytes());
            let node = router.pick(seed, &candidates()).unwrap();
            counts[node.as_bytes()[0] as usize] += 1;
        }
        // Expected: the newcomer 100/3700 of picks, each other node 900/3700.
        assert!((60..=140).contains(&counts[0]), "{counts:?}");
        for c in &counts[1..] {
            assert!((800..=1000).contains(c), "{counts:?}");
        }
    }

    fn loaded(id: u8, capacity_viewers: u64, load_viewers: u64) -> LoadedCandidate {
        LoadedCandidate {
            candidate: RouteCandidate {
                node_id: NodeId::from_bytes([id; 32]),
                quality_ppm: 900_000,
            },
            capacity_viewers,
            load_viewers,
        }
    }

    fn seed(i: u32) -> [u8; 32] {
        let mut session = [0u8; 16];
        session[..4].copy_from_slice(&i.to_be_bytes());
        Router::session_seed(&[7; 32], &SessionId::from_bytes(session))
    }

    /// Picks `count` viewers one after the other, each grant counting as load at once.
    fn spread(router: &Router, mut nodes: Vec<LoadedCandidate>, count: u32) -> Vec<u64> {
        for i in 0..count {
            let picked = router.pick_loaded(seed(i), &nodes).expect("a node");
            let node = nodes
                .iter_mut()
                .find(|n| n.candidate.node_id == picked)
                .expect("a candidate");
            node.load_viewers += 1;
        }
        nodes.iter().map(|n| n.load_viewers).collect()
    }

    #[test]
    fn concurrent_picks_spread_over_equal_nodes() {
        let router = Router::default();
        // Room for all: picks follow the spare capacity and even out.
        let loads = spread(&router, (1..=3).map(|i| loaded(i, 200, 0)).collect(), 300);
        assert!(loads.iter().all(|l| (85..=115).contains(l)), "{loads:?}");
        // Full long before the end: the overflow still spreads.
        let loads = spread(&router, (1..=3).map(|i| loaded(i, 20, 0)).collect(), 300);
        assert!(loads.iter().all(|l| (85..=115).contains(l)), "{loads:?}");
    }

    #[test]
    fn spread_follows_capacity_and_skips_full_nodes_while_others_have_room() {
        let router = Router::default();
        let loads = spread(&router, vec![loaded(1, 300, 0), loaded(2, 100, 0)], 200);
        assert!((140..=160).contains(&loads[0]), "{loads:?}");
        let nodes = vec![loaded(1, 10, 10), loaded(2, 10, 3), loaded(3, 10, 12)];
        for i in 0..200 {
            assert_eq!(
                router.pick_loaded(seed(i), &nodes),
                Some(NodeId::from_bytes([2; 32]))
            );
        }
    }

    #[test]
    fn loaded_pick_is_replayable_and_order_independent() {
        let router = Router::default();
        let nodes = vec![loaded(1, 10, 4), loaded(2, 30, 9), loaded(3, 5, 0)];
        let mut reversed = nodes.clone();
        reversed.reverse();
        for i in 0..100 {
            assert_eq!(
                router.pick_loaded(seed(i), &nodes),
                router.pick_loaded(seed(i), &reversed)
            );
        }
        assert_eq!(router.pick_loaded([0; 32], &[]), None);
        assert_eq!(router.viewer_capacity(10_000), 4);
        assert_eq!(router.viewer_capacity(0), 1);
    }
}
