//! Whole-file FLV→MPEG-TS conversion.

use bytes::Bytes;
use thiserror::Error;

use crate::flv::{FlvError, FlvReader, FlvTag, FlvTagType};

use super::{FlvTsMuxer, MuxOutcome, TsError};

/// Why a whole FLV file could not be remuxed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RemuxError {
    /// The FLV container was malformed.
    #[error("reading FLV: {0}")]
    Flv(#[from] FlvError),
    /// A tag could not be muxed.
    #[error("muxing tag {index}: {source}")]
    Mux {
        /// Index of the tag in the file (0-based).
        index: usize,
        /// What went wrong.
        source: TsError,
    },
}

/// Streaming FLV→MPEG-TS conversion into one continuous transport stream, with a PAT/PMT at the
/// start and again before every video keyframe (and after a codec configuration changes). Push
/// FLV bytes in any pieces; TS packets are appended to the caller's buffer.
///
/// ```
/// use streamr_media::ts::FlvToTs;
///
/// let mut remux = FlvToTs::new();
/// let mut ts = Vec::new();
/// remux.push(b"FLV\x01\x05\0\0\0\x09\0\0\0\0", &mut ts).unwrap();
/// remux.finish().unwrap();
/// assert!(ts.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct FlvToTs {
    reader: FlvReader,
    muxer: FlvTsMuxer,
    tables_written: bool,
    tables_due: bool,
    index: usize,
}

impl FlvToTs {
    /// A converter expecting an FLV header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds FLV bytes and appends the packets of every tag they complete to `out`. A tag that
    /// cannot be muxed is an error naming its index; the FLV reader's errors name byte offsets.
    pub fn push(&mut self, flv: &[u8], out: &mut Vec<u8>) -> Result<(), RemuxError> {
        self.reader.push(flv);
        self.mux(out, usize::MAX).map(|_| ())
    }

    /// Queues FLV bytes without copying them (when no partial tag is buffered, the tags' bodies
    /// are slices of `flv`) and muxes nothing yet: [`mux`](Self::mux) writes their packets. For a
    /// whole file read or mapped into memory, muxed in bounded pieces.
    ///
    /// ```
    /// use streamr_media::ts::FlvToTs;
    ///
    /// let mut remux = FlvToTs::new();
    /// remux.push_bytes(bytes::Bytes::from_static(b"FLV\x01\x05\0\0\0\x09\0\0\0\0"));
    /// let mut ts = Vec::new();
    /// while remux.mux(&mut ts, 64 * 1024).unwrap() {
    ///     // write `ts` out, then reuse the buffer
    ///     ts.clear();
    /// }
    /// remux.finish().unwrap();
    /// ```
    pub fn push_bytes(&mut self, flv: Bytes) {
        self.reader.push_bytes(flv);
    }

