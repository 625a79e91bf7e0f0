//! The probe judge: when a segment a probe downloaded from a node is judged against the
//! origin's reports, and what becomes of a probe whose segments cannot be judged yet. Sans-IO:
//! the coordinator's prober feeds it playlists, segment hashes, the origin's reports and the
//! time, and the simulator runs the same code (`streamr-sim --probe-scenarios`).
//!
//! A node can only serve what the origin cut before the probe downloaded it, and the origin
//! delivers its reports in order (from its on-disk journal after a coordinator outage). So once
//! the coordinator holds a report of a segment the origin cut *after* the download, every
//! segment the node served is either among the reports or not the origin's
//! ([`OriginReports::reported_past`]). Until then a segment matching no report is *not yet
//! known*: the origin's report of the newest one may be in flight, or its backlog still arriving.
//! Such a probe is held ([`HeldProbe`]) and settled on a later round, or dropped without a
//! verdict when the origin reports nothing past it for [`HOLD_LIMIT_MS`] (what the coordinator
//! never heard of is no evidence against a node). The bound is the prober's own clock at the
//! download, never a time or place the node claims.
//!
//! The newest listed segment is judged once the node lists what follows it ([`Place`]): where
//! the origin stopped, a relay's open segment is cut short and never reported, and the relay
//! marks it with `EXT-X-DISCONTINUITY` (or `EXT-X-ENDLIST`) once the stream goes on; only such a
//! segment is spared. Sparing it is bounded: segments on either side of a discontinuity are
//! never picked ([`probe_candidates`]), so a probe that passes has verified at least one segment
//! the origin reported and spared at most its newest one. An origin that names its run in each
//! report says where its stream broke off (a report of another run than the one before it), and
//! then a segment cut short is spared only where the origin's stream broke off around the probe
//! ([`OriginReports::spares_cut_short`]): a node claiming a discontinuity after a forged segment
//! anywhere else fails.
//!
//! ```
//! use streamr_core::probe_judge::{place_in, HeldProbe, OriginReports, Place, Settle};
//! use streamr_core::segment_hash;
//!
//! let playlist = "#EXTM3U\n#EXTINF:4.0,\n1.ts\n#EXTINF:4.0,\n2.ts\n#EXTINF:4.0,\n3.ts\n";
//! let (two, three) = (segment_hash(b"two"), segment_hash(b"three"));
//! let mut reports = OriginReports::default();
//! reports.insert(two, 96_000);
//! // Probed at 100 s: the origin's report of "three" is not in yet; the probe is held.
//! let mut probe = HeldProbe::new(100_000, 100_000, [(two, Place::Closed), (three, Place::Open)]);
//! assert_eq!(probe.settle(&reports, 100_000), Settle::Hold);
//! // It arrives, and a segment cut after the probe with it: passed.
//! reports.insert(three, 100_000);
//! reports.insert(segment_hash(b"four"), 104_000);
//! assert_eq!(probe.settle(&reports, 104_500), Settle::Pass);
//! assert_eq!(place_in(playlist, "3.ts"), Some(Place::Open));
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::ContentDigest;

/// How far ahead of the coordinator's clock the origin's may run before a report it stamped
/// after a probe could be one it cut before it (the probe then waits that much longer).
pub const REPORT_CLOCK_SLACK_MS: u64 = 2_000;
/// How long a probe whose segments are not known yet is held for the origin's reports to move
/// past it; then it is dropped without a verdict ([`DropReason::Silent`]).
pub const HOLD_LIMIT_MS: u64 = 120_000;
/// How far past a probe the origin's reports may move while the newest probed segment, matching
/// none of them, is still the last one the node lists; then it is judged (see [`judge`]). An
/// honest relay lists what follows a segment cut short within two target durations of the
/// origin going on (it may leave the new run's first segment out).
pub const OPEN_END_LIMIT_MS: u64 = 30_000;

/// How many of a playlist's `EXT-X-GAP` segments spare the segment after them from probes
/// (see [`probe_candidates`]).
pub const GAPS_SPARING_THE_NEXT: usize = 1;

/// Where a probed segment stands in the node's playlist, as far as the prober has seen (see
/// [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Place {
    /// Another segment follows it with no `EXT-X-DISCONTINUITY` between: the node cut it
    /// where the origin cuts, so it is judged like any other.
    Closed,
    /// The last segment listed, the stream going on: the node has not said yet whether it was
    /// cut where the origin cuts.
    Open,
    /// Followed by `EXT-X-DISCONTINUITY`: cut short where the stream broke off (an origin
    /// restarted), which the origin never reports. Not judged when it matches no report where
    /// the origin's reports say its stream broke off ([`OriginReports::spares_cut_short`]).
    CutShort,
    /// The last before `EXT-X-ENDLIST`: the node's stream ended there (its upstream gone for
    /// good while the origin may go on), so it may be cut short where the origin never cut. Not
    /// judged when it matches no report; a node ending its playlist ends it for its viewers too.
    Ended,
    /// No longer listed when the prober looked again, before it saw what followed: it cannot
    /// tell a segment cut short (an honest relay whose segment left its window while a slow
    /// probe round went round) from one renamed away. The probe is dropped without a verdict:
    /// it neither fails the node nor counts as passed.
    Gone,
}

/// Where the segment listed as `uri` stands in `playlist` (a media playlist); `None` when it is
/// not listed.
pub fn place_in(playlist: &str, uri: &str) -> Option<Place> {
    let mut lines = playlist.lines().map(str::trim);
    lines.find(|line| *line == uri)?;
    for line in lines {
        if line == "#EXT-X-DISCONTINUITY" {
            return Some(Place::CutShort);
        }
        if line == "#EXT-X-ENDLIST" {
            return Some(Place::Ended);
        }
        if !line.is_empty() && !line.starts_with('#') {
            return Some(Place::Closed);
        }
    }
    Some(Place::Open)
}

