//! The LL-HLS media playlist: segments with their partial segments, rendered as M3U8 (full or
//! delta), and the lookups blocking playlist reload needs.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::ll_packager::{InitSegment, LlEvent, Part};

/// EXT-X-VERSION of LL-HLS playlists (EXT-X-SKIP needs 9).
pub const LL_HLS_VERSION: u32 = 9;
/// PART-HOLD-BACK in part targets: Apple's minimum of three.
pub const PART_HOLD_BACK_PARTS: u64 = 3;
/// CAN-SKIP-UNTIL in target durations: the spec's minimum of six.
pub const SKIP_UNTIL_TARGET_DURATIONS: u64 = 6;
/// Parts are listed for the segments within this many target durations of the live edge.
pub const PART_LISTING_TARGET_DURATIONS: u64 = 3;

/// Settings of an LL-HLS playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlPlaylistConfig {
    /// EXT-X-TARGETDURATION in seconds (from the MPEG-TS segmenter, set before the first
    /// segment is listed).
    pub target_duration_secs: u32,
    /// EXT-X-PART-INF PART-TARGET in milliseconds.
    pub part_target_ms: u32,
    /// Complete segments listed at least (the window also covers at least
    /// [`SKIP_UNTIL_TARGET_DURATIONS`] + 2 target durations, so delta playlists skip something).
    pub window_segments: usize,
    /// Prefix of segment, part and init URIs (for example `stream/`).
    pub uri_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartEntry {
    duration_ms: u64,
    independent: bool,
    offset: usize,
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentEntry {
    sequence: u64,
    /// `None` while the segment is open.
    duration_ms: Option<u64>,
    discontinuity: bool,
    init: String,
    /// Stream timestamp (ms) of its first frame.
    start_ms: u64,
    program_date_time: Option<SystemTime>,
    parts: Vec<PartEntry>,
    /// The parts so far (open) or the whole segment (complete).
    bytes: Bytes,
    /// The parts of an open segment, each its own buffer.
    open_parts: Vec<Bytes>,
    /// Its parts broke the part rules ([`LlEvent::PartsWithdrawn`]): none is listed; those
    /// cut are still served by name.
    parts_withdrawn: bool,
    /// Listed with EXT-X-GAP and no parts ([`LlPlaylist::mark_gap`]); nothing of it is served.
    gap: bool,
}

impl SegmentEntry {
    fn parts_duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }

    fn duration_or_parts_ms(&self) -> u64 {
        self.duration_ms.unwrap_or_else(|| self.parts_duration_ms())
    }
}

/// An LL-HLS media playlist fed with [`LlEvent`]s.
#[derive(Debug, Clone)]
pub struct LlPlaylist {
    config: LlPlaylistConfig,
    segments: VecDeque<SegmentEntry>,
    inits: Vec<InitSegment>,
    discontinuity_sequence: u64,
    ended: bool,
    clock_anchor: Option<SystemTime>,
    /// The stream timestamp published at `clock_anchor`, until the next segment is stamped from
    /// it (see [`LlPlaylist::set_program_date_time_at`]).
    anchor_timestamp_ms: Option<u64>,
    elapsed_ms: u64,
    /// Where the segment completed last ends on the stream's clock (its first frame's
    /// timestamp plus its duration).
    previous_end_ms: Option<u64>,
    started: bool,
}

/// Whether a blocking playlist request can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockingState {
    /// The playlist contains the requested segment or part.
    Ready,
    /// Not yet; the request waits.
    Wait,
    /// Too far ahead of the live edge (more than two segments, or three parts): 400.
    TooFar,
}

