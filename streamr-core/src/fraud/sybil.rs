//! Rules that make viewer keys cost something: credit from a key without history is discounted
//! until the key has been credited on nodes in several prefixes, and all keys of one source
//! prefix together are capped. Both only drop viewers' bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::{scale, Book, CapGroup, Credit, EpochContext};
use super::RuleId;
use crate::identity::{NodeId, ViewerKey};
use crate::ids::NetPrefix;
use crate::rewards::PPM;

/// Node prefixes a key's history remembers, per prefix it must reach.
const REMEMBERED_PREFIXES_PER_NEEDED: usize = 4;

/// What the engine remembers of a viewer key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeyHistory {
    /// The last epoch the key was credited in.
    pub last_seen: u64,
    /// Node prefixes it was credited on: (first epoch, sessions).
    pub prefixes: BTreeMap<NetPrefix, (u64, u64)>,
}

impl KeyHistory {
    /// Distinct node prefixes credited before `epoch`, counted only while no one prefix holds
    /// more than half of the key's sessions: a key that keeps to a few nodes chose them, and
    /// history it chose does not season it.
    pub fn spread_before(&self, epoch: u64) -> u64 {
        let (total, most) = self.prefixes.values().fold((0u64, 0u64), |(t, m), (_, n)| {
            (t.saturating_add(*n), m.max(*n))
        });
        if most.saturating_mul(2) > total {
            return 0;
        }
        self.prefixes.values().filter(|(e, _)| *e < epoch).count() as u64
    }
}

/// The weight of a key's credit, ppm: `new_key_weight_ppm` with no history, rising linearly to
/// full weight at `needed` distinct prefixes credited in earlier epochs.
pub(super) fn key_weight_ppm(ctx: &EpochContext<'_>, have: u64, needed: u64) -> u64 {
    if needed == 0 {
        return PPM;
    }
    let floor = ctx.config.new_key_weight_ppm.min(PPM);
    floor + scale(PPM - floor, have.min(needed), needed)
}

/// NewViewerKey: each session's credit is weighted by its key's [`key_weight_ppm`]. The history
/// asked of a key is `seasoned_key_prefixes`, or less where the typical node's typical credited
/// byte comes from a key with less (per node the byte-weighted median, then the median over
/// nodes): a young network, where every key is new, is not discounted as a whole, while a farm
/// of fresh keys in an established one is, however many bytes it fakes, unless it runs half of
/// the serving nodes.
pub(super) fn new_viewer_key(
    ctx: &EpochContext<'_>,
    keys: &BTreeMap<ViewerKey, KeyHistory>,
    credits: &mut [Credit<'_>],
    book: &mut Book,
) {
    let epoch = ctx.obs.epoch;
    let have_of = |viewer: &ViewerKey| keys.get(viewer).map_or(0, |h| h.spread_before(epoch));
    let mut per_node: BTreeMap<NodeId, Vec<(u64, u64)>> = BTreeMap::new();
    for cr in credits.iter() {
        per_node
            .entry(cr.session.node_id)
            .or_default()
            .push((have_of(&cr.session.viewer), cr.bytes));
    }
    let mut node_typical: Vec<u64> = per_node
        .into_values()
        .map(|mut samples| byte_weighted_median(&mut samples))
        .collect();
    node_typical.sort_unstable();
    let typical = node_typical
        .get(node_typical.len() / 2)
        .copied()
        .unwrap_or(0);
    let needed = ctx.config.seasoned_key_prefixes.min(typical);
    for cr in credits.iter_mut() {
        let weight = key_weight_ppm(ctx, have_of(&cr.session.viewer), needed);
        let keep = scale(cr.bytes, weight, PPM);
        let drop = cr.bytes - keep.min(cr.bytes);
        cr.bytes -= drop;
        book.drop_part(
            RuleId::NewViewerKey,
            cr.session.node_id,
            cr.session.viewer,
            drop,
        );
    }
}

/// The value below which half of the bytes lie, of `(value, bytes)` samples.
fn byte_weighted_median(samples: &mut [(u64, u64)]) -> u64 {
    samples.sort_unstable();
    let total = samples.iter().fold(0u64, |t, (_, b)| t.saturating_add(*b));
    let mut running = 0u64;
    samples
        .iter()
        .find(|(_, bytes)| {
            running = running.saturating_add(*bytes);
            running >= total / 2
        })
        .map_or(0, |(value, _)| *value)
}

/// ViewerPrefixCap: the credit of all keys in one source prefix is capped at
/// `prefix_cap_streams` streams at the measured bitrate, for the whole epoch and for the spans
/// before it that its sessions' first receipts in the epoch cover (see [`CapGroup`]); the
/// excess is dropped from each of the prefix's sessions in proportion. Keys are free, prefixes
/// are not.
pub(super) fn viewer_prefix_cap(
    ctx: &EpochContext<'_>,
    credits: &mut [Credit<'_>],
    book: &mut Book,
) {
    let prefix_of = |viewer: &ViewerKey| ctx.viewers.get(viewer).map(|v| v.subnet);
    let mut groups: BTreeMap<NetPrefix, CapGroup> = BTreeMap::new();
    for cr in credits.iter() {
        let Some(prefix) = prefix_of(&cr.session.viewer) else {
            continue;
        };
        groups.entry(prefix).or_default().add(ctx, cr);
    }
    for cr in credits.iter_mut() {
        let Some(prefix) = prefix_of(&cr.session.viewer) else {
            continue;
        };
        let group = groups.get(&prefix).copied().unwrap_or_default();
        let (total, cap) = (group.bytes, group.cap(ctx, ctx.config.prefix_cap_streams));
        if total <= cap {
            continue;
        }
        let drop = scale(cr.bytes, total - cap, total).min(cr.bytes);
        cr.bytes -= drop;
        book.drop_part(
            RuleId::ViewerPrefixCap,
            cr.session.node_id,
            cr.session.viewer,
            drop,
        );
    }
}

/// Records the node prefixes this epoch's credited sessions went to, and forgets keys unseen
/// for `key_history_epochs`.
pub(super) fn remember(
    ctx: &EpochContext<'_>,
    keys: &mut BTreeMap<ViewerKey, KeyHistory>,
    credits: &[Credit<'_>],
) {
    let epoch = ctx.obs.epoch;
    let limit = usize::try_from(ctx.config.seasoned_key_prefixes)
        .unwrap_or(usize::MAX)
        .saturating_mul(REMEMBERED_PREFIXES_PER_NEEDED);
    for cr in credits {
        let Some(node) = ctx.profiles.get(&cr.session.node_id) else {
            continue;
        };
        let h = keys.entry(cr.session.viewer).or_default();
        h.last_seen = epoch;
        if let Some((_, sessions)) = h.prefixes.get_mut(&node.subnet) {
            *sessions = sessions.saturating_add(1);
        } else if h.prefixes.len() < limit {
            h.prefixes.insert(node.subnet, (epoch, 1));
        }
    }
    let oldest = epoch.saturating_sub(ctx.config.key_history_epochs);
    keys.retain(|_, h| h.last_seen >= oldest);
}
