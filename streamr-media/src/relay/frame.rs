//! The shared frame: one received audio, video or metadata message, reference counted and handed
//! to every viewer without copying.

use std::sync::{Mutex, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::flv::tag::{classify_audio, classify_video, TagInfo};
use crate::flv::{FlvTag, FlvTagType, FlvWriter};

/// What a frame carries. The discriminants are the FLV tag types (equal to the RTMP message types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Audio (FLV tag type 8).
    Audio,
    /// Video (FLV tag type 9).
    Video,
    /// Script data such as `onMetaData` (FLV tag type 18), AMF0 encoded without `@setDataFrame`.
    Metadata,
}

impl FrameKind {
    /// The FLV tag type (whose code is also the RTMP message type id).
    pub fn flv_tag_type(self) -> FlvTagType {
        match self {
            FrameKind::Audio => FlvTagType::Audio,
            FrameKind::Video => FlvTagType::Video,
            FrameKind::Metadata => FlvTagType::ScriptData,
        }
    }
}

/// How a frame is chunked for one connection: chunk size and message stream id.
///
/// Every connection with the same key shares one chunked copy of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkingKey {
    /// The outgoing RTMP chunk size.
    pub chunk_size: u32,
    /// The message stream id the frame is sent on.
    pub message_stream_id: u32,
}

/// One audio, video or metadata message as received from the publisher.
///
/// Frames are created once per received message and shared as `Arc<Frame>`; the payload is a
/// reference-counted [`Bytes`], and the chunked wire form is computed at most once per
/// [`ChunkingKey`] and shared too.
#[derive(Debug)]
pub struct Frame {
    kind: FrameKind,
    timestamp: u32,
    payload: Bytes,
    tag: Option<TagInfo>,
    chunked: ChunkCache,
    flv_tag: OnceLock<Option<Bytes>>,
}

impl Frame {
    /// Builds a frame, classifying audio and video payloads. A payload whose header cannot be
    /// classified is still relayed, as a non-key frame without a [`TagInfo`].
    pub fn new(kind: FrameKind, timestamp: u32, payload: Bytes) -> Self {
        let tag = match kind {
            FrameKind::Audio => classify_audio(&payload).ok(),
            FrameKind::Video => classify_video(&payload).ok(),
            FrameKind::Metadata => None,
        };
        Frame {
            kind,
            timestamp,
            payload,
            tag,
            chunked: ChunkCache::default(),
            flv_tag: OnceLock::new(),
        }
    }

    /// Audio, video or metadata.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// Timestamp in milliseconds (decode time), rebased by the hub so it keeps increasing across
    /// republishes of the same stream.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The message payload, equal to an FLV tag body.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The classification of an audio or video payload, when its header was readable.
    pub fn tag(&self) -> Option<&TagInfo> {
        self.tag.as_ref()
    }

    /// True for a video keyframe carrying a coded picture (a decoder can start here).
    pub fn is_video_keyframe(&self) -> bool {
        self.kind == FrameKind::Video
            && self
                .tag
                .is_some_and(|tag| tag.is_keyframe && tag.is_coded_frame())
    }

    /// True for an audio or video sequence header (decoder configuration).
    pub fn is_sequence_header(&self) -> bool {
        self.tag.is_some_and(|tag| tag.is_sequence_header())
    }

    /// True for a coded audio or video frame (not configuration, metadata or a command).
    pub fn is_coded_media(&self) -> bool {
        match self.kind {
            FrameKind::Metadata => false,
            // An unclassifiable payload is relayed as an ordinary coded frame.
            FrameKind::Audio | FrameKind::Video => self.tag.is_none_or(|tag| tag.is_coded_frame()),
        }
    }

    /// The frame in wire form for connections chunking with `key`, produced by `encode` on first
    /// use and shared by every later caller with the same key.
    pub fn chunked(&self, key: ChunkingKey, encode: impl FnOnce(&Frame) -> Bytes) -> Bytes {
        self.chunked.get_or_insert(key, || encode(self))
    }

    /// The frame as one FLV tag followed by its PreviousTagSize, built on first use and shared
    /// by every later caller (every HTTP-FLV viewer). `None` when the payload exceeds the 24-bit
    /// tag size field.
    pub fn flv_tag(&self) -> Option<Bytes> {
        self.flv_tag.get_or_init(|| self.encode_flv_tag()).clone()
    }

    fn encode_flv_tag(&self) -> Option<Bytes> {
        let tag = FlvTag {
            tag_type: self.kind.flv_tag_type(),
            timestamp: self.timestamp,
            stream_id: 0,
            data: self.payload.clone(),
        };
        let mut out = BytesMut::new();
        FlvWriter::new().write_tag(&tag, &mut out).ok()?;
        Some(out.freeze())
    }
}

/// Chunked copies of a frame, one per [`ChunkingKey`]. Nearly every connection uses the same key,
/// so the first is kept lock-free and the rare others behind a mutex.
#[derive(Debug, Default)]
struct ChunkCache {
    first: OnceLock<(ChunkingKey, Bytes)>,
    others: Mutex<Vec<(ChunkingKey, Bytes)>>,
}

impl ChunkCache {
    fn get_or_insert(&self, key: ChunkingKey, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut encode = Some(encode);
        let (first_key, first_bytes) = self.first.get_or_init(|| {
            let bytes = encode.take().map(|f| f()).unwrap_or_default();
            (key, bytes)
        });
        if *first_key == key {
            return first_bytes.clone();
        }
        let mut others = match self.others.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, bytes)) = others.iter().find(|(k, _)| *k == key) {
            return bytes.clone();
        }
        let bytes = encode.take().map(|f| f()).unwrap_or_default();
        others.push((key, bytes.clone()));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn avc_keyframe_is_classified() {
        let frame = Frame::new(
            FrameKind::Video,
            40,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 0xAA]),
        );
        assert!(frame.is_video_keyframe());
        assert!(frame.is_coded_media());
        assert!(!frame.is_sequence_header());
    }

    #[test]
    fn unclassifiable_video_is_relayed_as_inter_frame() {
        let frame = Frame::new(FrameKind::Video, 0, Bytes::from_static(&[0x17]));
        assert!(frame.tag().is_none());
        assert!(!frame.is_video_keyframe());
        assert!(frame.is_coded_media());
    }

    #[test]
    fn flv_tag_is_built_once_and_shared() {
        let frame = Frame::new(
            FrameKind::Video,
            0x0102_0304,
            Bytes::from_static(&[0x27, 1, 0, 0, 0, 0xAA]),
        );
        let tag = frame.flv_tag().unwrap();
        assert_eq!(
            &tag[..],
            [9, 0, 0, 6, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0x27, 1, 0, 0, 0, 0xAA, 0, 0, 0, 17]
        );
        assert_eq!(frame.flv_tag().unwrap().as_ptr(), tag.as_ptr());
    }

    #[test]
    fn chunked_form_is_encoded_once_per_key() {
        let frame = Frame::new(FrameKind::Audio, 0, Bytes::from_static(&[0xAF, 1, 2]));
        let calls = AtomicUsize::new(0);
        let encode = |f: &Frame| {
            calls.fetch_add(1, Ordering::Relaxed);
            f.payload().clone()
        };
        let a = ChunkingKey {
            chunk_size: 4096,
            message_stream_id: 1,
        };
        let b = ChunkingKey {
            chunk_size: 128,
            message_stream_id: 1,
        };
        let first = frame.chunked(a, encode);
        let again = frame.chunked(a, encode);
        assert_eq!(first.as_ptr(), again.as_ptr(), "same shared buffer");
        frame.chunked(b, encode);
        frame.chunked(b, encode);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