/// The segment URIs of a media playlist a probe may pick from, oldest first. The first entry
/// is the oldest listed segment, which the caller never picks: it may leave the node's window
/// before it is fetched, and on a node that joined mid-stream it is the partial first segment,
/// which no origin segment equals. Segments on either side of an `EXT-X-DISCONTINUITY` (cut
/// where a publisher left or started: partial on a relay, never reported by the origin) are left
/// out. A segment marked `EXT-X-GAP` has no media to load and is never picked; the segment
/// right after the playlist's first gap is left out too (a relay that lost frames across an
/// upstream failover may have lost a keyframe the origin cut at, and resumes cutting at the
/// next one it gets), but only after the first ([`GAPS_SPARING_THE_NEXT`]): a node marking
/// gaps to shield the segments after them from probes shields one, and what it marks it does
/// not serve.
pub fn probe_candidates(playlist: &str) -> Vec<&str> {
    let mut listed: Vec<(&str, bool)> = Vec::new();
    let mut discontinuity = false;
    let mut before_discontinuity = Vec::new();
    let mut gap = false;
    let mut gaps_seen = 0usize;
    // The previous URI was a gap that spares the one after it.
    let mut spare_next = false;
    for line in playlist.lines().map(str::trim) {
        if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
            if let Some(index) = listed.len().checked_sub(1) {
                before_discontinuity.push(index);
            }
        } else if line == "#EXT-X-GAP" {
            gap = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let spared = std::mem::take(&mut spare_next);
            if std::mem::take(&mut gap) {
                gaps_seen += 1;
                spare_next = gaps_seen <= GAPS_SPARING_THE_NEXT;
                listed.push((line, true));
            } else {
                listed.push((line, discontinuity || spared));
            }
            discontinuity = false;
        }
    }
    for index in before_discontinuity {
        if let Some(entry) = listed.get_mut(index) {
            entry.1 = true;
        }
    }
    // The oldest stays first (the caller never picks it); the others next to a discontinuity
    // are left out.
    let mut candidates: Vec<&str> = listed.iter().take(1).map(|(uri, _)| *uri).collect();
    candidates.extend(
        listed
            .iter()
            .skip(1)
            .filter(|(_, near_discontinuity)| !near_discontinuity)
            .map(|(uri, _)| *uri),
    );
    candidates
}

/// One origin report as the judge reads it, with its place on the stream's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedSegment {
    /// The segment's hash ([`crate::segment_hash`]).
    pub hash: ContentDigest,
    /// Its sequence number on the stream's chain.
    pub sequence: u64,
    /// When the origin cut it (the origin's clock, unix ms).
    pub published_ms: u64,
    /// The origin's run it was cut in (see [`crate::OriginSegmentReport::run`]); `None` from an
    /// origin that does not say.
    pub run: Option<u64>,
}

/// What the coordinator holds of one stream's origin reports: the segment hashes, when the
/// newest reported segment was cut (the origin's clock, unix ms) and, for reports that name
/// their place, the origin's runs along the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginReports {
    hashes: HashSet<ContentDigest>,
    newest_ms: Option<u64>,
    /// Sequence number → when it was cut and the run it was cut in.
    chain: BTreeMap<u64, (u64, Option<u64>)>,
}

impl OriginReports {
    /// Adds the report of a segment hashing to `hash`, cut at `published_ms`, with no place on
    /// the chain (nothing said of where the stream broke off).
    pub fn insert(&mut self, hash: ContentDigest, published_ms: u64) {
        self.hashes.insert(hash);
        self.newest_ms = Some(self.newest_ms.map_or(published_ms, |n| n.max(published_ms)));
    }

    /// Adds `report`, with its place on the chain and its run.
    pub fn insert_report(&mut self, report: ReportedSegment) {
        self.insert(report.hash, report.published_ms);
        self.chain
            .insert(report.sequence, (report.published_ms, report.run));
    }

    /// Whether a segment cut short ([`Place::CutShort`]) that a probe finished downloading at
    /// `probed_ms` is spared. A relay's open segment is cut short where the origin's stream broke
    /// off, and it is the relay's newest from the origin's last cut before the break until the
    /// relay lists the next run's first segments. So with runs reported, it is spared only when
    /// the probe lies in such a window: two reports next on the chain of different runs, the
    /// earlier cut at most [`REPORT_CLOCK_SLACK_MS`] after the probe and the later cut at most
    /// [`OPEN_END_LIMIT_MS`] (and the slack) before it. Reports that say nothing of runs (an
    /// older origin, or the run the probe fell in was cut by one) spare it, as before runs were
    /// reported.
    pub fn spares_cut_short(&self, probed_ms: u64) -> bool {
        let latest_cut = probed_ms.saturating_add(REPORT_CLOCK_SLACK_MS);
        let in_effect = self
            .chain
            .values()
            .rev()
            .find(|(cut, _)| *cut <= latest_cut);
        let runs_reported = match in_effect {
            Some((_, run)) => run.is_some(),
            None => self.chain.values().any(|(_, run)| run.is_some()),
        };
        if !runs_reported {
            return true;
        }
        let earliest_first_cut = probed_ms
            .saturating_sub(OPEN_END_LIMIT_MS)
            .saturating_sub(REPORT_CLOCK_SLACK_MS);
        let mut reports = self.chain.values();
        let Some(mut before) = reports.next() else {
            return true;
        };
        for after in reports {
            let broke_off = before.1 != after.1;
            if broke_off && before.0 <= latest_cut && after.0 >= earliest_first_cut {
                return true;
            }
            before = after;
        }
        false
    }

    /// Whether a report carries `hash`.
    pub fn contains(&self, hash: &ContentDigest) -> bool {
        self.hashes.contains(hash)
    }

    /// When the newest reported segment was cut; `None` with no report.
    pub fn newest_published_ms(&self) -> Option<u64> {
        self.newest_ms
    }

    /// Whether the reports have moved past a probe made at `probed_ms` (the coordinator's
    /// clock): the newest reported segment was cut after it, allowing [`REPORT_CLOCK_SLACK_MS`]
    /// for the origin's clock. Reports arrive in order, so every segment the origin cut before
    /// the probe has been reported by then.
    pub fn reported_past(&self, probed_ms: u64) -> bool {
        self.newest_ms
            .is_some_and(|newest| newest >= probed_ms.saturating_add(REPORT_CLOCK_SLACK_MS))
    }
}

impl FromIterator<ReportedSegment> for OriginReports {
    fn from_iter<I: IntoIterator<Item = ReportedSegment>>(reports: I) -> Self {
        let mut out = Self::default();
        for report in reports {
            out.insert_report(report);
        }
        out
    }
}

impl FromIterator<(ContentDigest, u64)> for OriginReports {
    fn from_iter<I: IntoIterator<Item = (ContentDigest, u64)>>(reports: I) -> Self {
        let mut out = Self::default();
        for (hash, published_ms) in reports {
            out.insert(hash, published_ms);
        }
        out
    }
}

