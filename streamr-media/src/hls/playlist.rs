//! The live media playlist: a bounded sliding window of segments, rendered as M3U8.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::Segment;

/// The fewest segments a live playlist lists.
pub const MIN_WINDOW_SEGMENTS: usize = 6;
/// A live playlist lists at least this many target durations of media.
pub const MIN_WINDOW_TARGET_DURATIONS: u64 = 3;

/// How a playlist lists and keeps segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistConfig {
    /// EXT-X-TARGETDURATION in seconds; must match the segmenter's.
    pub target_duration_secs: u32,
    /// Segments listed in a live playlist (raised to [`MIN_WINDOW_SEGMENTS`] and to cover
    /// [`MIN_WINDOW_TARGET_DURATIONS`] target durations). `None` lists every segment (VOD).
    pub window_segments: Option<usize>,
    /// Segments kept after they leave the window, for clients still downloading them.
    pub retained_after_window: usize,
    /// Prefix of each segment URI; the URI is this followed by `{sequence}.ts`.
    pub segment_uri_prefix: String,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        PlaylistConfig {
            target_duration_secs: super::SegmenterConfig::default().target_duration_secs,
            window_segments: Some(MIN_WINDOW_SEGMENTS),
            retained_after_window: 3,
            segment_uri_prefix: String::new(),
        }
    }
}

/// One listed segment. The bytes are kept only while the segment is in the window or retained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistEntry {
    /// Media sequence number.
    pub sequence: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Preceded by EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of the first frame (EXT-X-PROGRAM-DATE-TIME).
    pub program_date_time: Option<SystemTime>,
    /// BLAKE3 hash of the segment bytes.
    pub hash: blake3::Hash,
    /// The segment bytes, when kept in memory (never for a [`gap`](Self::gap)).
    pub bytes: Option<Bytes>,
    /// Listed with EXT-X-GAP: its media is not available here (a relay's segment across an
    /// upstream gap, whose bytes are not the origin's), so players must not load it.
    pub gap: bool,
}

/// A live (or, with no window, VOD) media playlist with its segments in memory.
///
/// ```
/// use streamr_media::hls::{LivePlaylist, PlaylistConfig};
///
/// let playlist = LivePlaylist::new(PlaylistConfig::default());
/// assert!(playlist.render().starts_with("#EXTM3U\n"));
/// ```
#[derive(Debug, Clone)]
pub struct LivePlaylist {
    config: PlaylistConfig,
    entries: VecDeque<PlaylistEntry>,
    /// Discontinuity tags of segments that left the playlist.
    discontinuity_sequence: u64,
    ended: bool,
    clock_anchor: Option<SystemTime>,
    /// The stream timestamp published at `clock_anchor`, until the next segment is stamped from
    /// it (see [`LivePlaylist::set_program_date_time_at`]).
    anchor_timestamp_ms: Option<u64>,
    elapsed_ms: u64,
    /// Where the segment pushed last ends on the stream's clock (its first frame's timestamp
    /// plus its duration).
    previous_end_ms: Option<u64>,
    /// A segment was pushed: EXT-X-TARGETDURATION no longer changes.
    started: bool,
}

impl LivePlaylist {
    /// An empty playlist.
    pub fn new(config: PlaylistConfig) -> Self {
        LivePlaylist {
            config,
            entries: VecDeque::new(),
            discontinuity_sequence: 0,
            ended: false,
            clock_anchor: None,
            anchor_timestamp_ms: None,
            elapsed_ms: 0,
            previous_end_ms: None,
            started: false,
        }
    }

    /// Sets EXT-X-TARGETDURATION, as long as no segment was pushed: a playlist's target duration
    /// never changes once it lists media (see [`Segmenter::target_duration_secs`](super::Segmenter::target_duration_secs)).
    pub fn set_target_duration(&mut self, secs: u32) {
        if !self.started {
            self.config.target_duration_secs = secs.max(1);
        }
    }

