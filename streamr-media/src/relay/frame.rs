//! The shared frame: one received audio, video, metadata or timed data message, reference counted
//! and handed to every viewer without copying.

use std::sync::{Mutex, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::flv::tag::{
    classify_audio, classify_multitrack, classify_video, Codec, MediaKind, PacketKind, TagInfo,
};
use crate::flv::{FlvTag, FlvTagType, FlvWriter};

/// What a frame carries. The discriminants are the FLV tag types (equal to the RTMP message types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Audio (FLV tag type 8).
    Audio,
    /// Video (FLV tag type 9).
    Video,
    /// Script data such as `onMetaData` (FLV tag type 18), AMF0 encoded without `@setDataFrame`:
    /// the stream's metadata, which a viewer joining later gets before its first frame (and
    /// node notices such as the origin's [`HlsTiming`](crate::hls::HlsTiming)).
    Metadata,
    /// A timed data message (FLV tag type 18) other than `onMetaData`, such as captions
    /// (`onTextData`, `onCaption`), cue points (`onCuePoint`) or timecodes (`onFI`), AMF0
    /// encoded without `@setDataFrame` (see [`timed_data`]). Relayed live, in order with the
    /// media; never kept as the stream's metadata.
    Data,
}

impl FrameKind {
    /// The FLV tag type (whose code is also the RTMP message type id).
    pub fn flv_tag_type(self) -> FlvTagType {
        match self {
            FrameKind::Audio => FlvTagType::Audio,
            FrameKind::Video => FlvTagType::Video,
            FrameKind::Metadata | FrameKind::Data => FlvTagType::ScriptData,
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

/// Which configuration an audio or video frame carries besides a default track's sequence
/// header: its kind, what it carries and the tracks it is for, by track id (0 for an ordinary
/// packet) and codec. The codec counts too: FFmpeg sends the metadata (colour information) of
/// every video track as an ordinary packet under that track's FourCC. A newer frame with the
/// same key replaces the older one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConfigKey {
    kind: FrameKind,
    packet: PacketKind,
    tracks: Vec<(u8, Codec)>,
}

impl ConfigKey {
    fn of(kind: FrameKind, tag: Option<&TagInfo>, payload: &[u8]) -> Option<Self> {
        let media = match kind {
            FrameKind::Audio => MediaKind::Audio,
            FrameKind::Video => MediaKind::Video,
            FrameKind::Metadata | FrameKind::Data => return None,
        };
        if let Some(tag) = tag {
            return matches!(
                tag.packet,
                PacketKind::MultichannelConfig | PacketKind::Metadata
            )
            .then(|| ConfigKey {
                kind,
                packet: tag.packet,
                tracks: vec![(0, tag.codec)],
            });
        }
        // Sequence start (0) and multichannel configuration or metadata (4) are the only
        // configuration packet types: skip reading the tracks of every coded frame.
        if !matches!(payload.get(1).map(|b| b & 0x0f), Some(0 | 4)) {
            return None;
        }
        let info = classify_multitrack(media, payload).ok().flatten()?;
        info.is_configuration().then_some(ConfigKey {
            kind,
            packet: info.packet,
            tracks: info.tracks,
        })
    }
}

/// One audio, video, metadata or timed data message as received from the publisher.
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
    /// Set when the frame is track configuration a viewer joining later needs again, beside
    /// the sequence headers of the default tracks (see [`ConfigKey`]).
    config_key: Option<ConfigKey>,
    chunked: ChunkCache,
    /// The frame as one HTTP/1.1 chunk holding its FLV tag, and where the tag starts in it.
    flv_chunk: OnceLock<Option<(Bytes, usize)>>,
    /// The chunk in a stream's shared in-memory file, for players sent it with `sendfile`.
    #[cfg(feature = "server")]
    flv_chunk_span: OnceLock<Option<crate::shared_bytes::Span>>,
}

impl Frame {
    /// Builds a frame, classifying audio and video payloads. A payload whose header cannot be
    /// classified is still relayed, as a non-key frame without a [`TagInfo`].
    pub fn new(kind: FrameKind, timestamp: u32, payload: Bytes) -> Self {
        let tag = match kind {
            FrameKind::Audio => classify_audio(&payload).ok(),
            FrameKind::Video => classify_video(&payload).ok(),
            FrameKind::Metadata | FrameKind::Data => None,
        };
        let config_key = ConfigKey::of(kind, tag.as_ref(), &payload);
        Frame {
            kind,
            timestamp,
            payload,
            tag,
            config_key,
            chunked: ChunkCache::default(),
            flv_chunk: OnceLock::new(),
            #[cfg(feature = "server")]
            flv_chunk_span: OnceLock::new(),
        }
    }

