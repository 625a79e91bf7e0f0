//! Viewer routing: a seeded, replayable weighted random pick among eligible nodes.
//!
//! Weight = max(measured quality, newcomer floor). The pick is a pure function of
//! (seed, candidates): candidates are sorted by node id and a ChaCha20 generator seeded with
//! `blake3(seed ‖ session id)` draws one integer below the total weight.
//!
//! [`Router::pick_loaded`] also weighs each node by its spare capacity (in viewers: what it can
//! carry minus the viewers it has or was just sent), so concurrent picks spread over the nodes
//! instead of piling onto one; when every node is full, by how little it is overloaded.
//!
//! Nothing a viewer or a node can say moves the pick: [`Router::viewer_seed`] derives the seed
//! from what the viewer cannot re-roll (its key, the epoch, the request's source prefix and a
//! coordinator secret), and [`Router::measured_candidate`] weighs a node by what the
//! coordinator measured of it (receipts, probes, grants it issued), never by its announcement
//! alone: an announcement can only lower a node's capacity or raise its load.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, ViewerKey};
use crate::ids::SessionId;

/// The network prefixes a request came from: an IPv4 /24, or an IPv6 /48 and the /64 inside
/// it (an IPv4-mapped IPv6 address counts as IPv4). Budgets and per-prefix caps key on these
/// strings (`a.b.c.0/24`, `2001:db8:1::/48`, `2001:db8:1:2::/64`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePrefixes {
    /// The IPv4 /24 or the IPv6 /48: what one site or customer usually holds.
    pub wide: String,
    /// The IPv6 /64 (one LAN); `None` for IPv4.
    pub narrow: Option<String>,
}

impl SourcePrefixes {
    /// The prefixes of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                SourcePrefixes {
                    wide: format!("{}/24", Ipv4Addr::new(a, b, c, 0)),
                    narrow: None,
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let masked = |len: u32| Ipv6Addr::from(bits & (u128::MAX << (128 - len)));
                SourcePrefixes {
                    wide: format!("{}/48", masked(48)),
                    narrow: Some(format!("{}/64", masked(64))),
                }
            }
        }
    }

    /// Each prefix with its scope name (`ipv4/24`, `ipv6/48`, `ipv6/64`), widest first.
    pub fn scoped(&self) -> Vec<(&'static str, &str)> {
        match &self.narrow {
            None => vec![("ipv4/24", self.wide.as_str())],
            Some(narrow) => vec![
                ("ipv6/48", self.wide.as_str()),
                ("ipv6/64", narrow.as_str()),
            ],
        }
    }
}

/// What the coordinator knows of one node when it routes a viewer. Everything but the two
/// announced fields is measured by the coordinator itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeasurements {
    /// Upload capacity the node announced, kbit/s: an upper bound, never a claim on viewers.
    pub announced_capacity_kbps: u64,
    /// Viewers the node reported at its last heartbeat: counted as load, never as capacity.
    pub announced_viewers: u64,
    /// Distinct sessions on the node whose viewers' receipts arrived over the proving window:
    /// what it has shown it can carry.
    pub proven_sessions: u64,
    /// Distinct sessions on the node whose viewers' receipts arrived over the live window:
    /// viewers it is serving now.
    pub live_sessions: u64,
    /// Grants issued to the node recently that no receipt has confirmed yet, each source prefix
    /// counted at most [`Router::pending_per_prefix`] times (so junk grants from one network
    /// cannot make a node look full).
    pub pending_grants: u64,
    /// Sustained throughput the coordinator's probes measured from it, bytes per second;
    /// `None` before any probe passed.
    pub probed_bytes_per_s: Option<u64>,
}

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
    /// Viewers a node is trusted with before receipts prove more (its starting capacity).
    #[serde(default = "default_newcomer_viewers")]
    pub newcomer_viewers: u64,
    /// How far proven capacity may grow beyond the sessions receipts showed, ppm (2 000 000:
    /// a node that served 10 verified sessions may be sent up to 20).
    #[serde(default = "default_growth_ppm")]
    pub growth_ppm: u64,
    /// Unconfirmed grants from one source prefix that count as a node's load at most.
    #[serde(default = "default_pending_per_prefix")]
    pub pending_per_prefix: u64,
}

fn default_viewer_kbps() -> u64 {
    2_500
}

fn default_newcomer_viewers() -> u64 {
    8
}

fn default_growth_ppm() -> u64 {
    2_000_000
}

fn default_pending_per_prefix() -> u64 {
    2
}