    /// The EXT-X-TARGETDURATION rendered, in seconds.
    pub fn target_duration_secs(&self) -> u32 {
        self.config.target_duration_secs
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME: the next segment starts at `now`, later ones
    /// follow by the durations of the segments before them.
    pub fn set_program_date_time(&mut self, now: SystemTime) {
        self.clock_anchor = Some(now);
        self.elapsed_ms = 0;
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from the stream's clock: the frame with
    /// stream timestamp `timestamp_ms` was published at `now`. The next segment is stamped from
    /// its own first frame's timestamp, so segments cut but not listed before it (a relay's
    /// first) shift nothing; later ones follow by the durations of the segments before them.
    pub fn set_program_date_time_at(&mut self, now: SystemTime, timestamp_ms: u64) {
        self.clock_anchor = Some(now);
        self.anchor_timestamp_ms = Some(timestamp_ms);
        self.elapsed_ms = 0;
    }

    /// Adds a finished segment, keeping its bytes when `keep_bytes`.
    ///
    /// Its EXT-X-PROGRAM-DATE-TIME follows the one before by that segment's duration; a segment
    /// after a discontinuity that starts later on the stream's clock than the one before ended
    /// (the timeline jumped forward, or media was left out) follows it by that much more, as
    /// the stream's clock says, so that a node anchored after the jump
    /// ([`LivePlaylist::set_program_date_time_at`]) stamps it the same.
    pub fn push(&mut self, segment: &Segment, keep_bytes: bool) {
        if let Some(end) = self.previous_end_ms.filter(|_| segment.discontinuity) {
            let skipped = segment.start_timestamp_ms.saturating_sub(end);
            self.elapsed_ms = self.elapsed_ms.saturating_add(skipped);
        }
        self.previous_end_ms = Some(
            segment
                .start_timestamp_ms
                .saturating_add(segment.duration_ms),
        );
        if let (Some(anchor), Some(at)) = (self.clock_anchor, self.anchor_timestamp_ms.take()) {
            self.clock_anchor = Some(super::ll_playlist::clock_at(
                anchor,
                at,
                segment.start_timestamp_ms,
            ));
            self.elapsed_ms = 0;
        }
        let program_date_time = self
            .clock_anchor
            .map(|anchor| anchor + Duration::from_millis(self.elapsed_ms));
        self.elapsed_ms = self.elapsed_ms.saturating_add(segment.duration_ms);
        self.started = true;
        self.entries.push_back(PlaylistEntry {
            sequence: segment.sequence,
            duration_ms: segment.duration_ms,
            discontinuity: segment.discontinuity,
            program_date_time,
            hash: segment.hash,
            bytes: keep_bytes.then(|| segment.bytes.clone()),
            gap: false,
        });
        self.trim();
    }

    /// Lists segment `sequence` with EXT-X-GAP (RFC 8216bis 4.4.4.7): it keeps its place,
    /// number and EXTINF, but its bytes are dropped and no longer served, and players do not
    /// load it. False when the segment is not kept.
    pub fn mark_gap(&mut self, sequence: u64) -> bool {
        let Some(entry) = self.entries.iter_mut().find(|e| e.sequence == sequence) else {
            return false;
        };
        entry.gap = true;
        entry.bytes = None;
        true
    }

    /// Marks the stream as ended: the playlist gets EXT-X-ENDLIST.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// True once [`end`](Self::end) was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The bytes of segment `sequence`, while it is kept.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        self.entries
            .iter()
            .find(|e| e.sequence == sequence)
            .and_then(|e| e.bytes.clone())
    }

    /// The oldest segment still kept (listed or retained).
    pub fn oldest_kept(&self) -> Option<u64> {
        self.entries.front().map(|e| e.sequence)
    }

    /// The segments currently listed by [`render`](Self::render).
    pub fn listed(&self) -> impl Iterator<Item = &PlaylistEntry> {
        let skip = self.entries.len() - self.listed_count();
        self.entries.iter().skip(skip)
    }

    fn listed_count(&self) -> usize {
        let Some(window) = self.config.window_segments else {
            return self.entries.len();
        };
        let min_count = window.max(MIN_WINDOW_SEGMENTS);
        let min_ms = u64::from(self.config.target_duration_secs)
            .saturating_mul(MIN_WINDOW_TARGET_DURATIONS * 1_000);
        let mut count = 0usize;
        let mut total_ms = 0u64;
        for entry in self.entries.iter().rev() {
            if count >= min_count && total_ms >= min_ms {
                break;
            }
            count += 1;
            total_ms = total_ms.saturating_add(entry.duration_ms);
        }
        count
    }

    fn trim(&mut self) {
        let keep = self
            .listed_count()
            .saturating_add(self.config.retained_after_window);
        while self.entries.len() > keep {
            if let Some(old) = self.entries.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
    }

    fn discontinuities_before_window(&self) -> u64 {
        let hidden = self.entries.len() - self.listed_count();
        let retained = self
            .entries
            .iter()
            .take(hidden)
            .filter(|e| e.discontinuity)
            .count() as u64;
        self.discontinuity_sequence + retained
    }

    /// Renders the playlist.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(
            out,
            "#EXT-X-TARGETDURATION:{}",
            self.config.target_duration_secs
        );
        if self.config.window_segments.is_none() {
            out.push_str(if self.ended {
                "#EXT-X-PLAYLIST-TYPE:VOD\n"
            } else {
                "#EXT-X-PLAYLIST-TYPE:EVENT\n"
            });
        }
        let first_sequence = self.listed().next().map(|e| e.sequence).unwrap_or(0);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_sequence}");
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuities_before_window()
        );
        for entry in self.listed() {
            if entry.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(time) = entry.program_date_time {
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(time)
                );
            }
            if entry.gap {
                out.push_str("#EXT-X-GAP\n");
            }
            let _ = writeln!(
                out,
                "#EXTINF:{}.{:03},\n{}{}.ts",
                entry.duration_ms / 1_000,
                entry.duration_ms % 1_000,
                self.config.segment_uri_prefix,
                entry.sequence
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sequence: u64, start_timestamp_ms: u64) -> Segment {
        Segment {
            sequence,
            start_timestamp_ms,
            duration_ms: 4_000,
            discontinuity: false,
            starts_with_keyframe: true,
            hash: blake3::hash(b""),
            bytes: Bytes::new(),
        }
    }

    #[test]
    fn the_first_segment_after_the_anchor_is_stamped_from_its_own_first_frame() {
        // A relay anchored its clock at stream time 5 s, inside a segment it cut from 4 s and left
        // out; the first one it lists starts at 8 s, 3 s after the anchor, the next 4 s later.
        let anchor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let mut playlist = LivePlaylist::new(PlaylistConfig::default());
        playlist.set_program_date_time_at(anchor, 5_000);
        playlist.push(&segment(0, 8_000), false);
        playlist.push(&segment(1, 12_000), false);
        let text = playlist.render();
        let stamps: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .collect();
        let at = |secs: u64| {
            humantime::format_rfc3339_millis(anchor + Duration::from_secs(secs)).to_string()
        };
        assert_eq!(stamps, [at(3), at(7)], "{text}");
    }

    #[test]
    fn a_gap_segment_keeps_its_number_and_extinf_but_is_not_served() {
        let mut playlist = LivePlaylist::new(PlaylistConfig::default());
        for sequence in 0..3 {
            let mut cut = segment(sequence, sequence * 4_000);
            cut.bytes = Bytes::from_static(b"ts");
            playlist.push(&cut, true);
        }
        assert!(playlist.mark_gap(1));
        assert!(!playlist.mark_gap(7), "not kept");
        let text = playlist.render();
        assert!(text.contains(
            "#EXTINF:4.000,\n0.ts\n#EXT-X-GAP\n#EXTINF:4.000,\n1.ts\n#EXTINF:4.000,\n2.ts"
        ));
        assert_eq!(playlist.segment(1), None);
        assert!(playlist.segment(2).is_some());
        assert_eq!(playlist.listed().filter(|e| e.gap).count(), 1);
    }
}