/// What the origin's reports say of one probed segment (see [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentVerdict {
    /// The origin reported these bytes.
    Matched,
    /// No report matches yet, and the origin's reports have not moved past the probe: its
    /// report may still arrive. Neither passed nor failed.
    NotYetKnown,
    /// No report matches, the origin's reports moved past the probe, and the segment is still
    /// the open end of the node's playlist: whether it was cut short is known once the node
    /// lists what follows it (the prober looks again). Neither passed nor failed.
    Open,
    /// No report matches, and the origin has reported a segment it cut after the probe: not
    /// the origin's.
    Mismatch,
    /// A segment cut short where the stream broke off ([`Place::CutShort`]), matching no report
    /// once the reports moved past the probe, where the origin's stream broke off around the
    /// probe ([`OriginReports::spares_cut_short`]), or the last before the node's stream ended
    /// ([`Place::Ended`]): never reported by the origin. Not judged.
    Skipped,
    /// A segment that left the node's playlist before the prober saw what followed it
    /// ([`Place::Gone`]), matching no report once the reports moved past the probe: the whole
    /// probe is dropped without a verdict.
    Unjudgeable,
}

/// The verdict on a segment hashing to `hash` that a probe finished downloading at
/// `probed_ms`, standing at `place` in the node's playlist, given the origin's reports:
/// matched when one carries that hash, else not yet known until the reports moved past the
/// probe ([`OriginReports::reported_past`]), else a mismatch. Only the probe's own time bounds
/// the wait, never anything the node claims.
///
/// The exceptions are at the end of the node's playlist. Where the origin stopped (it was
/// killed and restarted, a relay's stream ended) a relay's open segment is cut short and never
/// reported, and the relay marks that with `EXT-X-DISCONTINUITY` only once the stream goes on;
/// the origin's reports cannot tell it apart (a restarted origin may cut again within one
/// segment's time). So an unmatched segment that was the last listed is judged only once the
/// node has listed what follows it: a mismatch when a segment follows plainly, left unjudged
/// ([`SegmentVerdict::Skipped`]) when it was cut short ([`Place::CutShort`]) where the origin's
/// reports say its stream broke off ([`OriginReports::spares_cut_short`]; a mismatch where
/// they say it went on) or the node's stream ended after it ([`Place::Ended`]), and the probe
/// dropped without a verdict ([`SegmentVerdict::Unjudgeable`]) when the segment left the
/// playlist before the prober saw what followed it ([`Place::Gone`]). One still listed last
/// ([`SegmentVerdict::Open`]) is a mismatch once the origin has reported a segment cut
/// [`OPEN_END_LIMIT_MS`] after the probe: by then an honest node has listed what follows it,
/// so a node whose playlist stays put cannot hold a forged newest segment unjudged.
pub fn judge(
    hash: &ContentDigest,
    place: Place,
    probed_ms: u64,
    reports: &OriginReports,
) -> SegmentVerdict {
    if reports.contains(hash) {
        return SegmentVerdict::Matched;
    }
    if !reports.reported_past(probed_ms) {
        return SegmentVerdict::NotYetKnown;
    }
    match place {
        Place::Closed => SegmentVerdict::Mismatch,
        Place::CutShort if reports.spares_cut_short(probed_ms) => SegmentVerdict::Skipped,
        Place::CutShort => SegmentVerdict::Mismatch,
        Place::Ended => SegmentVerdict::Skipped,
        Place::Gone => SegmentVerdict::Unjudgeable,
        Place::Open if reports.reported_past(probed_ms.saturating_add(OPEN_END_LIMIT_MS)) => {
            SegmentVerdict::Mismatch
        }
        Place::Open => SegmentVerdict::Open,
    }
}

/// One probed segment a [`HeldProbe`] still waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSegment {
    /// Its hash ([`crate::segment_hash`] of the bytes the node served).
    pub hash: ContentDigest,
    /// Where it stood in the node's playlist when last looked at.
    pub place: Place,
}

/// Why a held probe was dropped without a verdict (it neither fails the node nor counts as
/// passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum DropReason {
    /// Its newest segment left the node's playlist before the prober saw what followed it
    /// ([`Place::Gone`]).
    Gone,
    /// The origin reported nothing past the probe for [`HOLD_LIMIT_MS`].
    Silent,
    /// None of its segments matched a report: each was spared as cut short
    /// ([`Place::CutShort`]). A probe verifies at least one segment of the origin's to pass, so
    /// a node claiming a discontinuity after every forged segment it is probed on gains no pass.
    NothingVerified,
}

/// Where a probe stands after [`HeldProbe::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Settle {
    /// Every probed segment was reported (or spared as cut short): the probe passed its
    /// content check.
    Pass,
    /// A probed segment is not the origin's: the probe failed its content check.
    Fail,
    /// Still waiting on the origin's reports or on the node's playlist: no result yet, and the
    /// node is not probed again meanwhile.
    Hold,
    /// Dropped without a verdict.
    Dropped(DropReason),
}

/// A probe's content check, from its download until its verdict: the segments not matched yet,
/// when it was downloaded and since when it is held. Serializable, so a coordinator can keep
/// it in storage and any replica can finish it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldProbe {
    /// When the probe finished downloading (unix ms, the coordinator's clock): what bounds the
    /// wait for the origin's reports.
    pub probed_ms: u64,
    /// When the probe was first held (unix ms, the coordinator's clock).
    pub held_ms: u64,
    /// The segments not matched yet, each with where it stands in the node's playlist.
    pub segments: Vec<HeldSegment>,
    /// How many of its segments matched a report so far.
    #[serde(default)]
    pub matched: u32,
}

impl HeldProbe {
    /// A probe of `segments` (hash and place, oldest first) downloaded at `probed_ms`, looked at
    /// first at `held_ms`.
    pub fn new(
        probed_ms: u64,
        held_ms: u64,
        segments: impl IntoIterator<Item = (ContentDigest, Place)>,
    ) -> Self {
        Self {
            probed_ms,
            held_ms,
            segments: segments
                .into_iter()
                .map(|(hash, place)| HeldSegment { hash, place })
                .collect(),
            matched: 0,
        }
    }

    /// Whether a segment waits at the open end of the node's playlist: the prober should fetch
    /// the playlist again (as a player polls it) and tell [`HeldProbe::relisted`] where that
    /// segment stands now.
    pub fn wants_playlist(&self) -> bool {
        self.segments.iter().any(|s| s.place == Place::Open)
    }

    /// Records where the segment at the playlist's open end stands in the playlist fetched
    /// again: `None` when it is no longer listed ([`Place::Gone`]).
    pub fn relisted(&mut self, place: Option<Place>) {
        let place = place.unwrap_or(Place::Gone);
        for open in self.segments.iter_mut().filter(|s| s.place == Place::Open) {
            open.place = place;
        }
    }