impl Default for Router {
    fn default() -> Self {
        Self {
            newcomer_floor_ppm: 100_000,
            viewer_kbps: default_viewer_kbps(),
            newcomer_viewers: default_newcomer_viewers(),
            growth_ppm: default_growth_ppm(),
            pending_per_prefix: default_pending_per_prefix(),
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

    /// The seed of a viewer's pick: keyed by the coordinator's `routing_secret`, the epoch, the
    /// viewer's key and the source prefix of its request. Asking again gives the same draw, so
    /// re-requesting cannot re-roll it; only a new key or a new network does, and both are
    /// budgeted by the coordinator.
    pub fn viewer_seed(
        routing_secret: &[u8; 32],
        epoch: i64,
        viewer: &ViewerKey,
        source_prefix: &str,
    ) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(routing_secret);
        hasher.update(b"streamr viewer route v1");
        hasher.update(&epoch.to_be_bytes());
        hasher.update(viewer.as_bytes());
        hasher.update(&(source_prefix.len() as u64).to_be_bytes());
        hasher.update(source_prefix.as_bytes());
        *hasher.finalize().as_bytes()
    }

    /// Viewers a node can serve by the coordinator's measurements: what receipts proved (at
    /// least [`Router::newcomer_viewers`], grown by [`Router::growth_ppm`]), no more than its
    /// probes' sustained throughput carries, and no more than it announced.
    pub fn measured_capacity(&self, measured: &NodeMeasurements) -> u64 {
        let announced = self.viewer_capacity(measured.announced_capacity_kbps);
        let grown = u128::from(measured.proven_sessions) * u128::from(self.growth_ppm)
            / u128::from(crate::rewards::PPM);
        let proven = u64::try_from(grown)
            .unwrap_or(u64::MAX)
            .max(self.newcomer_viewers);
        let probed = measured.probed_bytes_per_s.map_or(u64::MAX, |bytes_per_s| {
            let kbps = bytes_per_s.saturating_mul(8) / 1_000;
            kbps / self.viewer_kbps.max(1)
        });
        announced.min(proven).min(probed).max(1)
    }

    /// A node's load by the coordinator's measurements: the viewers receipts show it serving
    /// plus the grants not confirmed yet, or what it announced if that is more.
    pub fn measured_load(&self, measured: &NodeMeasurements) -> u64 {
        measured
            .live_sessions
            .saturating_add(measured.pending_grants)
            .max(measured.announced_viewers)
    }

    /// A node as [`Router::pick_loaded`] weighs it, from measurements alone.
    pub fn measured_candidate(
        &self,
        candidate: RouteCandidate,
        measured: &NodeMeasurements,
    ) -> LoadedCandidate {
        LoadedCandidate {
            candidate,
            capacity_viewers: self.measured_capacity(measured),
            load_viewers: self.measured_load(measured),
        }
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
    fn source_prefixes_are_the_v4_24_and_the_v6_48_and_64() {
        let v4 = SourcePrefixes::of("192.0.2.77".parse().unwrap());
        assert_eq!(v4.wide, "192.0.2.0/24");
        assert_eq!(v4.narrow, None);
        let mapped = SourcePrefixes::of("::ffff:192.0.2.9".parse().unwrap());
        assert_eq!(mapped, v4, "an IPv4-mapped address is its IPv4 address");
        let v6 = SourcePrefixes::of("2001:db8:aa:bb:1:2:3:4".parse().unwrap());
        assert_eq!(v6.wide, "2001:db8:aa::/48");
        assert_eq!(v6.narrow.as_deref(), Some("2001:db8:aa:bb::/64"));
        assert_eq!(
            v6.scoped(),
            vec![
                ("ipv6/48", "2001:db8:aa::/48"),
                ("ipv6/64", "2001:db8:aa:bb::/64")
            ]
        );
        let neighbour = SourcePrefixes::of("2001:db8:aa:cc::1".parse().unwrap());
        assert_eq!(neighbour.wide, v6.wide);
        assert_ne!(neighbour.narrow, v6.narrow);
    }

    #[test]
    fn the_viewer_seed_depends_on_every_input_and_nothing_else() {
        let viewer = crate::KeyPair::from_seed([1; 32]).viewer_key();
        let other = crate::KeyPair::from_seed([2; 32]).viewer_key();
        let seed = Router::viewer_seed(&[9; 32], 7, &viewer, "192.0.2.0/24");
        assert_eq!(
            seed,
            Router::viewer_seed(&[9; 32], 7, &viewer, "192.0.2.0/24")
        );
        for changed in [
            Router::viewer_seed(&[8; 32], 7, &viewer, "192.0.2.0/24"),
            Router::viewer_seed(&[9; 32], 8, &viewer, "192.0.2.0/24"),
            Router::viewer_seed(&[9; 32], 7, &other, "192.0.2.0/24"),
            Router::viewer_seed(&[9; 32], 7, &viewer, "192.0.3.0/24"),
        ] {
            assert_ne!(seed, changed);
        }
    }

    #[test]
    fn announcements_never_raise_capacity_above_measurements() {
        let router = Router::default();
        let liar = NodeMeasurements {
            announced_capacity_kbps: 48_000_000,
            ..NodeMeasurements::default()
        };
        assert_eq!(router.measured_capacity(&liar), router.newcomer_viewers);
        assert_eq!(router.measured_load(&liar), 0);
        // Receipts prove capacity; it grows by the growth factor, up to the announcement.
        let proven = NodeMeasurements {
            announced_capacity_kbps: 100_000,
            proven_sessions: 15,
            live_sessions: 12,
            ..NodeMeasurements::default()
        };
        assert_eq!(router.measured_capacity(&proven), 30);
        assert_eq!(
            router.measured_capacity(&NodeMeasurements {
                announced_capacity_kbps: 50_000,
                ..proven
            }),
            20,
            "never above the announcement"
        );
        // A slow probe caps it: 1 MB/s carries three 2.5 Mbit/s viewers.
        assert_eq!(
            router.measured_capacity(&NodeMeasurements {
                probed_bytes_per_s: Some(1_000_000),
                ..proven
            }),
            3
        );
        // Announced viewers count as load only when above what was measured.
        assert_eq!(
            router.measured_load(&NodeMeasurements {
                announced_viewers: 3,
                pending_grants: 2,
                ..proven
            }),
            14
        );
        assert_eq!(
            router.measured_load(&NodeMeasurements {
                announced_viewers: 40,
                ..proven
            }),
            40
        );
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
