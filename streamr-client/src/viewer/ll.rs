//! LL-HLS part sequencing, without I/O: reads a low-latency media playlist (RFC 8216bis
//! `EXT-X-PART`, `EXT-X-PRELOAD-HINT`), builds the blocking playlist reload request for the
//! part that comes next (`_HLS_msn`/`_HLS_part`, §6.2.5.2), and says which parts to fetch so
//! that every part is played once, in order.

use reqwest::Url;

/// A part's place in the stream: its segment's media sequence number and its index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PartPosition {
    /// The media sequence number of the segment the part belongs to.
    pub(crate) msn: u64,
    /// The part's index within its segment (0 = the first).
    pub(crate) index: u32,
}

/// One `EXT-X-PART` (or the preload hint) of a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedPart {
    /// Where it is in the stream.
    pub(crate) position: PartPosition,
    /// Its URI, relative to the playlist.
    pub(crate) uri: String,
    /// `INDEPENDENT=YES`: it starts with a keyframe, so a player may start there.
    pub(crate) independent: bool,
}

/// What a low-latency media playlist lists, as far as part playback needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LlMediaPlaylist {
    /// Parts listed, oldest first.
    pub(crate) parts: Vec<ListedPart>,
    /// Complete segments: media sequence number and how many parts it was made of, when its
    /// parts are listed (older segments are listed whole only).
    pub(crate) complete: Vec<(u64, Option<u32>)>,
    /// `EXT-X-PRELOAD-HINT:TYPE=PART`: the part the server is producing now.
    pub(crate) hint: Option<ListedPart>,
    /// The current `EXT-X-MAP` URI (the init segment the newest parts need).
    pub(crate) map_uri: Option<String>,
    /// `EXT-X-ENDLIST` was present.
    pub(crate) ended: bool,
}

/// Why a playlist could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LlPlaylistError {
    /// The text does not start with `#EXTM3U`.
    #[error("not an HLS playlist (no #EXTM3U)")]
    NotM3u8,
    /// `EXT-X-MEDIA-SEQUENCE` is not a number.
    #[error("EXT-X-MEDIA-SEQUENCE {0:?} is not a number")]
    MediaSequence(String),
    /// An `EXT-X-PART` or `EXT-X-PRELOAD-HINT` without a URI.
    #[error("{0} without URI")]
    MissingUri(&'static str),
}

/// The value of `name` in an attribute list (`A=1,URI="x",B=YES`), quotes removed.
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (value, tail) = quoted.split_once('"')?;
                (value, tail.strip_prefix(',').unwrap_or(tail))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

