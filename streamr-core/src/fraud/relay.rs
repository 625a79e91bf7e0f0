//! Relaying for other friends. A relay (the child) pulls a stream from its parent with a grant
//! the coordinator issued along with the tree assignment, naming the child's node key as the
//! viewer, and signs cumulative receipts for the segments its parent delivered, checked against
//! the origin's chain like any viewer's. Such a session is a *relay edge*: its viewer key is a
//! registered node's key (the coordinator grants a node key only for an edge it assigned).
//!
//! A relay edge is not judged like a viewer: its key is a node's, accountable as a node, so the
//! viewer-key rules (bots, collusion, new keys, per-viewer and per-prefix caps) do not apply.
//! Instead:
//!
//! - `OverBitrate` as for any session: an inflated edge earns nothing;
//! - `SelfDealing`: parent and child in one /24 earn nothing for the edge (an operator could
//!   otherwise pay itself for feeding its own nodes); the parent is not tainted by it, the
//!   coordinator placed the child. The free-text operator name is not compared: unrelated nodes
//!   share the default one, and a pair of one operator in different networks gains at most what
//!   the bound below allows;
//! - `RelayBeyondSubtree`: the edges into a child, on one stream, are credited at most what the
//!   child's subtree verifiably delivered on that stream in the epoch (credit left on its own
//!   viewer sessions, its probes, and the credit of its own edges to its children, recursively),
//!   and at most one stream at the measured bitrate for the whole epoch and the uncredited span
//!   before it that the edge's receipts cover after a coordinator outage (with the
//!   over-bitrate headroom). A child without viewers (a receipt mill) earns its parent nothing;
//!   however a pair colludes, the parent earns at most what real viewers below verifiably got.

use std::collections::{BTreeMap, BTreeSet};

use super::context::{
    bytes_at, inputs, scale, scale_ppm, uncredited_span_ms, Book, Credit, EpochContext,
};
use super::{sessions, RuleId, Verdict};
use crate::identity::{NodeId, ViewerKey};
use crate::ids::StreamId;
use crate::verifier::SessionUsage;

/// Longest chain of relay edges followed below a child; deeper subtrees (never built by the
/// coordinator, which stops at 64) count as delivering nothing.
const MAX_DEPTH: usize = 64;

/// The child node of a relay edge: the node whose key is the session's viewer key.
pub(super) fn relay_child(ctx: &EpochContext<'_>, viewer: &ViewerKey) -> Option<NodeId> {
    let node = NodeId::from_bytes(*viewer.as_bytes());
    ctx.profiles.contains_key(&node).then_some(node)
}

/// SelfDealing for a relay edge: parent and child share a /24 (or IPv6 /48).
fn same_network(ctx: &EpochContext<'_>, parent: &NodeId, child: &NodeId) -> bool {
    match (ctx.profiles.get(parent), ctx.profiles.get(child)) {
        (Some(parent), Some(child)) => parent.subnet == child.subnet,
        _ => false,
    }
}

type Place = (NodeId, StreamId);

/// The relay edges of the epoch and what is known of their credit.
struct Edges<'a, 'c, 'e> {
    ctx: &'c EpochContext<'e>,
    /// Credit left after the per-session rules, one per relay session.
    credits: Vec<Credit<'a>>,
    /// Per (child, stream): indices of the edges into it.
    into: BTreeMap<Place, Vec<usize>>,
    /// Per (parent, stream): the distinct children it feeds.
    children: BTreeMap<Place, BTreeSet<NodeId>>,
    /// Per (node, stream): bytes its own viewers and probes verified (credit left).
    served: BTreeMap<Place, u64>,
    /// Children whose edges are already bounded: the credit they pass up.
    resolved: BTreeMap<Place, u64>,
    /// Children being resolved (a cycle delivers nothing).
    visiting: BTreeSet<Place>,
    /// (parent, child key, bytes) dropped by the bound.
    dropped: Vec<(NodeId, ViewerKey, u64)>,
}

