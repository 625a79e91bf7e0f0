//! Whole-file FLV→MPEG-TS conversion.

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

/// Converts a complete FLV file into one continuous MPEG-TS, with a PAT/PMT at the start and again
/// before every video keyframe (and whenever a codec configuration changes).
pub fn remux_flv_to_ts(flv: &[u8]) -> Result<Vec<u8>, RemuxError> {
    let mut reader = FlvReader::new();
    reader.push(flv);
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::with_capacity(flv.len() + flv.len() / 8);
    let mut tables_due = true;
    let mut index = 0usize;
    while let Some(tag) = reader.next_tag()? {
        let mux_error = |source| RemuxError::Mux { index, source };
        if let Some(info) = FlvTsMuxer::classify(&tag).map_err(mux_error)? {
            if info.is_keyframe && info.is_coded_frame() || tables_due && info.is_coded_frame() {
                muxer.write_tables(&mut out);
                tables_due = false;
            }
            let outcome = muxer
                .write_classified(&tag, &info, &mut out)
                .map_err(mux_error)?;
            if matches!(outcome, MuxOutcome::ConfigChanged { .. }) {
                tables_due = true;
            }
        }
        index += 1;
    }
    reader.finish()?;
    Ok(out)
}

/// Feeds arbitrary bytes to the muxer as a sequence of tags (for fuzzing): each chunk's first byte
/// picks the tag type, the rest is the body. Returns the number of TS bytes produced, which is
/// always a whole number of packets.
pub fn mux_arbitrary_tags(data: &[u8]) -> usize {
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::new();
    let mut timestamp = 0u32;
    for chunk in data.split(|b| *b == 0xFE) {
        let Some((&selector, body)) = chunk.split_first() else {
            continue;
        };
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
        let _ = muxer.write_tag(&tag, &mut out);
        if selector & 0x80 != 0 {
            muxer.write_tables(&mut out);
        }
    }
    out.len()
}