impl LlPlaylist {
    /// An empty playlist.
    pub fn new(config: LlPlaylistConfig) -> Self {
        LlPlaylist {
            config,
            segments: VecDeque::new(),
            inits: Vec::new(),
            discontinuity_sequence: 0,
            ended: false,
            clock_anchor: None,
            anchor_timestamp_ms: None,
            elapsed_ms: 0,
            previous_end_ms: None,
            started: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlPlaylistConfig {
        &self.config
    }

    /// Sets EXT-X-TARGETDURATION; ignored once a segment is listed (it must stay constant).
    pub fn set_target_duration(&mut self, secs: u32) {
        if !self.started {
            self.config.target_duration_secs = secs.max(1);
        }
    }

    /// Sets EXT-X-PART-INF PART-TARGET (and PART-HOLD-BACK from it); ignored once a segment is
    /// listed (it must stay constant).
    pub fn set_part_target(&mut self, ms: u32) {
        if !self.started {
            self.config.part_target_ms = ms.max(1);
        }
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from `now` on (for the next segment). When
    /// the first segment is still open and unstamped, `now` is its start.
    pub fn set_program_date_time(&mut self, now: SystemTime) {
        self.clock_anchor = Some(now);
        self.elapsed_ms = 0;
        if !self.started && self.segments.len() == 1 {
            if let Some(first) = self
                .segments
                .back_mut()
                .filter(|e| e.duration_ms.is_none() && e.program_date_time.is_none())
            {
                first.program_date_time = Some(now);
            }
        }
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from the stream's clock: the frame with
    /// stream timestamp `timestamp_ms` was published at `now`. The next segment (or the first,
    /// still open and unstamped) is stamped from its own first frame's timestamp, so segments
    /// cut but not listed before it (a relay's first) shift nothing; later ones follow by the
    /// durations of the segments before them.
    pub fn set_program_date_time_at(&mut self, now: SystemTime, timestamp_ms: u64) {
        self.clock_anchor = Some(now);
        self.anchor_timestamp_ms = Some(timestamp_ms);
        self.elapsed_ms = 0;
        if !self.started && self.segments.len() == 1 {
            if let Some(first) = self
                .segments
                .back_mut()
                .filter(|e| e.duration_ms.is_none() && e.program_date_time.is_none())
            {
                let time = clock_at(now, timestamp_ms, first.start_ms);
                first.program_date_time = Some(time);
                self.clock_anchor = Some(time);
                self.anchor_timestamp_ms = None;
            }
        }
    }

    /// Applies one packager event.
    ///
    /// A segment's EXT-X-PROGRAM-DATE-TIME follows the one before by that segment's duration;
    /// a segment after a discontinuity that starts later on the stream's clock than the one
    /// before ended (the timeline jumped forward, or media was left out) follows it by that much
    /// more, as the stream's clock says (see [`LivePlaylist::push`](super::LivePlaylist::push)).
    pub fn apply(&mut self, event: &LlEvent) {
        match event {
            LlEvent::SegmentStarted {
                sequence,
                discontinuity,
                init,
                start_ms,
            } => {
                if !self.inits.iter().any(|i| i.name == init.name) {
                    self.inits.push(init.clone());
                }
                // After a discontinuity, a segment that starts later on the stream's clock than
                // the one before ended (the timeline jumped forward, or media was left out) is
                // stamped that much later, as the MPEG-TS playlist does.
                if let Some(end) = self.previous_end_ms.filter(|_| *discontinuity) {
                    let skipped = start_ms.saturating_sub(end);
                    self.elapsed_ms = self.elapsed_ms.saturating_add(skipped);
                }
                if let (Some(anchor), Some(at)) =
                    (self.clock_anchor, self.anchor_timestamp_ms.take())
                {
                    self.clock_anchor = Some(clock_at(anchor, at, *start_ms));
                    self.elapsed_ms = 0;
                }
                let program_date_time = self
                    .clock_anchor
                    .map(|anchor| anchor + Duration::from_millis(self.elapsed_ms));
                self.segments.push_back(SegmentEntry {
                    sequence: *sequence,
                    duration_ms: None,
                    discontinuity: *discontinuity,
                    init: init.name.clone(),
                    start_ms: *start_ms,
                    program_date_time,
                    parts: Vec::new(),
                    bytes: Bytes::new(),
                    open_parts: Vec::new(),
                    parts_withdrawn: false,
                    gap: false,
                });
            }
            LlEvent::PartReady(part) => self.add_part(part),
            LlEvent::PartsWithdrawn { sequence } => {
                if let Some(entry) = self
                    .segments
                    .back_mut()
                    .filter(|e| e.sequence == *sequence && e.duration_ms.is_none())
                {
                    entry.parts_withdrawn = true;
                }
            }
            LlEvent::SegmentReady(segment) => {
                if let Some(entry) = self
                    .segments
                    .back_mut()
                    .filter(|e| e.sequence == segment.sequence && e.duration_ms.is_none())
                {
                    entry.duration_ms = Some(segment.duration_ms);
                    if !entry.gap {
                        entry.bytes = segment.bytes.clone();
                    }
                    entry.open_parts.clear();
                    self.elapsed_ms = self.elapsed_ms.saturating_add(segment.duration_ms);
                    self.previous_end_ms = Some(
                        segment
                            .start_timestamp_ms
                            .saturating_add(segment.duration_ms),
                    );
                    self.started = true;
                }
                self.trim();
            }
        }
    }

    fn add_part(&mut self, part: &Part) {
        let Some(entry) = self
            .segments
            .back_mut()
            .filter(|e| e.sequence == part.sequence && e.duration_ms.is_none())
        else {
            return;
        };
        let offset = entry.open_parts.iter().map(Bytes::len).sum();
        entry.parts.push(PartEntry {
            duration_ms: part.duration_ms,
            independent: part.independent,
            offset,
            len: part.bytes.len(),
        });
        if !entry.gap {
            entry.open_parts.push(part.bytes.clone());
        }
    }

    /// Lists segment `sequence` (open or complete) with EXT-X-GAP (RFC 8216bis 4.4.4.7): it
    /// keeps its place, number and EXTINF once complete, lists no part, and neither it nor any
    /// of its parts is served (a relay's segment across an upstream gap, whose bytes are not
    /// the origin's). A blocking request for one of its parts waits for it to complete, and the
    /// preload hint names the next segment's first part. False when the segment is not kept.
    pub fn mark_gap(&mut self, sequence: u64) -> bool {
        let Some(entry) = self.segments.iter_mut().find(|e| e.sequence == sequence) else {
            return false;
        };
        entry.gap = true;
        entry.parts_withdrawn = true;
        entry.bytes = Bytes::new();
        entry.open_parts.clear();
        true
    }

    /// The stream ended: EXT-X-ENDLIST, no preload hint.
    pub fn end(&mut self) {
        self.ended = true;
        // A segment left open by the packager has no EXTINF: drop it.
        if self
            .segments
            .back()
            .is_some_and(|e| e.duration_ms.is_none())
        {
            self.segments.pop_back();
        }
    }

    /// True once [`LlPlaylist::end`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True when at least one segment is complete.
    pub fn has_segments(&self) -> bool {
        self.segments.iter().any(|e| e.duration_ms.is_some())
    }

    /// The media sequence number of the oldest segment listed (or still kept), if any.
    pub fn oldest_sequence(&self) -> Option<u64> {
        self.segments.front().map(|e| e.sequence)
    }

    /// The bytes of complete segment `sequence`.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        self.segments
            .iter()
            .find(|e| e.sequence == sequence && e.duration_ms.is_some() && !e.gap)
            .map(|e| e.bytes.clone())
    }

    /// The bytes of part `index` of segment `sequence` (complete or open).
    pub fn part(&self, sequence: u64, index: u32) -> Option<Bytes> {
        let entry = self
            .segments
            .iter()
            .find(|e| e.sequence == sequence && !e.gap)?;
        let index = usize::try_from(index).ok()?;
        if entry.duration_ms.is_none() {
            return entry.open_parts.get(index).cloned();
        }
        let part = entry.parts.get(index)?;
        entry
            .bytes
            .get(part.offset..part.offset + part.len)
            .map(|_| entry.bytes.slice(part.offset..part.offset + part.len))
    }

    /// The init segment named `name`.
    pub fn init(&self, name: &str) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.bytes.clone())
    }

    /// The newest init segment.
    pub fn current_init(&self) -> Option<&InitSegment> {
        self.inits.last()
    }

    /// Whether a request blocking for part `part` of segment `msn` (or the whole segment when
    /// `part` is `None`) can be answered now. A part index past the last part of a complete
    /// segment asks for the first part of the next segment.
    pub fn blocking_state(&self, msn: u64, part: Option<u32>) -> BlockingState {
        let last_complete = self
            .segments
            .iter()
            .rev()
            .find(|e| e.duration_ms.is_some())
            .map(|e| e.sequence);
        let open = self.segments.back().filter(|e| e.duration_ms.is_none());
        if self.ended {
            return BlockingState::Ready;
        }
        // Where the live edge is: the next segment to complete.
        let edge = open
            .map(|e| e.sequence)
            .or(last_complete.map(|s| s + 1))
            .unwrap_or(0);
        if msn > edge.saturating_add(1) {
            return BlockingState::TooFar;
        }
        let Some(part) = part else {
            return if last_complete.is_some_and(|last| last >= msn) {
                BlockingState::Ready
            } else {
                BlockingState::Wait
            };
        };
        if let Some(entry) = self.segments.iter().find(|e| e.sequence == msn) {
            if entry.parts_withdrawn && entry.duration_ms.is_none() {
                // No part of it is listed: the request is answered when it is complete.
                return BlockingState::Wait;
            }
            let have = entry.parts.len();
            let index = usize::try_from(part).unwrap_or(usize::MAX);
            if index < have {
                return BlockingState::Ready;
            }
            if entry.duration_ms.is_some() {
                return self.blocking_state(msn.saturating_add(1), Some(0));
            }
            return if index > have + 2 {
                BlockingState::TooFar
            } else {
                BlockingState::Wait
            };
        }
        if last_complete.is_some_and(|last| last > msn) {
            return BlockingState::Ready;
        }
        BlockingState::Wait
    }

    /// Complete segments kept in the window.
    fn listed_count(&self) -> usize {
        let complete: Vec<&SegmentEntry> = self
            .segments
            .iter()
            .filter(|e| e.duration_ms.is_some())
            .collect();
        let min_ms = u64::from(self.config.target_duration_secs)
            .saturating_mul((SKIP_UNTIL_TARGET_DURATIONS + 2) * 1_000);
        let mut count = 0;
        let mut total = 0u64;
        for entry in complete.iter().rev() {
            if count >= self.config.window_segments.max(1) && total >= min_ms {
                break;
            }
            count += 1;
            total = total.saturating_add(entry.duration_or_parts_ms());
        }
        count
    }

    fn trim(&mut self) {
        let complete = self
            .segments
            .iter()
            .filter(|e| e.duration_ms.is_some())
            .count();
        let mut drop = complete.saturating_sub(self.listed_count());
        while drop > 0 {
            match self.segments.pop_front() {
                Some(old) => {
                    if old.discontinuity {
                        self.discontinuity_sequence += 1;
                    }
                }
                None => break,
            }
            drop -= 1;
        }
        let used: Vec<String> = self.segments.iter().map(|e| e.init.clone()).collect();
        let newest = self.inits.last().map(|i| i.name.clone());
        self.inits
            .retain(|i| used.contains(&i.name) || Some(&i.name) == newest.as_ref());
    }

    /// The PART-HOLD-BACK in milliseconds.
    pub fn part_hold_back_ms(&self) -> u64 {
        u64::from(self.config.part_target_ms).saturating_mul(PART_HOLD_BACK_PARTS)
    }

    /// The CAN-SKIP-UNTIL in seconds.
    pub fn skip_until_secs(&self) -> u64 {
        u64::from(self.config.target_duration_secs).saturating_mul(SKIP_UNTIL_TARGET_DURATIONS)
    }

    /// Renders the playlist; with `delta`, segments older than CAN-SKIP-UNTIL from the end are
    /// replaced by one EXT-X-SKIP (a delta update for `_HLS_skip=YES`).
    pub fn render(&self, delta: bool) -> String {
        let mut out = String::with_capacity(2048);
        let target = self.config.target_duration_secs.max(1);
        let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{LL_HLS_VERSION}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={}",
            self.skip_until_secs() as f64,
            secs(self.part_hold_back_ms())
        );
        let _ = writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={}",
            secs(u64::from(self.config.part_target_ms))
        );
        let first = self.segments.front().map_or(0, |e| e.sequence);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        );
        // Durations from each segment's start to the end of the playlist.
        let mut from_end = Vec::with_capacity(self.segments.len());
        let mut total = 0u64;
        for entry in self.segments.iter().rev() {
            total = total.saturating_add(entry.duration_or_parts_ms());
            from_end.push(total);
        }
        from_end.reverse();
        let skip_ms = self.skip_until_secs().saturating_mul(1_000);
        let skipped = if delta {
            // Skip a segment only if everything after it still spans the skip boundary.
            (0..self.segments.len())
                .take_while(|&i| {
                    from_end.get(i + 1).is_some_and(|rest| *rest >= skip_ms)
                        && self
                            .segments
                            .get(i)
                            .is_some_and(|e| e.duration_ms.is_some())
                })
                .count()
        } else {
            0
        };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let parts_ms = u64::from(target) * PART_LISTING_TARGET_DURATIONS * 1_000;
        let prefix = &self.config.uri_prefix;
        let mut previous_init: Option<&str> = None;
        for (i, entry) in self.segments.iter().enumerate().skip(skipped) {
            if entry.parts_withdrawn && entry.duration_ms.is_none() {
                // Nothing of it is listed until it is complete.
                continue;
            }
            if entry.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if previous_init != Some(entry.init.as_str()) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}{}\"", entry.init);
                previous_init = Some(entry.init.as_str());
            }
            if let Some(time) = entry.program_date_time {
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(time)
                );
            }
            let recent = !entry.parts_withdrawn
                && (from_end.get(i).is_some_and(|ms| *ms <= parts_ms)
                    || entry.duration_ms.is_none());
            if recent {
                for (index, part) in entry.parts.iter().enumerate() {
                    let _ = write!(
                        out,
                        "#EXT-X-PART:DURATION={},URI=\"{prefix}{}.{index}.m4s\"",
                        secs(part.duration_ms),
                        entry.sequence
                    );
                    if part.independent {
                        out.push_str(",INDEPENDENT=YES");
                    }
                    out.push('\n');
                }
            }
            if let Some(duration) = entry.duration_ms {
                if entry.gap {
                    out.push_str("#EXT-X-GAP\n");
                }
                let _ = writeln!(
                    out,
                    "#EXTINF:{},\n{prefix}{}.m4s",
                    secs(duration),
                    entry.sequence
                );
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if let Some((sequence, index)) = self.next_part() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{prefix}{sequence}.{index}.m4s\""
            );
        }
        out
    }

    /// The part that comes next: the open segment's next index, or the first part of the
    /// segment after the last complete one (or after the open one when its parts were
    /// withdrawn).
    pub fn next_part(&self) -> Option<(u64, u32)> {
        let last = self.segments.back()?;
        Some(match last.duration_ms {
            None if last.parts_withdrawn => (last.sequence + 1, 0),
            None => (
                last.sequence,
                u32::try_from(last.parts.len()).unwrap_or(u32::MAX),
            ),
            Some(_) => (last.sequence + 1, 0),
        })
    }
}

