//! One stream's LL-HLS rendition without sockets: the MPEG-TS segmenter decides the cuts, the
//! fMP4 packager makes the parts, the playlist lists them.

use std::time::SystemTime;

use super::ll_packager::{LlEvent, LlPackager, LlPackagerConfig};
use super::ll_playlist::{LlPlaylist, LlPlaylistConfig};
use super::segmenter::{Segmenter, SegmenterConfig, SegmenterEvent};
use crate::flv::FlvTag;
use crate::fmp4::Fmp4Error;

/// The segmenter, the packager and the playlist of one stream, fed tag by tag. The MPEG-TS
/// segments are produced too (they decide the cut points and sequence numbers) and returned.
/// The playlist's TARGETDURATION is the segmenter's LL-HLS target duration
/// ([`Segmenter::ll_target_duration_secs`], which holds every segment of both renditions) and
/// its PART-TARGET the packager's
/// ([`LlPackager::part_target_ms`]: the configured target fitted to the stream's frame timing,
/// fixed when the first segment closes, before the playlist lists anything): both come from
/// the configuration and the stream itself, so nodes declare the same.
///
/// ```
/// use streamr_media::hls::{LlHlsStream, LlPackagerConfig, SegmenterConfig};
///
/// let mut stream = LlHlsStream::new(SegmenterConfig::default(), LlPackagerConfig::default(), 6, "");
/// stream.finish();
/// assert!(stream.playlist().render(false).contains("#EXT-X-PART-INF:PART-TARGET=0.350"));
/// ```
#[derive(Debug)]
pub struct LlHlsStream {
    segmenter: Segmenter,
    packager: LlPackager,
    playlist: LlPlaylist,
}

/// What one tag produced in both renditions.
#[derive(Debug, Default)]
pub struct LlOutput {
    /// MPEG-TS events.
    pub ts: Vec<SegmenterEvent>,
    /// LL-HLS events.
    pub ll: Vec<LlEvent>,
}

impl LlHlsStream {
    /// A stream whose playlists list at least `window_segments` segments, with URIs prefixed by
    /// `uri_prefix`.
    pub fn new(
        segmenter: SegmenterConfig,
        packager: LlPackagerConfig,
        window_segments: usize,
        uri_prefix: &str,
    ) -> Self {
        LlHlsStream {
            segmenter: Segmenter::new(segmenter),
            packager: LlPackager::new(packager),
            playlist: LlPlaylist::new(LlPlaylistConfig {
                target_duration_secs: segmenter.target_duration_secs,
                part_target_ms: packager.part_target_ms,
                window_segments,
                uri_prefix: uri_prefix.to_string(),
            }),
        }
    }

    /// The stream is joined mid-stream, as a relay pulling it does: the segment opened at the
    /// first keyframe is left out of both renditions (see [`Segmenter::joining_mid_stream`]).
    pub fn joining_mid_stream(mut self) -> Self {
        self.segmenter = self.segmenter.joining_mid_stream();
        self
    }

    /// Fixes the MPEG-TS target duration at `secs`, as a node configured with one does (see
    /// [`Segmenter::with_fixed_target_duration`]); the LL-HLS playlist follows it.
    pub fn with_fixed_target_duration(mut self, secs: u32) -> Self {
        self.segmenter = self.segmenter.with_fixed_target_duration(secs);
        self
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from `now` on.
    pub fn set_program_date_time(&mut self, now: SystemTime) {
        self.playlist.set_program_date_time(now);
    }

    /// Stamps segments with EXT-X-PROGRAM-DATE-TIME from the stream's clock: the frame with
    /// stream timestamp `timestamp_ms` was published at `now` (see
    /// [`LlPlaylist::set_program_date_time_at`]).
    pub fn set_program_date_time_at(&mut self, now: SystemTime, timestamp_ms: u64) {
        self.playlist.set_program_date_time_at(now, timestamp_ms);
    }

    /// Feeds one tag to both renditions. A tag MPEG-TS cannot carry is still packaged in fMP4
    /// when it can be (Opus).
    pub fn push(&mut self, tag: &FlvTag) -> Result<LlOutput, Fmp4Error> {
        let ts = self.segmenter.push(tag).unwrap_or_default();
        let ll = self.packager.push(tag, self.segmenter.current_segment())?;
        self.apply(&ll);
        Ok(LlOutput { ts, ll })
    }

    /// The publisher reconnected: both renditions close their segment.
    pub fn discontinuity(&mut self) -> Result<LlOutput, Fmp4Error> {
        let ts = self.segmenter.discontinuity();
        let ll = self.packager.flush()?;
        self.apply(&ll);
        Ok(LlOutput { ts, ll })
    }

    /// The publisher ended: closes the last segments and ends the playlist.
    pub fn finish(&mut self) -> Result<LlOutput, Fmp4Error> {
        // The segmenter first: closing the first listed segment fixes the target duration.
        let ts = self.segmenter.finish();
        let ll = self.packager.flush()?;
        self.apply(&ll);
        self.playlist.end();
        Ok(LlOutput { ts, ll })
    }

    /// The LL-HLS playlist.
    pub fn playlist(&self) -> &LlPlaylist {
        &self.playlist
    }

    /// The MPEG-TS segmenter.
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// The fMP4 packager.
    pub fn packager(&self) -> &LlPackager {
        &self.packager
    }

    fn apply(&mut self, events: &[LlEvent]) {
        // Fixed once the first segment is listed (the packager fixes it when that closes).
        self.playlist
            .set_part_target(self.packager.part_target_ms());
        if let Some(secs) = self.segmenter.ll_target_duration_secs() {
            self.playlist.set_target_duration(secs);
        }
        for event in events {
            self.playlist.apply(event);
        }
    }
}
