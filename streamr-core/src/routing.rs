//! Viewer routing: a seeded, replayable weighted random pick among eligible nodes.
//!
//! Weight = max(measured quality, newcomer floor). The pick is a pure function of
//! (seed, candidates): candidates are sorted by node id and a ChaCha20 generator seeded with
//! `blake3(seed ‖ session id)` draws one integer below the total weight.

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

/// Picks nodes for sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// Lowest weight any eligible node gets, ppm, so newcomers are tried and measured.
    pub newcomer_floor_ppm: u64,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            newcomer_floor_ppm: 100_000,
        }
    }
}

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
        let mut sorted: Vec<&RouteCandidate> = candidates.iter().collect();
        sorted.sort_by_key(|c| c.node_id);
        let weight = |c: &RouteCandidate| c.quality_ppm.max(self.newcomer_floor_ppm).max(1);
        let total: u128 = sorted.iter().map(|c| u128::from(weight(c))).sum();
        if total == 0 {
            return None;
        }
        let mut draw = ChaCha20Rng::from_seed(seed).gen_range(0..total);
        for candidate in sorted {
            let w = u128::from(weight(candidate));
            if draw < w {
                return Some(candidate.node_id);
            }
            draw -= w;
        }
        None
    }
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
}