/// Milliseconds as decimal seconds with three digits (`0.350`).
/// The wall-clock time of stream timestamp `timestamp_ms` when `anchor_ms` was published at
/// `anchor`.
pub(crate) fn clock_at(anchor: SystemTime, anchor_ms: u64, timestamp_ms: u64) -> SystemTime {
    if timestamp_ms >= anchor_ms {
        anchor + Duration::from_millis(timestamp_ms - anchor_ms)
    } else {
        anchor
            .checked_sub(Duration::from_millis(anchor_ms - timestamp_ms))
            .unwrap_or(anchor)
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1_000, ms % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::LlSegment;

    fn init() -> InitSegment {
        InitSegment {
            name: "init-0.mp4".to_owned(),
            codecs: "avc1.64001f".to_owned(),
            hash: blake3::hash(b"init"),
            bytes: Bytes::from_static(b"init"),
        }
    }

    fn start(playlist: &mut LlPlaylist, sequence: u64) {
        playlist.apply(&LlEvent::SegmentStarted {
            sequence,
            discontinuity: false,
            init: init(),
            start_ms: sequence * 1_000,
        });
    }

    fn part(playlist: &mut LlPlaylist, sequence: u64, index: u32) {
        playlist.apply(&LlEvent::PartReady(Part {
            sequence,
            index,
            duration_ms: 500,
            independent: index == 0,
            hash: blake3::hash(b"part"),
            bytes: Bytes::from_static(b"part"),
        }));
    }

    fn complete(playlist: &mut LlPlaylist, sequence: u64) {
        playlist.apply(&LlEvent::SegmentReady(LlSegment {
            sequence,
            start_timestamp_ms: sequence * 1_000,
            duration_ms: 1_000,
            discontinuity: false,
            init: init(),
            part_hashes: vec![blake3::hash(b"part"); 2],
            hash: blake3::hash(b"partpart"),
            bytes: Bytes::from_static(b"partpart"),
        }));
    }

    #[test]
    fn a_gap_segment_lists_no_part_is_not_served_and_keeps_its_number() {
        let mut playlist = LlPlaylist::new(LlPlaylistConfig {
            target_duration_secs: 1,
            part_target_ms: 500,
            window_segments: 6,
            uri_prefix: String::new(),
        });
        start(&mut playlist, 4);
        part(&mut playlist, 4, 0);
        part(&mut playlist, 4, 1);
        complete(&mut playlist, 4);
        start(&mut playlist, 5);
        part(&mut playlist, 5, 0);
        assert!(playlist.mark_gap(5));
        assert!(!playlist.mark_gap(9), "not kept");
        // Open: nothing of it listed, a blocking request for its parts waits, the preload
        // hint names the next segment's first part.
        let text = playlist.render(false);
        assert!(!text.contains("5.0.m4s\""), "{text}");
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.0.m4s\""));
        assert_eq!(playlist.blocking_state(5, Some(1)), BlockingState::Wait);
        assert_eq!(playlist.part(5, 0), None);
        part(&mut playlist, 5, 1);
        complete(&mut playlist, 5);
        start(&mut playlist, 6);
        part(&mut playlist, 6, 0);
        let text = playlist.render(false);
        assert!(
            text.contains(
                "#EXT-X-GAP\n#EXTINF:1.000,\n5.m4s\n#EXT-X-PART:DURATION=0.500,URI=\"6.0.m4s\""
            ),
            "{text}"
        );
        assert!(!text.contains("\"5."), "no part of the gap segment: {text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"));
        assert_eq!(playlist.segment(5), None);
        assert_eq!(playlist.part(5, 1), None);
        assert!(playlist.segment(4).is_some());
        assert_eq!(playlist.blocking_state(5, Some(0)), BlockingState::Ready);
        assert_eq!(playlist.blocking_state(6, Some(0)), BlockingState::Ready);
    }
}
