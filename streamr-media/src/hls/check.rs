//! A checker for the HLS rules this crate promises, used on live and offline output.

use std::collections::BTreeMap;

use thiserror::Error;

/// A media playlist as parsed by [`ParsedPlaylist::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPlaylist {
    /// EXT-X-TARGETDURATION.
    pub target_duration: u64,
    /// EXT-X-MEDIA-SEQUENCE (0 when absent).
    pub media_sequence: u64,
    /// EXT-X-DISCONTINUITY-SEQUENCE (0 when absent).
    pub discontinuity_sequence: u64,
    /// The listed segments in order.
    pub segments: Vec<ParsedSegment>,
    /// EXT-X-ENDLIST was present.
    pub ended: bool,
    /// EXT-X-PLAYLIST-TYPE, if present.
    pub playlist_type: Option<String>,
}

/// One segment line of a parsed playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSegment {
    /// Media sequence number.
    pub sequence: u64,
    /// EXTINF duration in seconds.
    pub duration: f64,
    /// The URI line.
    pub uri: String,
    /// Preceded by EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// The EXT-X-PROGRAM-DATE-TIME value, if any.
    pub program_date_time: Option<String>,
    /// Preceded by EXT-X-GAP: no media to load (RFC 8216bis 4.4.4.7); it keeps its number and
    /// EXTINF, but players, probes and checks of its bytes skip it.
    pub gap: bool,
}

/// An HLS rule a playlist breaks, naming the line or segment.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PlaylistViolation {
    /// The first line is not `#EXTM3U`.
    #[error("playlist does not start with #EXTM3U")]
    MissingHeader,
    /// A tag's value could not be parsed.
    #[error("line {line}: malformed {tag}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The tag.
        tag: &'static str,
    },
    /// EXT-X-TARGETDURATION is missing.
    #[error("EXT-X-TARGETDURATION is missing")]
    MissingTargetDuration,
    /// A segment's EXTINF rounds to more than the target duration.
    #[error("segment {sequence}: EXTINF {duration} exceeds EXT-X-TARGETDURATION {target}")]
    SegmentTooLong {
        /// The segment's sequence number.
        sequence: u64,
        /// Its EXTINF.
        duration: f64,
        /// The target duration.
        target: u64,
    },
    /// A live playlist lists fewer than 6 segments or 3 target durations.
    #[error("live window has {segments} segments / {seconds:.3} s, needs >= 6 and >= {needed} s")]
    WindowTooShort {
        /// Listed segments.
        segments: usize,
        /// Listed seconds.
        seconds: f64,
        /// Three target durations, in seconds.
        needed: u64,
    },
    /// EXT-X-TARGETDURATION changed between two versions of the playlist.
    #[error("EXT-X-TARGETDURATION changed from {before} to {after}")]
    TargetDurationChanged {
        /// Earlier value.
        before: u64,
        /// Later value.
        after: u64,
    },
    /// EXT-X-MEDIA-SEQUENCE decreased.
    #[error("EXT-X-MEDIA-SEQUENCE went back from {before} to {after}")]
    MediaSequenceDecreased {
        /// Earlier value.
        before: u64,
        /// Later value.
        after: u64,
    },
    /// EXT-X-DISCONTINUITY-SEQUENCE does not count the discontinuities that left the window.
    #[error("EXT-X-DISCONTINUITY-SEQUENCE is {found}, expected {expected}")]
    DiscontinuitySequenceWrong {
        /// Expected value.
        expected: u64,
        /// Found value.
        found: u64,
    },
    /// A segment changed its URI, duration or discontinuity flag between two versions.
    #[error("segment {sequence} changed between playlist versions")]
    SegmentChanged {
        /// The segment's sequence number.
        sequence: u64,
    },
    /// A playlist kept changing after EXT-X-ENDLIST.
    #[error("playlist changed after EXT-X-ENDLIST")]
    ChangedAfterEnd,
}

