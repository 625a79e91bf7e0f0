//! HLS: the live segmenter and playlists, MPEG-TS and LL-HLS (fMP4/CMAF).
//!
//! The LL-HLS rendition ([`LlHlsStream`]) cuts its CMAF segments where the MPEG-TS segmenter
//! cuts and numbers them the same, splits them into partial segments ([`LlPackager`]) and lists
//! them in an RFC 8216bis playlist with blocking reload and delta updates ([`LlPlaylist`]);
//! [`check_ll_playlist`] checks a rendered playlist against the spec's rules.
//!
//! A stream's multivariant playlist ([`render_multivariant`], checked by
//! [`check_multivariant`]) lists the renditions that carry all its tracks ([`StreamTracks`]),
//! with measured bandwidth ([`segment_bit_rates`]), RFC 6381 codecs, resolution and frame rate.
//!
//! [`Segmenter`] is sans-IO: FLV tags go in, [`SegmenterEvent::SegmentReady`] comes out with the
//! segment's MPEG-TS bytes, duration and BLAKE3 hash. [`LivePlaylist`] keeps a bounded sliding
//! window of segments in memory and renders the M3U8; [`HlsStream`] ties the two together for one
//! published stream. [`HlsDirectory`] optionally mirrors the output to disk.
//!
//! ```
//! use streamr_media::flv::FlvReader;
//! use streamr_media::hls::{HlsStream, PlaylistConfig, SegmenterConfig};
//!
//! let mut stream = HlsStream::new(SegmenterConfig::default(), PlaylistConfig::default());
//! # let flv_bytes: Vec<u8> = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
//! let mut reader = FlvReader::new();
//! reader.push(&flv_bytes);
//! while let Some(tag) = reader.next_tag().unwrap() {
//!     stream.push(&tag).unwrap();
//! }
//! stream.finish();
//! assert!(stream.playlist().render().ends_with("#EXT-X-ENDLIST\n"));
//! ```

mod check;
mod directory;
mod ll;
mod ll_check;
mod ll_packager;
mod ll_playlist;
mod multivariant;
mod part_timing;
mod playlist;
mod segmenter;
mod timing_notice;
mod uri_query;
mod variants;

use std::time::SystemTime;

pub use check::{ParsedPlaylist, ParsedSegment, PlaylistHistory, PlaylistViolation};
pub use directory::{HlsDirectory, HlsWriteError};
pub use ll::{LlHlsStream, LlOutput};
pub use ll_check::{check_ll_playlist, LlViolation};
pub use ll_packager::{
    InitSegment, LlEvent, LlPackager, LlPackagerConfig, LlSegment, Part, DEFAULT_PART_TARGET_MS,
    PART_JITTER_MS,
};
pub use ll_playlist::{
    BlockingState, LlPlaylist, LlPlaylistConfig, LL_HLS_VERSION, PART_HOLD_BACK_PARTS,
    PART_LISTING_TARGET_DURATIONS, SKIP_UNTIL_TARGET_DURATIONS,
};
pub use multivariant::{
    check_multivariant, render_multivariant, segment_bit_rates, MultivariantViolation, Variant,
    MULTIVARIANT_NAME,
};
pub use part_timing::MAX_PART_TARGET_MS;
pub use playlist::{
    LivePlaylist, PlaylistConfig, PlaylistEntry, MIN_WINDOW_SEGMENTS, MIN_WINDOW_TARGET_DURATIONS,
};
pub use segmenter::{OpenSegmentInfo, Segment, Segmenter, SegmenterConfig, SegmenterEvent};
pub use timing_notice::{is_timing_message, HlsTiming, HLS_TIMING_MESSAGE};
pub use uri_query::{carried_query, playlist_for_alias, playlist_with_query};
pub use variants::{Rendition, StreamTracks, MP3_CODEC};

use crate::flv::FlvTag;
use crate::ts::TsError;

/// One published stream's HLS output: a segmenter feeding an in-memory playlist.
#[derive(Debug)]
pub struct HlsStream {
    segmenter: Segmenter,
    playlist: LivePlaylist,
}

impl HlsStream {
    /// A stream with the given segmenting and playlist settings. The playlist's target duration
    /// is derived from the stream's GOP when the first segment closes
    /// ([`Segmenter::target_duration_secs`]).
    pub fn new(segmenter: SegmenterConfig, mut playlist: PlaylistConfig) -> Self {
        playlist.target_duration_secs = segmenter.target_duration_secs;
        HlsStream {
            segmenter: Segmenter::new(segmenter),
            playlist: LivePlaylist::new(playlist),
        }
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME starting at `now` (see
    /// [`LivePlaylist::set_program_date_time`]).
    pub fn set_program_date_time(&mut self, now: SystemTime) {
        self.playlist.set_program_date_time(now);
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from the stream's clock: the frame with
    /// stream timestamp `timestamp_ms` was published at `now` (see
    /// [`LivePlaylist::set_program_date_time_at`]).
    pub fn set_program_date_time_at(&mut self, now: SystemTime, timestamp_ms: u64) {
        self.playlist.set_program_date_time_at(now, timestamp_ms);
    }

    /// Feeds one tag; finished segments are added to the playlist and returned.
    pub fn push(&mut self, tag: &FlvTag) -> Result<Vec<SegmenterEvent>, TsError> {
        let events = self.segmenter.push(tag)?;
        self.apply(&events);
        Ok(events)
    }

    /// The publisher reconnected: the next segment follows a discontinuity.
    pub fn discontinuity(&mut self) -> Vec<SegmenterEvent> {
        let events = self.segmenter.discontinuity();
        self.apply(&events);
        events
    }

    /// The publisher ended: closes the last segment and ends the playlist.
    pub fn finish(&mut self) -> Vec<SegmenterEvent> {
        let events = self.segmenter.finish();
        self.apply(&events);
        events
    }

    /// The playlist.
    pub fn playlist(&self) -> &LivePlaylist {
        &self.playlist
    }

    fn apply(&mut self, events: &[SegmenterEvent]) {
        for event in events {
            match event {
                SegmenterEvent::SegmentReady(segment) => {
                    if let Some(target) = self.segmenter.target_duration_secs() {
                        self.playlist.set_target_duration(target);
                    }
                    self.playlist.push(segment, true)
                }
                SegmenterEvent::Ended => self.playlist.end(),
                SegmenterEvent::CodecLeftOut { .. } => {}
            }
        }
    }
}