    /// Audio, video, metadata or timed data.
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

    /// What this frame configures when it is configuration besides a default track's sequence
    /// header: a multitrack packet's sequence start, multichannel configuration or metadata, or
    /// the default track's audio multichannel configuration or video metadata (such as HDR
    /// colour information). The hub keeps the newest frame of each key for viewers joining later.
    pub(crate) fn config_key(&self) -> Option<&ConfigKey> {
        self.config_key.as_ref()
    }

    /// True for a data message between nodes (`onStreamr…`, such as the origin's
    /// [`HlsTiming`](crate::hls::HlsTiming)), which only relays and the node's own consumers
    /// get (see [`Subscription::set_node_notices`](super::Subscription::set_node_notices)).
    pub fn is_node_notice(&self) -> bool {
        matches!(self.kind, FrameKind::Metadata | FrameKind::Data) && is_node_notice(&self.payload)
    }

    /// True for a coded audio or video frame (not configuration, metadata or a data message).
    pub fn is_coded_media(&self) -> bool {
        match self.kind {
            FrameKind::Metadata | FrameKind::Data => false,
            // An unclassifiable payload is relayed as an ordinary coded frame.
            FrameKind::Audio | FrameKind::Video => {
                self.config_key.is_none() && self.tag.is_none_or(|tag| tag.is_coded_frame())
            }
        }
    }

    /// The frame in wire form for connections chunking with `key`, produced by `encode` on first
    /// use and shared by every later caller with the same key.
    pub fn chunked(&self, key: ChunkingKey, encode: impl FnOnce(&Frame) -> Bytes) -> Bytes {
        self.chunked.get_or_insert(key, || encode(self))
    }

    /// Where the frame's chunked form for `key` ([`Frame::chunked`], which must have been called
    /// with `key` first) is in `store`, the stream's shared store for `key`; appended there by
    /// the first caller, and later callers get that span. `None` when the store cannot hold it
    /// (the caller sends [`Frame::chunked`]'s bytes itself).
    #[cfg(feature = "server")]
    pub(crate) fn chunked_span(
        &self,
        key: ChunkingKey,
        store: &crate::shared_bytes::SharedStore,
    ) -> Option<crate::shared_bytes::Span> {
        self.chunked.span(key, store)
    }

    /// The frame as one FLV tag followed by its PreviousTagSize, built on first use and shared
    /// by every later caller (every HTTP-FLV viewer). `None` when the payload exceeds the 24-bit
    /// tag size field.
    pub fn flv_tag(&self) -> Option<Bytes> {
        let (chunk, start) = self.flv_chunk_parts()?;
        // The chunk ends with CRLF after the tag.
        Some(chunk.slice(*start..chunk.len().saturating_sub(2)))
    }

    /// The frame's FLV tag (with its PreviousTagSize) as one HTTP/1.1 chunk: the size line, the
    /// tag, CRLF. Built once with [`Frame::flv_tag`] (which is a part of it) and shared: an
    /// HTTP-FLV player sent one chunk per frame gets every byte of its body from shared buffers.
    pub fn flv_chunk(&self) -> Option<Bytes> {
        self.flv_chunk_parts().map(|(chunk, _)| chunk.clone())
    }

    fn flv_chunk_parts(&self) -> Option<&(Bytes, usize)> {
        self.flv_chunk
            .get_or_init(|| self.encode_flv_chunk())
            .as_ref()
    }

    /// Where [`Frame::flv_chunk`] is in `store`, appended there by the first caller; `None` when
    /// the store cannot hold it (the caller sends [`Frame::flv_chunk`] itself). A frame is only
    /// ever appended to one store: later callers get the first caller's span whatever store they
    /// pass.
    #[cfg(feature = "server")]
    pub fn flv_chunk_span(
        &self,
        store: &crate::shared_bytes::SharedStore,
    ) -> Option<crate::shared_bytes::Span> {
        self.flv_chunk_span
            .get_or_init(|| store.append(&self.flv_chunk()?))
            .clone()
    }