fn value<T: std::str::FromStr>(
    rest: &str,
    line: usize,
    tag: &'static str,
) -> Result<T, PlaylistViolation> {
    rest.trim()
        .parse()
        .map_err(|_| PlaylistViolation::Malformed { line, tag })
}

impl ParsedPlaylist {
    /// Parses a media playlist and checks the rules that hold for any single version: header,
    /// target duration present, every EXTINF rounded <= target duration.
    pub fn parse(text: &str) -> Result<Self, PlaylistViolation> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, "#EXTM3U")) => {}
            _ => return Err(PlaylistViolation::MissingHeader),
        }
        let mut target = None;
        let mut playlist = ParsedPlaylist {
            target_duration: 0,
            media_sequence: 0,
            discontinuity_sequence: 0,
            segments: Vec::new(),
            ended: false,
            playlist_type: None,
        };
        let mut pending_duration = None;
        let mut pending_discontinuity = false;
        let mut pending_time = None;
        let mut pending_gap = false;
        for (index, raw) in lines {
            let line = index + 1;
            let raw = raw.trim();
            if let Some(rest) = raw.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = Some(value(rest, line, "EXT-X-TARGETDURATION")?);
            } else if let Some(rest) = raw.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = value(rest, line, "EXT-X-MEDIA-SEQUENCE")?;
            } else if let Some(rest) = raw.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                playlist.discontinuity_sequence =
                    value(rest, line, "EXT-X-DISCONTINUITY-SEQUENCE")?;
            } else if let Some(rest) = raw.strip_prefix("#EXT-X-PLAYLIST-TYPE:") {
                playlist.playlist_type = Some(rest.trim().to_owned());
            } else if raw == "#EXT-X-DISCONTINUITY" {
                pending_discontinuity = true;
            } else if raw == "#EXT-X-GAP" {
                pending_gap = true;
            } else if let Some(rest) = raw.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pending_time = Some(rest.trim().to_owned());
            } else if let Some(rest) = raw.strip_prefix("#EXTINF:") {
                let duration = rest.split(',').next().unwrap_or_default();
                pending_duration = Some(value::<f64>(duration, line, "EXTINF")?);
            } else if raw == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !raw.is_empty() && !raw.starts_with('#') {
                let duration = pending_duration
                    .take()
                    .ok_or(PlaylistViolation::Malformed {
                        line,
                        tag: "EXTINF before URI",
                    })?;
                let sequence = playlist
                    .media_sequence
                    .saturating_add(playlist.segments.len() as u64);
                playlist.segments.push(ParsedSegment {
                    sequence,
                    duration,
                    uri: raw.to_owned(),
                    discontinuity: std::mem::take(&mut pending_discontinuity),
                    program_date_time: pending_time.take(),
                    gap: std::mem::take(&mut pending_gap),
                });
            }
        }
        playlist.target_duration = target.ok_or(PlaylistViolation::MissingTargetDuration)?;
        for segment in &playlist.segments {
            if segment.duration.round() > playlist.target_duration as f64 {
                return Err(PlaylistViolation::SegmentTooLong {
                    sequence: segment.sequence,
                    duration: segment.duration,
                    target: playlist.target_duration,
                });
            }
        }
        Ok(playlist)
    }

    /// The segments whose media can be loaded (those not marked EXT-X-GAP).
    pub fn loadable(&self) -> impl Iterator<Item = &ParsedSegment> {
        self.segments.iter().filter(|segment| !segment.gap)
    }

    /// True for a live playlist (no EXT-X-ENDLIST, no playlist type).
    pub fn is_live(&self) -> bool {
        !self.ended && self.playlist_type.is_none()
    }

    /// Sum of the EXTINF durations in seconds.
    pub fn total_duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// Checks the live window: at least 6 segments and 3 target durations.
    pub fn check_window(&self) -> Result<(), PlaylistViolation> {
        let seconds = self.total_duration();
        let needed = self.target_duration * 3;
        if self.segments.len() < 6 || seconds < needed as f64 {
            return Err(PlaylistViolation::WindowTooShort {
                segments: self.segments.len(),
                seconds,
                needed,
            });
        }
        Ok(())
    }
}