    /// Judges the segments still waiting against `reports` at `now_ms` (the coordinator's
    /// clock) and drops those settled: [`Settle::Fail`] when one is a mismatch (that wins over
    /// everything else), [`Settle::Dropped`] with [`DropReason::Gone`] when one left the playlist
    /// unjudgeably, [`Settle::Pass`] when none is left and at least one matched a report
    /// ([`DropReason::NothingVerified`] when every one was spared as cut short),
    /// [`Settle::Dropped`] with [`DropReason::Silent`] once held for [`HOLD_LIMIT_MS`], else
    /// [`Settle::Hold`].
    pub fn settle(&mut self, reports: &OriginReports, now_ms: u64) -> Settle {
        let mut failed = false;
        let mut gone = false;
        let probed_ms = self.probed_ms;
        let mut matched = 0u32;
        self.segments
            .retain(|s| match judge(&s.hash, s.place, probed_ms, reports) {
                SegmentVerdict::Matched => {
                    matched = matched.saturating_add(1);
                    false
                }
                SegmentVerdict::Skipped => false,
                SegmentVerdict::Unjudgeable => {
                    gone = true;
                    false
                }
                SegmentVerdict::Mismatch => {
                    failed = true;
                    false
                }
                SegmentVerdict::NotYetKnown | SegmentVerdict::Open => true,
            });
        self.matched = self.matched.saturating_add(matched);
        if failed {
            Settle::Fail
        } else if gone {
            Settle::Dropped(DropReason::Gone)
        } else if self.segments.is_empty() && self.matched == 0 {
            Settle::Dropped(DropReason::NothingVerified)
        } else if self.segments.is_empty() {
            Settle::Pass
        } else if now_ms.saturating_sub(self.held_ms) >= HOLD_LIMIT_MS {
            Settle::Dropped(DropReason::Silent)
        } else {
            Settle::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Place::{Closed, CutShort, Ended, Gone, Open};
    use super::*;
    use crate::segment_hash;
    use proptest::prelude::*;

    fn h(name: &str) -> ContentDigest {
        segment_hash(name.as_bytes())
    }

    #[test]
    fn a_segment_is_judged_only_once_the_origin_reported_past_the_probe() {
        // A backlog: the origin's reports so far stop 12 s before the probe; it cut a segment
        // every 2 s meanwhile, the relay serves the newest ones ("h8", "h9").
        let probed = 100_000;
        let cut = |i: u64| 80_000 + i * 2_000;
        let mut reports: OriginReports = (0..5).map(|i| (h(&format!("h{i}")), cut(i))).collect();
        let forged = h("forged");
        assert_eq!(
            judge(&h("h3"), Closed, probed, &reports),
            SegmentVerdict::Matched
        );
        assert_eq!(
            judge(&h("h9"), Open, probed, &reports),
            SegmentVerdict::NotYetKnown
        );
        // The backlog arrives, up to a segment cut as the probe ended (within the clock slack):
        // still not known what else the relay may serve.
        for i in 5..9 {
            reports.insert(h(&format!("h{i}")), cut(i));
        }
        assert_eq!(
            judge(&h("h8"), Closed, probed, &reports),
            SegmentVerdict::Matched
        );
        assert_eq!(
            judge(&h("h9"), Open, probed, &reports),
            SegmentVerdict::NotYetKnown
        );
        reports.insert(h("h9"), cut(9));
        reports.insert(h("h10"), cut(10));
        assert_eq!(
            judge(&h("h9"), Open, probed, &reports),
            SegmentVerdict::Matched
        );
        assert_eq!(
            judge(&forged, Open, probed, &reports),
            SegmentVerdict::NotYetKnown
        );
        // The origin reported a segment it cut after the probe: a segment no report carries is a
        // mismatch; at the playlist's open end it waits for what the node lists next, and one
        // cut short where the stream broke off is left unjudged.
        assert!(cut(11) >= probed + REPORT_CLOCK_SLACK_MS);
        reports.insert(h("h11"), cut(11));
        assert_eq!(
            judge(&forged, Closed, probed, &reports),
            SegmentVerdict::Mismatch
        );
        assert_eq!(judge(&forged, Open, probed, &reports), SegmentVerdict::Open);
        assert_eq!(
            judge(&forged, CutShort, probed, &reports),
            SegmentVerdict::Skipped
        );
        assert_eq!(
            judge(&forged, Gone, probed, &reports),
            SegmentVerdict::Unjudgeable
        );
        // A playlist that never goes on: judged once the origin went on long enough.
        let stuck = probed + OPEN_END_LIMIT_MS + REPORT_CLOCK_SLACK_MS;
        reports.insert(h("h12"), stuck - 1);
        assert_eq!(judge(&forged, Open, probed, &reports), SegmentVerdict::Open);
        reports.insert(h("h13"), stuck);
        assert_eq!(
            judge(&forged, Open, probed, &reports),
            SegmentVerdict::Mismatch
        );
        assert_eq!(
            judge(&forged, CutShort, probed, &reports),
            SegmentVerdict::Skipped
        );
        // No reports at all: nothing can be judged.
        let none = OriginReports::default();
        assert_eq!(
            judge(&forged, Open, probed, &none),
            SegmentVerdict::NotYetKnown
        );
        assert_eq!(
            judge(&forged, Closed, probed, &none),
            SegmentVerdict::NotYetKnown
        );
    }

    #[test]
    fn a_cut_short_segment_is_spared_only_where_the_origin_broke_off() {
        // Run 1 cut segments 0..=9 every 4 s from 4 s; the origin was killed, and run 2 cut
        // segment 10 at 60 s and went on.
        let cut = |i: u64| {
            if i < 10 {
                4_000 + i * 4_000
            } else {
                60_000 + (i - 10) * 4_000
            }
        };
        let report = |i: u64, run: Option<u64>| ReportedSegment {
            hash: h(&format!("s{i}")),
            sequence: i,
            published_ms: cut(i),
            run,
        };
        let run = |i: u64| Some(if i < 10 { 1 } else { 2 });
        let reports: OriginReports = (0..30).map(|i| report(i, run(i))).collect();
        let forged = h("forged");
        // Probed between run 1's last cut (40 s) and run 2's first cut (60 s) and a little
        // after it (the relay lists run 2's first segments): spared.
        for probed in [38_500, 41_000, 52_000, 60_500, 60_000 + OPEN_END_LIMIT_MS] {
            assert!(reports.spares_cut_short(probed), "{probed}");
            assert_eq!(
                judge(&forged, CutShort, probed, &reports),
                SegmentVerdict::Skipped
            );
        }
        // Anywhere else the stream went on: a segment claimed cut short is a mismatch.
        for probed in [20_000, 34_000, 96_000, 130_000] {
            assert!(!reports.spares_cut_short(probed), "{probed}");
            assert_eq!(
                judge(&forged, CutShort, probed, &reports),
                SegmentVerdict::Mismatch
            );
        }
        // An older origin's reports (no run) spare it as before, and so do reports placed on
        // the chain without a run.
        let legacy: OriginReports = (0..30).map(|i| (h(&format!("s{i}")), cut(i))).collect();
        assert_eq!(
            judge(&forged, CutShort, 96_000, &legacy),
            SegmentVerdict::Skipped
        );
        let unnamed: OriginReports = (0..30).map(|i| report(i, None)).collect();
        assert!(unnamed.spares_cut_short(96_000));
        // An origin upgraded in place: its old reports name no run, the new ones do. The
        // restart to upgrade is a break; the old origin's stretch is judged as before, the new
        // one's by its runs.
        let upgraded: OriginReports = (0..30).map(|i| report(i, (i >= 10).then_some(2))).collect();
        assert!(upgraded.spares_cut_short(20_000));
        assert!(upgraded.spares_cut_short(52_000));
        assert!(!upgraded.spares_cut_short(130_000));
    }

    #[test]
    fn where_a_segment_stands_in_a_playlist() {
        let open = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nshow/1.ts\n\
                    #EXTINF:0.12,\nshow/2.ts\n";
        assert_eq!(place_in(open, "show/2.ts"), Some(Open));
        assert_eq!(place_in(open, "show/1.ts"), Some(Closed));
        assert_eq!(place_in(open, "show/9.ts"), None);
        let restarted = format!("{open}#EXT-X-DISCONTINUITY\n#EXTINF:4.0,\nshow/3.ts\n");
        assert_eq!(place_in(&restarted, "show/2.ts"), Some(CutShort));
        assert_eq!(place_in(&restarted, "show/3.ts"), Some(Open));
        let went_on = format!(
            "{open}#EXT-X-PROGRAM-DATE-TIME:2026-12-05T23:00:00.000Z\n\
                               #EXTINF:4.0,\nshow/3.ts\n"
        );
        assert_eq!(place_in(&went_on, "show/2.ts"), Some(Closed));
        let ended = format!("{open}#EXT-X-ENDLIST\n");
        assert_eq!(place_in(&ended, "show/2.ts"), Some(Ended));
    }

    #[test]
    fn segments_next_to_a_discontinuity_are_never_probed() {
        let playlist = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:4.0,\n3.ts\n#EXTINF:4.0,\n4.ts\n\
                        #EXTINF:1.2,\n5.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.0,\n6.ts\n\
                        #EXTINF:4.0,\n7.ts\n#EXTINF:4.0,\n8.ts\n";
        assert_eq!(
            probe_candidates(playlist),
            vec!["3.ts", "4.ts", "7.ts", "8.ts"]
        );
        let plain = "#EXTM3U\n#EXTINF:4.0,\na.ts\n#EXTINF:4.0,\nb.ts\n";
        assert_eq!(probe_candidates(plain), vec!["a.ts", "b.ts"]);
    }

    #[test]
    fn a_gap_is_never_probed_and_spares_the_next_segment_once() {
        let segment = |n: u32| format!("#EXTINF:2.0,\n{n}.ts\n");
        let gap = |n: u32| format!("#EXT-X-GAP\n{}", segment(n));
        let header = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n";
        // A relay's failover lost frames in segment 5: neither it nor 6 is probed.
        let relay = format!(
            "{header}{}{}{}{}{}{}",
            segment(3),
            segment(4),
            gap(5),
            segment(6),
            segment(7),
            segment(8)
        );
        assert_eq!(
            probe_candidates(&relay),
            vec!["3.ts", "4.ts", "7.ts", "8.ts"]
        );
        // A node marking every other segment a gap to shield the ones between: only the
        // first gap spares anything, and what it marks it does not serve.
        let shielding = format!(
            "{header}{}{}{}{}{}{}{}",
            segment(3),
            gap(4),
            segment(5),
            gap(6),
            segment(7),
            gap(8),
            segment(9)
        );
        assert_eq!(probe_candidates(&shielding), vec!["3.ts", "7.ts", "9.ts"]);
        // Nothing but gaps: nothing to probe, so the node is never probed (no availability).
        let nothing = format!("{header}{}{}{}", segment(3), gap(4), gap(5));
        assert_eq!(probe_candidates(&nothing), vec!["3.ts"]);
        // A segment before a gap was cut before it: judged as any other.
        assert_eq!(place_in(&relay, "4.ts"), Some(Closed));
    }

    #[test]
    fn a_held_probe_passes_fails_or_is_dropped() {
        let probed = 100_000;
        let mut reports: OriginReports = [(h("a"), 96_000)].into_iter().collect();
        // Passed once the newest is reported and the reports moved past the probe.
        let mut probe = HeldProbe::new(probed, probed, [(h("a"), Closed), (h("b"), Open)]);
        assert_eq!(probe.settle(&reports, probed), Settle::Hold);
        assert_eq!(probe.segments.len(), 1, "the matched segment is settled");
        reports.insert(h("b"), 100_000);
        assert_eq!(probe.settle(&reports, probed + 1), Settle::Pass);
        // A forged newest segment: held at the open end, failed once followed plainly.
        let mut forged = HeldProbe::new(probed, probed, [(h("a"), Closed), (h("x"), Open)]);
        reports.insert(h("c"), probed + REPORT_CLOCK_SLACK_MS);
        assert_eq!(forged.settle(&reports, probed + 3_000), Settle::Hold);
        assert!(forged.wants_playlist());
        forged.relisted(Some(Closed));
        assert!(!forged.wants_playlist());
        assert_eq!(forged.settle(&reports, probed + 4_000), Settle::Fail);
        // Renamed away: dropped without a verdict.
        let mut renamed = HeldProbe::new(probed, probed, [(h("x"), Open)]);
        renamed.relisted(None);
        assert_eq!(
            renamed.settle(&reports, probed + 4_000),
            Settle::Dropped(DropReason::Gone)
        );
        // Cut short where the stream broke off: spared.
        let mut short = HeldProbe::new(probed, probed, [(h("a"), Closed), (h("x"), Open)]);
        short.relisted(Some(CutShort));
        assert_eq!(short.settle(&reports, probed + 4_000), Settle::Pass);
        // A probe of a single segment, spared as cut short: nothing verified, no pass.
        let mut alone = HeldProbe::new(probed, probed, [(h("x"), Open)]);
        alone.relisted(Some(CutShort));
        assert_eq!(
            alone.settle(&reports, probed + 4_000),
            Settle::Dropped(DropReason::NothingVerified)
        );
        // A mismatch wins over a segment gone.
        let mut both = HeldProbe::new(probed, probed, [(h("y"), Closed), (h("x"), Gone)]);
        assert_eq!(both.settle(&reports, probed + 4_000), Settle::Fail);
        // The origin silent for two minutes: dropped.
        let mut silent = HeldProbe::new(probed + 10_000, probed, [(h("z"), Closed)]);
        assert_eq!(
            silent.settle(&reports, probed + HOLD_LIMIT_MS - 1),
            Settle::Hold
        );
        assert_eq!(
            silent.settle(&reports, probed + HOLD_LIMIT_MS),
            Settle::Dropped(DropReason::Silent)
        );
        // It survives a round trip through storage.
        let stored = serde_json::to_string(&forged).unwrap_or_default();
        let back: HeldProbe = serde_json::from_str(&stored).unwrap_or_else(|_| short.clone());
        assert_eq!(back, forged);
    }

    /// What the fuzz target (`fuzz/fuzz_targets/probe_playlist.rs`) checks of any text.
    fn check_playlist(playlist: &str) {
        for uri in probe_candidates(playlist) {
            assert!(playlist.lines().any(|line| line.trim() == uri), "{uri:?}");
            assert!(place_in(playlist, uri).is_some(), "{uri:?}");
        }
        let _ = place_in(playlist, "");
    }

    #[test]
    fn the_fuzz_seeds_hold() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/probe_playlist");
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.expect("a seed").path()).expect("a seed");
            check_playlist(&String::from_utf8_lossy(&bytes));
            seeds += 1;
        }
        assert!(seeds >= 2);
    }

    fn playlist_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("#EXT-X-DISCONTINUITY".to_owned()),
            Just("#EXT-X-ENDLIST".to_owned()),
            Just("#EXT-X-GAP".to_owned()),
            Just("#EXTINF:4.0,".to_owned()),
            Just(String::new()),
            "[a-c]{1,2}\\.ts",
            " ?[a-c#]{0,3} ?",
        ]
    }

    /// How the newest probed segment's place changes when the prober looks again.
    #[derive(Debug, Clone, Copy)]
    enum Relist {
        /// The node lists the next segment plainly.
        Follows,
        /// The node's stream broke off: a discontinuity follows.
        Breaks,
        /// The segment left the window (slow probe round).
        LeavesWindow,
        /// The playlist stays put.
        Stuck,
    }

    fn relist() -> impl Strategy<Value = Relist> {
        prop_oneof![
            Just(Relist::Follows),
            Just(Relist::Breaks),
            Just(Relist::LeavesWindow),
            Just(Relist::Stuck),
        ]
    }

    /// Runs `probe` through rounds every `round_ms` from when it was held, the origin's report
    /// of segment `i` (hash of `s{i}`, cut at `cuts[i]`) delivered at `delivered[i]`, the
    /// newest probed segment relisted as `relist` at the first round from `relist_at`; returns
    /// the first settle other than [`Settle::Hold`].
    fn run_rounds(
        probe: &mut HeldProbe,
        cuts: &[u64],
        delivered: &[u64],
        round_ms: u64,
        relist_at: u64,
        relist: Relist,
    ) -> Settle {
        let reports: Vec<((ContentDigest, u64), u64)> = cuts
            .iter()
            .zip(delivered)
            .enumerate()
            .map(|(i, (cut, at))| ((h(&format!("s{i}")), *cut), *at))
            .collect();
        run_rounds_with(probe, &reports, round_ms, relist_at, relist)
    }

    /// Origin cut times (the origin's clock) and in-order delivery times (the coordinator's)
    /// of `count` segments `segment_ms` apart from 0, with an outage `[out_from, out_to)` that
    /// queues reports and a backlog delivered `backlog_ms` apart after it.
    fn origin_timeline(
        count: usize,
        segment_ms: u64,
        skew_ms: i64,
        delay_ms: u64,
        outage: (u64, u64),
        backlog_ms: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let mut cuts = Vec::new();
        let mut delivered: Vec<u64> = Vec::new();
        for i in 0..count {
            let true_cut = 10_000 + i as u64 * segment_ms;
            cuts.push(true_cut.saturating_add_signed(skew_ms));
            let mut at = true_cut + delay_ms;
            if at >= outage.0 && at < outage.1 {
                at = outage.1;
            }
            if let Some(last) = delivered.last() {
                at = at.max(last + if at == outage.1 { backlog_ms } else { 0 });
            }
            delivered.push(at);
        }
        (cuts, delivered)
    }

    /// One segment of [`restarting_origin`]'s: its hash, when it was cut (true time), and
    /// whether it was cut short by a kill (never reported) or is the first of a new run.
    #[derive(Debug, Clone, Copy)]
    struct Cut {
        hash: ContentDigest,
        at_ms: u64,
        cut_short: bool,
        first_of_run: bool,
    }

    /// An origin cutting every `segment_ms` from 10 s, killed at each of `kills` (ascending; its
    /// open segment cut short there, never reported) and cutting its next run's first segment
    /// `restart_ms + segment_ms` later; reports delivered in order `delay_ms` after each cut,
    /// stamped by a clock `skew_ms` off, naming their run when `runs_reported`.
    fn restarting_origin(
        segment_ms: u64,
        kills: &[u64],
        restart_ms: u64,
        skew_ms: i64,
        delay_ms: u64,
        runs_reported: bool,
    ) -> (Vec<Cut>, Vec<(ReportedSegment, u64)>) {
        let mut cuts = Vec::new();
        let mut reports: Vec<(ReportedSegment, u64)> = Vec::new();
        let mut kills = kills.iter().copied().peekable();
        let (mut run, mut at, mut first_of_run) = (0u64, 10_000u64, false);
        while at <= 400_000 {
            if let Some(kill) = kills.next_if(|kill| *kill < at) {
                cuts.push(Cut {
                    hash: h(&format!("partial {run}")),
                    at_ms: kill,
                    cut_short: true,
                    first_of_run,
                });
                run += 1;
                at = kill + restart_ms + segment_ms;
                first_of_run = true;
                continue;
            }
            let hash = h(&format!("run {run} cut {at}"));
            cuts.push(Cut {
                hash,
                at_ms: at,
                cut_short: false,
                first_of_run,
            });
            let sequence = reports.len() as u64;
            let delivered = reports
                .last()
                .map_or(0, |(_, last)| *last)
                .max(at + delay_ms);
            let report = ReportedSegment {
                hash,
                sequence,
                published_ms: at.saturating_add_signed(skew_ms),
                run: runs_reported.then_some(run),
            };
            reports.push((report, delivered));
            first_of_run = false;
            at += segment_ms;
        }
        (cuts, reports)
    }

    /// [`run_rounds`] against reports that name their place and run.
    fn run_rounds_placed(
        probe: &mut HeldProbe,
        reports: &[(ReportedSegment, u64)],
        round_ms: u64,
        relist_at: u64,
        relist: Relist,
    ) -> Settle {
        run_rounds_with(probe, reports, round_ms, relist_at, relist)
    }

    /// The rounds of [`run_rounds`] over reports of either kind, each with when it is
    /// delivered.
    fn run_rounds_with<R: Copy>(
        probe: &mut HeldProbe,
        reports: &[(R, u64)],
        round_ms: u64,
        relist_at: u64,
        relist: Relist,
    ) -> Settle
    where
        OriginReports: FromIterator<R>,
    {
        let mut now = probe.held_ms;
        let mut relisted = false;
        loop {
            let delivered: OriginReports = reports
                .iter()
                .filter(|(_, at)| *at <= now)
                .map(|(report, _)| *report)
                .collect();
            if probe.wants_playlist() && now >= relist_at && !relisted {
                relisted = true;
                match relist {
                    Relist::Follows => probe.relisted(Some(Closed)),
                    Relist::Breaks => probe.relisted(Some(CutShort)),
                    Relist::LeavesWindow => probe.relisted(None),
                    Relist::Stuck => probe.relisted(Some(Open)),
                }
            }
            let settled = probe.settle(&delivered, now);
            if settled != Settle::Hold {
                return settled;
            }
            now += round_ms;
        }
    }

    proptest! {
        /// Probe candidates of any playlist are listed URIs, none but the oldest next to a
        /// discontinuity or marked EXT-X-GAP, and each has a place.
        #[test]
        fn candidates_are_listed_and_never_next_to_a_discontinuity(
            lines in proptest::collection::vec(playlist_line(), 0..24),
        ) {
            // Each URI once, so its neighbours are known.
            let is_uri = |line: &str| !line.trim().is_empty() && !line.trim().starts_with('#');
            let lines: Vec<String> = lines
                .into_iter()
                .enumerate()
                .map(|(i, line)| if is_uri(&line) { format!("{i}{}", line.trim()) } else { line })
                .collect();
            let playlist = lines.join("\n");
            check_playlist(&playlist);
            let listed: Vec<&str> =
                lines.iter().map(|l| l.trim()).filter(|l| is_uri(l)).collect();
            let candidates = probe_candidates(&playlist);
            prop_assert_eq!(candidates.first(), listed.first());
            for uri in candidates.iter().skip(1) {
                let at = lines.iter().position(|l| l.trim() == *uri);
                prop_assert!(at.is_some());
                let at = at.unwrap_or_default();
                let before = lines[..at].iter().rev().take_while(|l| !is_uri(l));
                let after = lines[at + 1..].iter().take_while(|l| !is_uri(l));
                for line in before.chain(after) {
                    prop_assert_ne!(line.trim(), "#EXT-X-DISCONTINUITY", "{} in {:?}", uri, lines);
                }
                let marked = lines[..at].iter().rev().take_while(|l| !is_uri(l));
                for line in marked {
                    prop_assert_ne!(line.trim(), "#EXT-X-GAP", "{} in {:?}", uri, lines);
                }
            }
        }

        /// An honest relay serves only segments the origin cut before the probe (its newest
        /// maybe cut short where the origin stopped): whatever the reports' delays, outages,
        /// backlogs, the origin's clock skew (within the slack), the rounds' spacing and what
        /// the relay lists next, it is never failed.
        #[test]
        fn an_honest_relay_is_never_failed(
            segment_ms in 1_000u64..8_000,
            skew_ms in -2_000i64..=2_000,
            delay_ms in 0u64..5_000,
            outage_from in 0u64..200_000,
            outage_len in 0u64..150_000,
            backlog_ms in 1u64..500,
            probe_at in 20_000u64..200_000,
            served in 1usize..=3,
            cut_short in any::<bool>(),
            round_ms in 1_000u64..40_000,
            relist_after in 0u64..16_000,
            relist in relist(),
        ) {
            let count = 400;
            let (cuts, delivered) = origin_timeline(
                count, segment_ms, skew_ms, delay_ms, (outage_from, outage_from + outage_len),
                backlog_ms,
            );
            // The segments the relay holds at the probe: those cut (true time) before it.
            let newest = ((probe_at - 10_000) / segment_ms) as usize;
            let first = newest.saturating_sub(served - 1);
            let mut segments: Vec<(ContentDigest, Place)> =
                (first..=newest).map(|i| (h(&format!("s{i}")), Closed)).collect();
            if let Some(last) = segments.last_mut() {
                last.1 = Open;
                if cut_short {
                    // The origin died with this segment open: it is never reported, and the
                    // relay serves its own partial cut.
                    last.0 = h("partial");
                }
            }
            // After a segment cut short the relay's next listing breaks (it goes on when the
            // restarted origin does).
            let relist = match (cut_short, relist) {
                (true, Relist::Follows | Relist::Stuck) => Relist::Breaks,
                (_, relist) => relist,
            };
            let mut probe = HeldProbe::new(probe_at, probe_at, segments);
            let settled = run_rounds(
                &mut probe, &cuts, &delivered, round_ms, probe_at + relist_after, relist,
            );
            prop_assert_ne!(settled, Settle::Fail);
        }

        /// A relay serving a segment the origin never reported, anywhere in the probe, and not
        /// claiming the stream broke off right after it, is never passed: it fails, or the
        /// probe is dropped without a verdict.
        #[test]
        fn a_forging_relay_is_never_passed(
            segment_ms in 1_000u64..8_000,
            skew_ms in -2_000i64..=2_000,
            delay_ms in 0u64..5_000,
            outage_from in 0u64..200_000,
            outage_len in 0u64..150_000,
            probe_at in 20_000u64..200_000,
            served in 1usize..=3,
            forged_at in 0usize..3,
            round_ms in 1_000u64..40_000,
            relist_after in 0u64..60_000,
            relist in prop_oneof![
                Just(Relist::Follows), Just(Relist::LeavesWindow), Just(Relist::Stuck)
            ],
        ) {
            let (cuts, delivered) = origin_timeline(
                400, segment_ms, skew_ms, delay_ms, (outage_from, outage_from + outage_len), 100,
            );
            let newest = ((probe_at - 10_000) / segment_ms) as usize;
            let first = newest.saturating_sub(served - 1);
            let mut segments: Vec<(ContentDigest, Place)> =
                (first..=newest).map(|i| (h(&format!("s{i}")), Closed)).collect();
            if let Some(last) = segments.last_mut() {
                last.1 = Open;
            }
            let forged = forged_at.min(segments.len() - 1);
            if let Some(segment) = segments.get_mut(forged) {
                segment.0 = h("forged");
            }
            let mut probe = HeldProbe::new(probe_at, probe_at, segments);
            let settled = run_rounds(
                &mut probe, &cuts, &delivered, round_ms, probe_at + relist_after, relist,
            );
            prop_assert_ne!(settled, Settle::Pass);
        }

        /// A relay claiming the stream broke off after a forged newest segment has it spared,
        /// but a probe passes only when it verified another segment of the origin's: never on
        /// forged segments alone.
        #[test]
        fn a_pass_always_verified_a_segment_of_the_origins(
            segment_ms in 1_000u64..8_000,
            delay_ms in 0u64..5_000,
            probe_at in 20_000u64..200_000,
            real in 0usize..=2,
            round_ms in 1_000u64..40_000,
            relist_after in 0u64..60_000,
        ) {
            let (cuts, delivered) = origin_timeline(400, segment_ms, 0, delay_ms, (0, 0), 100);
            let newest = ((probe_at - 10_000) / segment_ms) as usize;
            let mut segments: Vec<(ContentDigest, Place)> = (newest.saturating_sub(real)..newest)
                .map(|i| (h(&format!("s{i}")), Closed))
                .collect();
            segments.push((h("forged"), Open));
            let mut probe = HeldProbe::new(probe_at, probe_at, segments);
            let settled = run_rounds(
                &mut probe, &cuts, &delivered, round_ms, probe_at + relist_after, Relist::Breaks,
            );
            if settled == Settle::Pass {
                prop_assert!(probe.matched >= 1 && real >= 1);
            }
        }

        /// An honest relay across origin restarts (each killing the origin with a segment open,
        /// the relay's copy of it cut short and listed before a discontinuity) is never failed,
        /// whether the origin names its runs or not, whatever the restarts' timing, the reports'
        /// delay, the origin's clock skew (within the slack), the probe's time and size, the
        /// rounds' spacing and what the relay lists next.
        #[test]
        fn an_honest_relay_across_origin_restarts_is_never_failed(
            segment_ms in 1_000u64..8_000,
            skew_ms in -2_000i64..=2_000,
            delay_ms in 0u64..5_000,
            kill_gaps in proptest::collection::vec(2_000u64..60_000, 1..6),
            restart_ms in 200u64..10_000,
            lag_ms in 0u64..2_000,
            probe_at in 15_000u64..300_000,
            served in 1usize..=3,
            round_ms in 1_000u64..40_000,
            relist_after in 0u64..16_000,
            relist in relist(),
            runs_reported in any::<bool>(),
        ) {
            let kills: Vec<u64> = kill_gaps
                .iter()
                .scan(10_000u64, |at, gap| {
                    *at += gap;
                    Some(*at)
                })
                .collect();
            let (cuts, reports) = restarting_origin(
                segment_ms, &kills, restart_ms, skew_ms, delay_ms, runs_reported,
            );
            // What the relay lists at the probe, and which of it a probe may pick: never the
            // first of a run (after a discontinuity), nor a segment cut short once something
            // follows it (before a discontinuity).
            let listed: Vec<&Cut> = cuts.iter().filter(|c| c.at_ms + lag_ms <= probe_at).collect();
            let newest = listed.len().saturating_sub(1);
            let candidates: Vec<(usize, &Cut)> = listed
                .iter()
                .enumerate()
                .filter(|(i, c)| !c.first_of_run && (!c.cut_short || *i == newest))
                .map(|(i, c)| (i, *c))
                .collect();
            let picked = candidates.get(candidates.len().saturating_sub(served)..).unwrap_or_default();
            prop_assume!(!picked.is_empty());
            let mut segments: Vec<(ContentDigest, Place)> =
                picked.iter().map(|(_, c)| (c.hash, Closed)).collect();
            let newest_picked = picked.last().map(|(i, c)| (*i == newest, c.cut_short));
            let relist = match newest_picked {
                Some((true, cut_short)) => {
                    if let Some(last) = segments.last_mut() {
                        last.1 = Open;
                    }
                    // After a segment cut short the relay's next listing breaks.
                    match (cut_short, relist) {
                        (true, Relist::Follows | Relist::Stuck) => Relist::Breaks,
                        (_, relist) => relist,
                    }
                }
                _ => relist,
            };
            let mut probe = HeldProbe::new(probe_at, probe_at, segments);
            let settled = run_rounds_placed(
                &mut probe, &reports, round_ms, probe_at + relist_after, relist,
            );
            prop_assert_ne!(settled, Settle::Fail);
        }

        /// A relay claiming the stream broke off after a forged segment where the origin's
        /// stream went on fails, once the origin names its runs.
        #[test]
        fn a_claimed_break_where_the_origin_went_on_fails(
            segment_ms in 1_000u64..8_000,
            skew_ms in -2_000i64..=2_000,
            delay_ms in 0u64..5_000,
            kill_gap in 2_000u64..60_000,
            restart_ms in 200u64..10_000,
            probe_at in 15_000u64..300_000,
            round_ms in 1_000u64..40_000,
            relist_after in 0u64..16_000,
        ) {
            let kill = 10_000 + kill_gap;
            let (cuts, reports) =
                restarting_origin(segment_ms, &[kill], restart_ms, skew_ms, delay_ms, true);
            // Far from the one restart (its cut short segment and the new run's first ones),
            // beyond the window a break is looked for in: the old run's last cut within
            // REPORT_CLOCK_SLACK_MS after the probe, on an origin clock up to `skew_ms` off.
            let resumed = kill + restart_ms + segment_ms;
            let window = REPORT_CLOCK_SLACK_MS + skew_ms.unsigned_abs();
            prop_assume!(
                probe_at + 3 * segment_ms + window < kill || probe_at > resumed + 40_000
            );
            let real = cuts
                .iter()
                .rev()
                .find(|c| c.at_ms <= probe_at && !c.cut_short && !c.first_of_run);
            prop_assume!(real.is_some());
            let real = real.map_or_else(ContentDigest::default, |c| c.hash);
            let mut probe =
                HeldProbe::new(probe_at, probe_at, [(real, Closed), (h("forged"), Open)]);
            let settled = run_rounds_placed(
                &mut probe, &reports, round_ms, probe_at + relist_after, Relist::Breaks,
            );
            prop_assert!(
                settled == Settle::Fail,
                "{:?}", settled
            );
        }
    }
}