    fn encode_flv_chunk(&self) -> Option<(Bytes, usize)> {
        use std::fmt::Write as _;
        let tag = FlvTag {
            tag_type: self.kind.flv_tag_type(),
            timestamp: self.timestamp,
            stream_id: 0,
            data: self.payload.clone(),
        };
        // Tag header (11) + payload + PreviousTagSize (4).
        let tag_len = self.payload.len().checked_add(15)?;
        let mut out = BytesMut::with_capacity(tag_len.saturating_add(12));
        // Writing hex digits into a BytesMut cannot fail.
        let _ = write!(out, "{tag_len:x}\r\n");
        let start = out.len();
        FlvWriter::new().write_tag(&tag, &mut out).ok()?;
        if out.len() - start != tag_len {
            return None;
        }
        out.extend_from_slice(b"\r\n");
        Some((out.freeze(), start))
    }
}

/// The span of a frame's bytes in a stream's shared file, set by the first caller.
#[cfg(feature = "server")]
type SpanSlot = OnceLock<Option<crate::shared_bytes::Span>>;

/// A frame's chunked copy for one [`ChunkingKey`], and where it is in the key's shared store.
#[derive(Debug)]
struct ChunkEntry {
    key: ChunkingKey,
    bytes: Bytes,
    #[cfg(feature = "server")]
    span: SpanSlot,
}

impl ChunkEntry {
    fn new(key: ChunkingKey, bytes: Bytes) -> Self {
        ChunkEntry {
            key,
            bytes,
            #[cfg(feature = "server")]
            span: OnceLock::new(),
        }
    }

    #[cfg(feature = "server")]
    fn span(&self, store: &crate::shared_bytes::SharedStore) -> Option<crate::shared_bytes::Span> {
        self.span
            .get_or_init(|| {
                if self.bytes.is_empty() {
                    return None;
                }
                store.append(&self.bytes)
            })
            .clone()
    }
}

/// Chunked copies of a frame, one per [`ChunkingKey`]. Nearly every connection uses the same key,
/// so the first is kept lock-free and the rare others behind a mutex.
#[derive(Debug, Default)]
struct ChunkCache {
    first: OnceLock<ChunkEntry>,
    others: Mutex<Vec<ChunkEntry>>,
}

impl ChunkCache {
    fn lock_others(&self) -> std::sync::MutexGuard<'_, Vec<ChunkEntry>> {
        match self.others.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn get_or_insert(&self, key: ChunkingKey, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut encode = Some(encode);
        let first = self.first.get_or_init(|| {
            let bytes = encode.take().map(|f| f()).unwrap_or_default();
            ChunkEntry::new(key, bytes)
        });
        if first.key == key {
            return first.bytes.clone();
        }
        let mut others = self.lock_others();
        if let Some(entry) = others.iter().find(|entry| entry.key == key) {
            return entry.bytes.clone();
        }
        let bytes = encode.take().map(|f| f()).unwrap_or_default();
        others.push(ChunkEntry::new(key, bytes.clone()));
        bytes
    }