impl LlMediaPlaylist {
    /// Reads a low-latency media playlist. Parts belong to the segment whose `EXTINF` and URI
    /// follow them; parts after the last segment URI belong to the open segment.
    pub(crate) fn parse(text: &str) -> Result<Self, LlPlaylistError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err(LlPlaylistError::NotM3u8);
        }
        let mut playlist = LlMediaPlaylist::default();
        let mut msn: u64 = 0;
        let mut index: u32 = 0;
        let mut gap = false;
        for line in lines {
            if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = value
                    .trim()
                    .parse()
                    .map_err(|_| LlPlaylistError::MediaSequence(value.to_owned()))?;
            } else if let Some(list) = line.strip_prefix("#EXT-X-SKIP:") {
                let skipped: u64 = attribute(list, "SKIPPED-SEGMENTS")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                msn = msn.saturating_add(skipped);
            } else if let Some(list) = line.strip_prefix("#EXT-X-MAP:") {
                playlist.map_uri = attribute(list, "URI").map(str::to_owned);
            } else if let Some(list) = line.strip_prefix("#EXT-X-PART:") {
                let uri =
                    attribute(list, "URI").ok_or(LlPlaylistError::MissingUri("EXT-X-PART"))?;
                playlist.parts.push(ListedPart {
                    position: PartPosition { msn, index },
                    uri: uri.to_owned(),
                    independent: attribute(list, "INDEPENDENT") == Some("YES"),
                });
                index = index.saturating_add(1);
            } else if let Some(list) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                if attribute(list, "TYPE") == Some("PART") {
                    let uri = attribute(list, "URI")
                        .ok_or(LlPlaylistError::MissingUri("EXT-X-PRELOAD-HINT"))?;
                    playlist.hint = Some(ListedPart {
                        position: PartPosition { msn, index },
                        uri: uri.to_owned(),
                        independent: false,
                    });
                }
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if line == "#EXT-X-GAP" {
                gap = true;
            } else if !line.starts_with('#') {
                // A segment URI closes the segment its parts were listed for. A gap
                // (EXT-X-GAP: no media to load) has none to wait for: a cursor in it moves on
                // to the next segment's first part.
                let parts = if std::mem::take(&mut gap) {
                    Some(0)
                } else {
                    (index > 0).then_some(index)
                };
                playlist.complete.push((msn, parts));
                msn = msn.saturating_add(1);
                index = 0;
            }
        }
        Ok(playlist)
    }

    /// How many parts complete segment `msn` has, when the playlist says.
    fn parts_in(&self, msn: u64) -> Option<u32> {
        self.complete
            .iter()
            .find(|(sequence, _)| *sequence == msn)
            .and_then(|(_, parts)| *parts)
    }

    /// The part after `position`: the next index, or the next segment's first part once
    /// `position` was its segment's last.
    pub(crate) fn after(&self, position: PartPosition) -> PartPosition {
        let next = PartPosition {
            msn: position.msn,
            index: position.index.saturating_add(1),
        };
        self.normalise(next)
    }

    /// `position`, moved to the next segment's first part when its segment is complete with
    /// fewer parts (it names no part that will ever exist), past any gap segment after it too.
    pub(crate) fn normalise(&self, mut position: PartPosition) -> PartPosition {
        // Each step moves to a later segment the playlist lists as complete: at most as many.
        for _ in 0..=self.complete.len() {
            match self.parts_in(position.msn) {
                Some(count) if position.index >= count => {
                    position = PartPosition {
                        msn: position.msn.saturating_add(1),
                        index: 0,
                    };
                }
                _ => break,
            }
        }
        position
    }

    /// Where a viewer joining now starts: the newest part a player can start at (independent),
    /// or the first listed part of the newest segment when none is marked.
    pub(crate) fn start(&self) -> Option<PartPosition> {
        self.parts
            .iter()
            .rev()
            .find(|part| part.independent)
            .or_else(|| {
                let newest = self.parts.last()?.position.msn;
                self.parts.iter().find(|part| part.position.msn == newest)
            })
            .map(|part| part.position)
    }

    /// The listed parts from `next` on, in order.
    pub(crate) fn parts_from(&self, next: PartPosition) -> impl Iterator<Item = &ListedPart> {
        self.parts.iter().filter(move |part| part.position >= next)
    }

    /// How many listed parts come after `position` (0 for the newest and the hinted part).
    pub(crate) fn listed_after(&self, position: PartPosition) -> u32 {
        let after = self
            .parts
            .iter()
            .filter(|part| part.position > position)
            .count();
        u32::try_from(after).unwrap_or(u32::MAX)
    }

    /// True when `next` is older than every listed part: the parts in between left the
    /// playlist (the viewer fell behind) and cannot be fetched as parts any more.
    pub(crate) fn left_behind(&self, next: PartPosition) -> bool {
        self.parts
            .first()
            .is_some_and(|oldest| next < oldest.position)
    }
}