impl Edges<'_, '_, '_> {
    /// What the subtree below `place` verifiably delivered.
    fn delivered(&mut self, place: &Place, depth: usize) -> u64 {
        let mut total = self.served.get(place).copied().unwrap_or(0);
        let children: Vec<NodeId> = self
            .children
            .get(place)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default();
        for child in children {
            let child_place = (child, place.1.clone());
            self.bound(&child_place, depth.saturating_add(1));
            let from_me: u64 = self
                .into
                .get(&child_place)
                .map(|edges| {
                    edges
                        .iter()
                        .filter_map(|&i| self.credits.get(i))
                        .filter(|cr| cr.session.node_id == place.0)
                        .fold(0u64, |sum, cr| sum.saturating_add(cr.bytes))
                })
                .unwrap_or(0);
            total = total.saturating_add(from_me);
        }
        total
    }

    /// Bounds the edges into `child`; drops the excess from their parents' credit.
    fn bound(&mut self, child: &Place, depth: usize) {
        if self.resolved.contains_key(child) || !self.visiting.insert(child.clone()) {
            return;
        }
        let delivered = if depth >= MAX_DEPTH {
            0
        } else {
            self.delivered(child, depth)
        };
        let bitrate = self.ctx.bitrate(&child.1);
        let edges = self.into.get(child).cloned().unwrap_or_default();
        // A child that could not verify segments through a coordinator outage signed nothing;
        // its first receipt after covers the span since its previous one, none of which an
        // earlier epoch credited.
        let span_ms = edges
            .iter()
            .filter_map(|&i| self.credits.get(i))
            .map(|cr| uncredited_span_ms(self.ctx, cr.session))
            .max()
            .unwrap_or(0);
        let one_stream = scale_ppm(
            bytes_at(bitrate, self.ctx.obs.epoch_ms.saturating_add(span_ms)),
            self.ctx.config.bitrate_headroom_ppm,
        );
        let allowed = delivered.min(one_stream);
        let total = edges
            .iter()
            .filter_map(|&i| self.credits.get(i))
            .fold(0u64, |sum, cr| sum.saturating_add(cr.bytes));
        let mut kept = 0u64;
        for &i in &edges {
            let Some(cr) = self.credits.get_mut(i) else {
                continue;
            };
            if total > allowed {
                let keep = scale(cr.bytes, allowed, total).min(cr.bytes);
                self.dropped
                    .push((cr.session.node_id, cr.session.viewer, cr.bytes - keep));
                cr.bytes = keep;
            }
            kept = kept.saturating_add(cr.bytes);
        }
        self.visiting.remove(child);
        self.resolved.insert(child.clone(), kept);
    }
}

/// Credits the epoch's relay edges: the per-session rules, then `RelayBeyondSubtree` against
/// `viewer_credits` (the viewer sessions' credit after their own rules) and `probe_sessions`.
/// Adds the edges' verified bytes to their parents' totals; returns the credit left per edge.
pub(super) fn credit_edges<'a>(
    ctx: &EpochContext<'_>,
    relay_sessions: &[&'a SessionUsage],
    viewer_credits: &[Credit<'_>],
    probe_sessions: &[&SessionUsage],
    book: &mut Book,
) -> Vec<Credit<'a>> {
    let mut served: BTreeMap<Place, u64> = BTreeMap::new();
    for cr in viewer_credits {
        let e = served
            .entry((cr.session.node_id, cr.session.stream_id.clone()))
            .or_default();
        *e = e.saturating_add(cr.bytes);
    }
    for s in probe_sessions {
        let e = served.entry((s.node_id, s.stream_id.clone())).or_default();
        *e = e.saturating_add(s.bytes);
    }
    let mut credits = Vec::with_capacity(relay_sessions.len());
    let mut into: BTreeMap<Place, Vec<usize>> = BTreeMap::new();
    let mut children: BTreeMap<Place, BTreeSet<NodeId>> = BTreeMap::new();
    for s in relay_sessions {
        book.book(ctx, s);
        let Some(child) = relay_child(ctx, &s.viewer) else {
            continue;
        };
        let verdict = sessions::over_bitrate(ctx, s).or_else(|| {
            same_network(ctx, &s.node_id, &child).then(|| {
                (
                    RuleId::SelfDealing,
                    inputs([("relay_edge", 1), ("same_subnet", 1)]),
                )
            })
        });
        if let Some((rule, inputs)) = verdict {
            let a = book.acc(s.node_id);
            a.flagged = a.flagged.saturating_add(s.bytes);
            book.fire(
                rule,
                s.node_id,
                inputs,
                Verdict::DropBytes { bytes: s.bytes },
            );
            continue;
        }
        into.entry((child, s.stream_id.clone()))
            .or_default()
            .push(credits.len());
        children
            .entry((s.node_id, s.stream_id.clone()))
            .or_default()
            .insert(child);
        credits.push(Credit {
            session: s,
            bytes: s.bytes,
        });
    }
    let mut edges = Edges {
        ctx,
        credits,
        into,
        children,
        served,
        resolved: BTreeMap::new(),
        visiting: BTreeSet::new(),
        dropped: Vec::new(),
    };
    let places: Vec<Place> = edges.into.keys().cloned().collect();
    for place in &places {
        edges.bound(place, 0);
    }
    for (node, viewer, bytes) in std::mem::take(&mut edges.dropped) {
        book.drop_part(RuleId::RelayBeyondSubtree, node, viewer, bytes);
    }
    edges.credits
}