    /// The span of the chunked copy for `key` in `store` (appended by the first caller); `None`
    /// when there is no copy for `key` yet, it is empty, or the store cannot hold it.
    #[cfg(feature = "server")]
    fn span(
        &self,
        key: ChunkingKey,
        store: &crate::shared_bytes::SharedStore,
    ) -> Option<crate::shared_bytes::Span> {
        let first = self.first.get()?;
        if first.key == key {
            return first.span(store);
        }
        let others = self.lock_others();
        others.iter().find(|entry| entry.key == key)?.span(store)
    }
}

/// The start of every data message's name that passes between nodes only.
pub const NODE_NOTICE_PREFIX: &str = "onStreamr";

/// The node notice a relay's pull puts after the last frame of a publish when its upstream
/// says that publish's publisher left (RTMP `NetStream.Play.UnpublishNotify`), as opposed to
/// the pull being lost: the relay's own consumers then end what they cut there, as the
/// upstream's did (see [`Publisher::end_upstream_publish`](super::Publisher::end_upstream_publish)).
pub const UPSTREAM_UNPUBLISHED_NOTICE: &str = "onStreamrUpstreamUnpublished";

/// The payload of [`UPSTREAM_UNPUBLISHED_NOTICE`]: its name alone, as an AMF0 string.
pub(crate) fn upstream_unpublished_notice() -> Bytes {
    let name = UPSTREAM_UNPUBLISHED_NOTICE.as_bytes();
    let mut payload = Vec::with_capacity(3 + name.len());
    payload.push(0x02);
    payload.extend_from_slice(&(name.len() as u16).to_be_bytes());
    payload.extend_from_slice(name);
    Bytes::from(payload)
}

/// Whether a data message's payload is [`UPSTREAM_UNPUBLISHED_NOTICE`].
pub fn is_upstream_unpublished(payload: &[u8]) -> bool {
    data_message_name(payload) == Some(UPSTREAM_UNPUBLISHED_NOTICE.as_bytes())
}

/// Whether a data message's payload is a node notice: its name (the first AMF0 string, after
/// an optional `@setDataFrame`) starts with [`NODE_NOTICE_PREFIX`]. Reads only the names.
pub fn is_node_notice(payload: &[u8]) -> bool {
    data_message_name(payload).is_some_and(|name| name.starts_with(NODE_NOTICE_PREFIX.as_bytes()))
}

/// The payload a node relays, as a [`FrameKind::Data`] frame, for a data message from a
/// publisher (an RTMP data message body or FLV script tag body, AMF0): the message without a
/// leading `@setDataFrame`, which asks a server to keep the message and is not part of it (FLV
/// files and the messages players receive carry the name first). A slice of `payload`, never a
/// copy.
///
/// `None` for a message that is not relayed as timed data: one that does not start with an AMF0
/// string (its name), `onMetaData` (the stream's metadata, relayed as [`FrameKind::Metadata`]),
/// a node notice (a name starting with [`NODE_NOTICE_PREFIX`]: only nodes make those) and a
/// request to the server (a name starting with `@`, such as `@clearDataFrame`).
pub fn timed_data(payload: Bytes) -> Option<Bytes> {
    let name = leading_amf0_string(&payload)?;
    let payload = if name == b"@setDataFrame" {
        let rest = payload.slice(3 + name.len()..);
        leading_amf0_string(&rest)?;
        rest
    } else {
        payload
    };
    let name = leading_amf0_string(&payload)?;
    let relayed = !name.starts_with(b"@")
        && !name.starts_with(NODE_NOTICE_PREFIX.as_bytes())
        && name != b"onMetaData";
    relayed.then_some(payload)
}

/// The name of a data message (its first AMF0 string, after an optional `@setDataFrame`),
/// read without decoding the rest; `None` when the payload does not start with a string.
pub(crate) fn data_message_name(payload: &[u8]) -> Option<&[u8]> {
    let name = leading_amf0_string(payload)?;
    if name != b"@setDataFrame" {
        return Some(name);
    }
    leading_amf0_string(payload.get(3 + name.len()..)?)
}

/// The bytes of the AMF0 short string `payload` starts with.
fn leading_amf0_string(payload: &[u8]) -> Option<&[u8]> {
    let (&marker, rest) = payload.split_first()?;
    if marker != 0x02 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    rest.get(2..2 + len)
}

/// A data message `name` carrying `text`, as a publisher sends it, with or without the
/// `@setDataFrame` that asks the server to keep it (for tests).
#[cfg(test)]
pub(crate) fn test_data_message(set_data_frame: bool, name: &str, text: &str) -> Bytes {
    use crate::amf0::Amf0Value;
    let mut values = Vec::new();
    if set_data_frame {
        values.push(Amf0Value::String("@setDataFrame".into()));
    }
    values.push(Amf0Value::String(name.into()));
    values.push(Amf0Value::Object(vec![(
        "text".into(),
        Amf0Value::String(text.into()),
    )]));
    crate::amf0::encode_all(&values)
        .expect("a test message encodes")
        .freeze()
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
        // The tag is the body of the frame's HTTP chunk, in the same buffer.
        let chunk = frame.flv_chunk().unwrap();
        assert_eq!(&chunk[..4], b"15\r\n");
        assert_eq!(&chunk[4..chunk.len() - 2], &tag[..]);
        assert_eq!(&chunk[chunk.len() - 2..], b"\r\n");
        assert_eq!(chunk[4..].as_ptr(), tag.as_ptr());
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

    #[test]
    fn node_notices_are_told_by_their_name_alone() {
        let named = |names: &[&str]| {
            let mut values: Vec<crate::amf0::Amf0Value> = names
                .iter()
                .map(|name| crate::amf0::Amf0Value::String((*name).to_owned()))
                .collect();
            values.push(crate::amf0::Amf0Value::Object(vec![]));
            crate::amf0::encode_all(&values).unwrap().freeze()
        };
        assert!(is_node_notice(&named(&["onStreamrHlsTiming"])));
        assert!(is_node_notice(&named(&[
            "@setDataFrame",
            "onStreamrAnything"
        ])));
        assert!(!is_node_notice(&named(&["onMetaData"])));
        assert!(!is_node_notice(&named(&["@setDataFrame", "onMetaData"])));
        assert!(!is_node_notice(&named(&[
            "onCuePoint",
            "onStreamrHlsTiming"
        ])));
        assert!(!is_node_notice(b"\x02\x00\x20onStreamr"));
        assert!(!is_node_notice(&[]));
        let timing = crate::hls::HlsTiming {
            part_target_ms: None,
            target_duration_secs: 2,
        };
        let frame = Frame::new(FrameKind::Metadata, 0, timing.encode());
        assert!(frame.is_node_notice());
        // Audio or video is never one, whatever its bytes.
        let frame = Frame::new(FrameKind::Video, 0, timing.encode());
        assert!(!frame.is_node_notice());
    }

    fn encoded(values: &[crate::amf0::Amf0Value]) -> Bytes {
        crate::amf0::encode_all(values).unwrap().freeze()
    }

    use super::test_data_message as data_message;

    #[test]
    fn timed_data_is_relayed_without_set_data_frame_and_never_as_metadata_or_a_notice() {
        for name in [
            "onTextData",
            "onCuePoint",
            "onCaption",
            "onFI",
            "onStreamData",
        ] {
            let plain = data_message(false, name, "hello");
            let relayed = timed_data(plain.clone()).expect("relayed");
            assert_eq!(relayed, plain, "{name}");
            assert_eq!(relayed.as_ptr(), plain.as_ptr(), "{name}: not copied");
            let wrapped = timed_data(data_message(true, name, "hello"));
            assert_eq!(wrapped, Some(plain), "{name}: @setDataFrame stripped");
        }
        for (set_data_frame, name) in [
            (false, "onMetaData"),
            (true, "onMetaData"),
            (false, "onStreamrHlsTiming"),
            (false, "onStreamr"),
            (true, "onStreamrAnything"),
            (false, "@clearDataFrame"),
            (true, "@setDataFrame"),
        ] {
            let message = data_message(set_data_frame, name, "x");
            assert_eq!(timed_data(message), None, "{set_data_frame} {name}");
        }
        assert_eq!(timed_data(encoded(&[])), None);
        assert_eq!(
            timed_data(encoded(&[crate::amf0::Amf0Value::Number(1.0)])),
            None
        );
        let bare = encoded(&[crate::amf0::Amf0Value::String("@setDataFrame".into())]);
        assert_eq!(timed_data(bare), None);
        // A timed data frame carrying a notice is one, whatever its kind.
        let notice = Frame::new(FrameKind::Data, 0, data_message(false, "onStreamrX", ""));
        assert!(notice.is_node_notice());
        assert!(!notice.is_coded_media());
        assert_eq!(notice.kind().flv_tag_type(), FlvTagType::ScriptData);
    }

    proptest::proptest! {
        #[test]
        fn timed_data_is_the_message_after_any_set_data_frame(
            name in "[a-zA-Z|][a-zA-Z0-9_|]{0,20}",
            text in ".{0,40}",
            set_data_frame in proptest::prelude::any::<bool>(),
        ) {
            let relayed = timed_data(data_message(set_data_frame, &name, &text));
            let kept = !name.starts_with(NODE_NOTICE_PREFIX) && name != "onMetaData";
            proptest::prop_assert_eq!(relayed, kept.then(|| data_message(false, &name, &text)));
        }

        #[test]
        fn timed_data_of_any_payload_is_a_named_tail_of_it(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
        ) {
            let payload = Bytes::from(payload);
            if let Some(relayed) = timed_data(payload.clone()) {
                proptest::prop_assert!(payload.ends_with(&relayed));
                let name = leading_amf0_string(&relayed);
                proptest::prop_assert!(name.is_some());
                proptest::prop_assert!(!is_node_notice(&relayed));
                proptest::prop_assert!(!name.is_some_and(|name| name.starts_with(b"@")));
            }
        }

        #[test]
        fn any_payload_is_told_without_a_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)) {
            let notice = is_node_notice(&payload);
            // A notice names itself within its first two strings.
            proptest::prop_assert!(!notice || payload.windows(9).any(|w| w == NODE_NOTICE_PREFIX.as_bytes()));
        }
    }
}
