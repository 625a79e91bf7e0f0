//! How many relays an origin feeds per stream: at most the relay tree's fan-out k, which the
//! origin learns from its coordinator ([`streamr_client::wire::CoordinatorInfo::relay_fanout`]).
//!
//! The coordinator names the origin only to the relays it places below it (at most k), but a
//! relay may still come with a relay token alone (its static `--upstream` while the
//! coordinator is unreachable, or a relay that does not follow its assignment). The origin
//! so counts the relays playing each stream over RTMP and refuses a relay beyond k, so its
//! egress never exceeds k copies per stream, whatever the relays do, re-parenting included.
//! A relay reconnecting (a failover, a new session) does not count against itself.
//!
//! Sans-IO: fed admissions and the plays' start and end, with the time passed in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use streamr_core::NodeId;

/// The origin's fan-out until the coordinator names its own (the coordinator's default).
pub(crate) const DEFAULT_ORIGIN_RELAYS: usize = 4;

/// A relay admitted whose play never started (the connection dropped in between) frees its
/// slot after this long.
const UNSTARTED_EXPIRY: Duration = Duration::from_secs(10);

/// One relay's play at the origin.
#[derive(Debug, Clone, Copy)]
struct RelayPlay {
    node: NodeId,
    peer: SocketAddr,
    started: bool,
    admitted_at: Instant,
}

/// A relay refused for want of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this origin feeds {relays} relays on this stream already, its most: pull from the relay the coordinator names")]
pub(crate) struct SlotsFull {
    /// The relays it feeds (its fan-out).
    pub(crate) relays: usize,
}

/// The relays playing each stream at the origin, and how many may.
#[derive(Debug)]
pub(crate) struct OriginSlots {
    cap: std::sync::atomic::AtomicUsize,
    plays: Mutex<HashMap<String, Vec<RelayPlay>>>,
}

impl Default for OriginSlots {
    fn default() -> Self {
        OriginSlots {
            cap: std::sync::atomic::AtomicUsize::new(DEFAULT_ORIGIN_RELAYS),
            plays: Mutex::default(),
        }
    }
}

impl OriginSlots {
    fn plays(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<RelayPlay>>> {
        self.plays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most relays per stream (at least 1).
    pub(crate) fn cap(&self) -> usize {
        self.cap.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the most relays per stream (the coordinator's fan-out; at least 1).
    pub(crate) fn set_cap(&self, relays: usize) {
        self.cap
            .store(relays.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Admits `node`'s play of `stream` from `peer` when fewer than the cap of other relays
    /// play it (or were admitted and have not started yet), and counts it.
    pub(crate) fn take(
        &self,
        stream: &str,
        node: NodeId,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(), SlotsFull> {
        let cap = self.cap();
        let mut plays = self.plays();
        let entries = plays.entry(stream.to_owned()).or_default();
        entries.retain(|p| p.started || now.duration_since(p.admitted_at) < UNSTARTED_EXPIRY);
        let mut others: Vec<NodeId> = entries
            .iter()
            .map(|p| p.node)
            .filter(|n| *n != node)
            .collect();
        others.sort_unstable_by_key(|n| *n.as_bytes());
        others.dedup();
        if others.len() >= cap {
            return Err(SlotsFull { relays: cap });
        }
        entries.retain(|p| p.peer != peer);
        entries.push(RelayPlay {
            node,
            peer,
            started: false,
            admitted_at: now,
        });
        Ok(())
    }

    /// The play of `stream` from `peer` started.
    pub(crate) fn started(&self, stream: &str, peer: SocketAddr) {
        if let Some(entries) = self.plays().get_mut(stream) {
            for play in entries.iter_mut().filter(|p| p.peer == peer) {
                play.started = true;
            }
        }
    }

    /// The play of `stream` from `peer` ended: its slot is free.
    pub(crate) fn ended(&self, stream: &str, peer: SocketAddr) {
        let mut plays = self.plays();
        if let Some(entries) = plays.get_mut(stream) {
            entries.retain(|p| p.peer != peer);
            if entries.is_empty() {
                plays.remove(stream);
            }
        }
    }

    /// The distinct relays playing `stream` (or admitted to) now.
    pub(crate) fn relays(&self, stream: &str) -> usize {
        let plays = self.plays();
        let mut nodes: Vec<[u8; 32]> = plays
            .get(stream)
            .map(|entries| entries.iter().map(|p| *p.node.as_bytes()).collect())
            .unwrap_or_default();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use streamr_core::KeyPair;

    use super::*;

    fn relay(seed: u8) -> NodeId {
        KeyPair::from_seed([seed; 32]).node_id()
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_origin_feeds_at_most_k_relays_per_stream_and_a_reconnecting_relay_keeps_its_slot() {
        let slots = OriginSlots::default();
        slots.set_cap(2);
        let now = Instant::now();
        slots.take("show", relay(1), peer(1), now).expect("first");
        slots.started("show", peer(1));
        slots.take("show", relay(2), peer(2), now).expect("second");
        // A third relay is refused on this stream, not on another.
        assert_eq!(
            slots.take("show", relay(3), peer(3), now),
            Err(SlotsFull { relays: 2 })
        );
        slots
            .take("other", relay(3), peer(3), now)
            .expect("another stream");
        // Relay 1 fails over to the origin again before its old play ended: not against itself.
        slots
            .take("show", relay(1), peer(4), now)
            .expect("reconnect");
        assert_eq!(slots.relays("show"), 2);
        // Relay 2 never started its play: its slot frees after the expiry.
        let later = now + UNSTARTED_EXPIRY;
        slots.started("show", peer(4));
        slots.ended("show", peer(1));
        slots
            .take("show", relay(3), peer(3), later)
            .expect("relay 2's slot");
        assert_eq!(
            slots.take("show", relay(2), peer(5), later),
            Err(SlotsFull { relays: 2 })
        );
        // An ended play frees its slot.
        slots.ended("show", peer(3));
        slots
            .take("show", relay(2), peer(5), later)
            .expect("relay 3's slot");
        assert_eq!(slots.relays("show"), 2);
    }
}