/// The blocking playlist reload request for the playlist that lists part `next` (RFC 8216bis
/// §6.2.5.2): `_HLS_msn` and `_HLS_part` added to `playlist` (whose other query parameters,
/// the grant among them, are kept).
pub(crate) fn blocking_reload_url(playlist: &Url, next: PartPosition) -> Url {
    let kept: Vec<(String, String)> = playlist
        .query_pairs()
        .filter(|(name, _)| name != "_HLS_msn" && name != "_HLS_part" && name != "_HLS_skip")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mut url = playlist.clone();
    url.set_query(None);
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in &kept {
            query.append_pair(name, value);
        }
        query.append_pair("_HLS_msn", &next.msn.to_string());
        query.append_pair("_HLS_part", &next.index.to_string());
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=1.500
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"init-ab.mp4\"
#EXTINF:2.000,
7.m4s
#EXT-X-PART:DURATION=0.500,URI=\"8.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"8.1.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"8.2.m4s\"
#EXTINF:1.500,
8.m4s
#EXT-X-PART:DURATION=0.500,URI=\"9.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"9.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9.2.m4s\"
";

    fn at(msn: u64, index: u32) -> PartPosition {
        PartPosition { msn, index }
    }

    #[test]
    fn parts_belong_to_the_segment_that_follows_them() {
        let playlist = LlMediaPlaylist::parse(OPEN).expect("parses");
        let listed: Vec<(PartPosition, &str, bool)> = playlist
            .parts
            .iter()
            .map(|p| (p.position, p.uri.as_str(), p.independent))
            .collect();
        assert_eq!(
            listed,
            vec![
                (at(8, 0), "8.0.m4s", true),
                (at(8, 1), "8.1.m4s", false),
                (at(8, 2), "8.2.m4s", false),
                (at(9, 0), "9.0.m4s", true),
                (at(9, 1), "9.1.m4s", false),
            ]
        );
        assert_eq!(playlist.complete, vec![(7, None), (8, Some(3))]);
        let hint = playlist.hint.as_ref().expect("a preload hint");
        assert_eq!((hint.position, hint.uri.as_str()), (at(9, 2), "9.2.m4s"));
        assert_eq!(playlist.map_uri.as_deref(), Some("init-ab.mp4"));
        assert!(!playlist.ended);
    }

    #[test]
    fn a_joining_viewer_starts_at_the_newest_independent_part() {
        let playlist = LlMediaPlaylist::parse(OPEN).expect("parses");
        assert_eq!(playlist.start(), Some(at(9, 0)));
    }

    #[test]
    fn the_part_after_a_segment_s_last_is_the_next_segment_s_first() {
        let playlist = LlMediaPlaylist::parse(OPEN).expect("parses");
        assert_eq!(playlist.after(at(8, 1)), at(8, 2));
        assert_eq!(playlist.after(at(8, 2)), at(9, 0));
        // The open segment's parts go on until the playlist closes it.
        assert_eq!(playlist.after(at(9, 1)), at(9, 2));
        assert_eq!(playlist.after(at(9, 2)), at(9, 3));
    }

    #[test]
    fn a_cursor_past_the_end_of_a_closed_segment_moves_on() {
        // Asked for 9.2 while 9 was open; it closed with two parts.
        let closed = OPEN.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9.2.m4s\"",
            "#EXTINF:1.000,\n9.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"10.0.m4s\"",
        );
        let playlist = LlMediaPlaylist::parse(&closed).expect("parses");
        assert_eq!(playlist.normalise(at(9, 2)), at(10, 0));
        assert_eq!(playlist.hint.map(|h| h.position), Some(at(10, 0)));
    }

    #[test]
    fn a_cursor_in_a_gap_segment_moves_on_to_the_next_segment() {
        // The relay's segment 9 was listed as a gap once it completed: no part of it.
        let gap = OPEN.replace(
            "#EXT-X-PART:DURATION=0.500,URI=\"9.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"9.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9.2.m4s\"",
            "#EXT-X-GAP\n#EXTINF:1.000,\n9.m4s\n\
             #EXT-X-PART:DURATION=0.500,URI=\"10.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"10.1.m4s\"",
        );
        assert_ne!(gap, OPEN);
        let playlist = LlMediaPlaylist::parse(&gap).expect("parses");
        assert_eq!(playlist.complete.last(), Some(&(9, Some(0))));
        assert_eq!(playlist.normalise(at(9, 1)), at(10, 0));
        assert_eq!(playlist.normalise(at(9, 0)), at(10, 0));
        assert_eq!(playlist.after(at(8, 2)), at(10, 0));
        assert_eq!(playlist.start(), Some(at(10, 0)));
    }

    #[test]
    fn parts_from_the_cursor_on_are_fetched_in_order_once() {
        let playlist = LlMediaPlaylist::parse(OPEN).expect("parses");
        let uris: Vec<&str> = playlist
            .parts_from(at(8, 2))
            .map(|p| p.uri.as_str())
            .collect();
        assert_eq!(uris, vec!["8.2.m4s", "9.0.m4s", "9.1.m4s"]);
        assert_eq!(playlist.listed_after(at(8, 2)), 2);
        assert_eq!(playlist.listed_after(at(9, 1)), 0);
        assert_eq!(playlist.listed_after(at(9, 2)), 0, "the hinted part");
        assert!(!playlist.left_behind(at(8, 0)));
        assert!(playlist.left_behind(at(7, 3)));
    }

    #[test]
    fn a_delta_update_counts_the_skipped_segments() {
        let delta = OPEN.replace(
            "#EXTINF:2.000,\n7.m4s\n",
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        );
        let playlist = LlMediaPlaylist::parse(&delta).expect("parses");
        assert_eq!(playlist.parts.first().map(|p| p.position), Some(at(8, 0)));
    }

    #[test]
    fn the_blocking_reload_asks_for_the_next_part_and_keeps_the_grant() {
        let playlist =
            Url::parse("http://node:8080/live/show/ll.m3u8?grant=abc&_HLS_msn=1&_HLS_part=0")
                .expect("valid URL");
        let url = blocking_reload_url(&playlist, at(9, 2));
        assert_eq!(
            url.as_str(),
            "http://node:8080/live/show/ll.m3u8?grant=abc&_HLS_msn=9&_HLS_part=2"
        );
    }

    #[test]
    fn not_a_playlist_is_an_error() {
        assert_eq!(
            LlMediaPlaylist::parse("<html>"),
            Err(LlPlaylistError::NotM3u8)
        );
        assert!(matches!(
            LlMediaPlaylist::parse("#EXTM3U\n#EXT-X-PART:DURATION=0.5\n"),
            Err(LlPlaylistError::MissingUri(_))
        ));
    }
}