/// Checks successive versions of one live playlist against each other: fixed target duration,
/// media sequence never decreasing, discontinuity sequence counting what left the window, listed
/// segments never changing, nothing after EXT-X-ENDLIST.
#[derive(Debug, Default, Clone)]
pub struct PlaylistHistory {
    last: Option<ParsedPlaylist>,
    seen: BTreeMap<u64, ParsedSegment>,
}

impl PlaylistHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and checks the next version of the playlist.
    pub fn observe(&mut self, text: &str) -> Result<ParsedPlaylist, PlaylistViolation> {
        let playlist = ParsedPlaylist::parse(text)?;
        if let Some(last) = &self.last {
            if last.ended && last != &playlist {
                return Err(PlaylistViolation::ChangedAfterEnd);
            }
            if last.target_duration != playlist.target_duration {
                return Err(PlaylistViolation::TargetDurationChanged {
                    before: last.target_duration,
                    after: playlist.target_duration,
                });
            }
            if playlist.media_sequence < last.media_sequence {
                return Err(PlaylistViolation::MediaSequenceDecreased {
                    before: last.media_sequence,
                    after: playlist.media_sequence,
                });
            }
            let dropped = last
                .segments
                .iter()
                .filter(|s| s.sequence < playlist.media_sequence && s.discontinuity)
                .count() as u64;
            let all_dropped_were_seen = last
                .segments
                .first()
                .is_none_or(|s| s.sequence <= playlist.media_sequence);
            let expected = last.discontinuity_sequence + dropped;
            if all_dropped_were_seen && playlist.discontinuity_sequence != expected {
                return Err(PlaylistViolation::DiscontinuitySequenceWrong {
                    expected,
                    found: playlist.discontinuity_sequence,
                });
            }
        }
        for segment in &playlist.segments {
            if let Some(before) = self.seen.get(&segment.sequence) {
                let same = before.uri == segment.uri
                    && before.duration == segment.duration
                    && before.discontinuity == segment.discontinuity
                    && before.gap == segment.gap;
                if !same {
                    return Err(PlaylistViolation::SegmentChanged {
                        sequence: segment.sequence,
                    });
                }
            } else {
                self.seen.insert(segment.sequence, segment.clone());
            }
        }
        self.last = Some(playlist.clone());
        Ok(playlist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_GAP: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXTINF:4.000,\n7.ts\n#EXT-X-GAP\n#EXTINF:4.000,\n8.ts\n#EXTINF:4.000,\n9.ts\n";

    #[test]
    fn a_gap_segment_keeps_its_number_and_is_not_loadable() {
        let playlist = ParsedPlaylist::parse(WITH_GAP).expect("parses");
        let listed: Vec<(u64, bool)> = playlist
            .segments
            .iter()
            .map(|s| (s.sequence, s.gap))
            .collect();
        assert_eq!(listed, vec![(7, false), (8, true), (9, false)]);
        let loadable: Vec<&str> = playlist.loadable().map(|s| s.uri.as_str()).collect();
        assert_eq!(loadable, vec!["7.ts", "9.ts"]);
        assert_eq!(
            playlist.total_duration(),
            12.0,
            "a gap still lasts its EXTINF"
        );
    }

    #[test]
    fn a_listed_segment_never_turns_into_a_gap() {
        let mut history = PlaylistHistory::new();
        history.observe(WITH_GAP).expect("first version");
        let unmarked = WITH_GAP.replace("#EXT-X-GAP\n", "");
        assert_eq!(
            history.observe(&unmarked),
            Err(PlaylistViolation::SegmentChanged { sequence: 8 })
        );
    }
}