    /// Muxes queued tags, appending their packets to `out`, until this call appended at least
    /// `limit` bytes or no complete tag is left. Returns true when it stopped at the limit (more
    /// tags may be queued), false when every complete tag was muxed. The output does not depend
    /// on the limit: muxing in pieces concatenates to the same bytes.
    pub fn mux(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<bool, RemuxError> {
        let start = out.len();
        while out.len() - start < limit {
            let Some(tag) = self.reader.next_tag()? else {
                return Ok(false);
            };
            self.mux_tag(&tag, out)?;
        }
        Ok(true)
    }

    fn mux_tag(&mut self, tag: &FlvTag, out: &mut Vec<u8>) -> Result<(), RemuxError> {
        let index = self.index;
        let mux_error = |source| RemuxError::Mux { index, source };
        if let Some(info) = FlvTsMuxer::classify(tag).map_err(mux_error)? {
            let due = !self.tables_written || self.tables_due || info.is_keyframe;
            if info.is_coded_frame() && due {
                self.muxer.write_tables(out);
                self.tables_written = true;
                self.tables_due = false;
            }
            let outcome = self
                .muxer
                .write_classified(tag, &info, out)
                .map_err(mux_error)?;
            if matches!(outcome, MuxOutcome::ConfigChanged { .. }) {
                self.tables_due = true;
            }
        }
        self.index += 1;
        Ok(())
    }

    /// Input bytes consumed so far (the FLV reader's stream position).
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// Declares the end of the input: fails when it stopped inside a tag.
    pub fn finish(&self) -> Result<(), RemuxError> {
        Ok(self.reader.finish()?)
    }
}

/// Converts a complete in-memory FLV file with [`FlvToTs`].
pub fn remux_flv_to_ts(flv: &[u8]) -> Result<Vec<u8>, RemuxError> {
    let mut remux = FlvToTs::new();
    let mut out = Vec::with_capacity(flv.len() + flv.len() / 8);
    remux.push(flv, &mut out)?;
    remux.finish()?;
    Ok(out)
}

/// Reads arbitrary bytes as a sequence of tags (for fuzzing): chunks split at 0xFE, each
/// chunk's first byte (the selector, also returned) picking the tag type and adding to the
/// timestamp, the rest the body.
pub fn arbitrary_tags(data: &[u8]) -> impl Iterator<Item = (u8, FlvTag)> + '_ {
    let mut timestamp = 0u32;
    data.split(|b| *b == 0xFE).filter_map(move |chunk| {
        let (&selector, body) = chunk.split_first()?;
        let tag_type = match selector % 3 {
            0 => FlvTagType::Audio,
            1 => FlvTagType::Video,
            _ => FlvTagType::ScriptData,
        };
        timestamp = timestamp.wrapping_add(u32::from(selector));
        let tag = FlvTag {
            tag_type,
            timestamp,
            stream_id: 0,
            data: bytes::Bytes::copy_from_slice(body),
        };
        Some((selector, tag))
    })
}

/// Feeds arbitrary bytes to the muxer as a sequence of tags (for fuzzing, read as
/// [`arbitrary_tags`]; a selector with its top bit set also writes the tables). Returns the
/// number of TS bytes produced, which is always a whole number of packets.
pub fn mux_arbitrary_tags(data: &[u8]) -> usize {
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::new();
    for (selector, tag) in arbitrary_tags(data) {
        let _ = muxer.write_tag(&tag, &mut out);
        if selector & 0x80 != 0 {
            muxer.write_tables(&mut out);
        }
    }
    out.len()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const FLV: &[u8] = include_bytes!("../../tests/data/media/av_bframes.flv");

    fn mux_queued(flv: Bytes, limit: usize) -> Vec<u8> {
        let mut remux = FlvToTs::new();
        remux.push_bytes(flv);
        let mut all = Vec::new();
        let mut piece = Vec::new();
        while remux.mux(&mut piece, limit).unwrap() {
            assert!(piece.len() >= limit);
            all.extend_from_slice(&piece);
            piece.clear();
        }
        all.extend_from_slice(&piece);
        remux.finish().unwrap();
        assert_eq!(remux.position(), FLV.len() as u64);
        all
    }

    #[test]
    fn muxing_queued_bytes_in_pieces_gives_the_same_stream() {
        let whole = remux_flv_to_ts(FLV).unwrap();
        assert!(whole.len() > FLV.len());
        for limit in [1, 188 * 3, 64 * 1024, usize::MAX] {
            assert_eq!(
                mux_queued(Bytes::from_static(FLV), limit),
                whole,
                "limit {limit}"
            );
        }
        let mut pieces = FlvToTs::new();
        let mut out = Vec::new();
        for chunk in FLV.chunks(1000) {
            pieces.push(chunk, &mut out).unwrap();
        }
        pieces.finish().unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn queued_bytes_after_a_partial_tag_are_appended() {
        let whole = remux_flv_to_ts(FLV).unwrap();
        let mut remux = FlvToTs::new();
        let mut out = Vec::new();
        remux.push(&FLV[..1000], &mut out).unwrap();
        remux.push_bytes(Bytes::from_static(&FLV[1000..]));
        while remux.mux(&mut out, usize::MAX).unwrap() {}
        remux.finish().unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn a_truncated_queued_file_fails_at_finish() {
        let mut remux = FlvToTs::new();
        remux.push_bytes(Bytes::from_static(&FLV[..FLV.len() - 10]));
        let mut out = Vec::new();
        // Not clearing `out` between calls still makes progress.
        while remux.mux(&mut out, 4096).unwrap() {}
        assert!(matches!(
            remux.finish(),
            Err(RemuxError::Flv(FlvError::Truncated { .. }))
        ));
    }
}
