//! Incremental, sans-IO FLV reader: push bytes in, pull tags out.

use bytes::{Buf, Bytes, BytesMut};

use super::header::{FlvHeader, FLV_HEADER_LEN};
use super::FlvError;
use crate::amf0::{self, Amf0Error, Amf0Value};

/// Size of an FLV tag header (type, data size, timestamp, stream id).
pub const TAG_HEADER_LEN: usize = 11;
/// Size of a PreviousTagSize field.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;

/// The kind of an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlvTagType {
    /// Audio data (tag type 8).
    Audio,
    /// Video data (tag type 9).
    Video,
    /// AMF0 script data such as `onMetaData` (tag type 18).
    ScriptData,
}

impl FlvTagType {
    /// The tag type byte written in the FLV tag header.
    pub fn code(self) -> u8 {
        match self {
            FlvTagType::Audio => 8,
            FlvTagType::Video => 9,
            FlvTagType::ScriptData => 18,
        }
    }

    /// The tag type for a tag type byte, if it is one FLV defines.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            8 => Some(FlvTagType::Audio),
            9 => Some(FlvTagType::Video),
            18 => Some(FlvTagType::ScriptData),
            _ => None,
        }
    }
}

/// One FLV tag: its type, timestamp and body. The body is shared, never copied per consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlvTag {
    /// Audio, video or script data.
    pub tag_type: FlvTagType,
    /// Decode timestamp in milliseconds (the 24-bit field plus its extension byte).
    pub timestamp: u32,
    /// The stream id field (always 0 in files).
    pub stream_id: u32,
    /// The tag body (for audio and video: exactly an RTMP message payload).
    pub data: Bytes,
}

impl FlvTag {
    /// Decodes a script data tag's AMF0 values (for `onMetaData`: the name, then an object or
    /// ECMA array). `None` for audio and video tags.
    pub fn script_values(&self) -> Option<Result<Vec<Amf0Value>, Amf0Error>> {
        (self.tag_type == FlvTagType::ScriptData).then(|| amf0::decode_all(&self.data))
    }

    /// The `onMetaData` properties (width, height, framerate, codecs...) when this is a
    /// well-formed `onMetaData` script tag.
    pub fn on_metadata(&self) -> Option<Amf0Value> {
        let values = self.script_values()?.ok()?;
        let mut values = values.into_iter();
        if values.next()?.as_str()? != "onMetaData" {
            return None;
        }
        values.next()
    }
}

/// The reader's unread bytes: an owned buffer that pushed slices are appended to, or a shared
/// buffer handed over whole by [`FlvReader::push_bytes`], whose tag bodies are split off without
/// copying.
#[derive(Debug)]
enum Buffer {
    Owned(BytesMut),
    Shared(Bytes),
}

impl Buffer {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buffer::Owned(buf) => buf,
            Buffer::Shared(buf) => buf,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn get(&self, range: std::ops::RangeTo<usize>) -> Option<&[u8]> {
        self.as_slice().get(range)
    }

    fn advance(&mut self, n: usize) {
        match self {
            Buffer::Owned(buf) => buf.advance(n),
            Buffer::Shared(buf) => buf.advance(n),
        }
    }

    /// The first `n` bytes (at most `len()`), removed from the buffer.
    fn split_to(&mut self, n: usize) -> Bytes {
        match self {
            Buffer::Owned(buf) => buf.split_to(n).freeze(),
            Buffer::Shared(buf) => buf.split_to(n),
        }
    }

    /// Makes room for `additional` more bytes in an owned buffer (a shared one grows only by
    /// becoming owned when bytes are appended).
    fn reserve(&mut self, additional: usize) {
        if let Buffer::Owned(buf) = self {
            buf.reserve(additional);
        }
    }

    fn extend_from_slice(&mut self, data: &[u8]) {
        match self {
            Buffer::Owned(buf) => buf.extend_from_slice(data),
            Buffer::Shared(shared) => {
                let mut owned = BytesMut::with_capacity(shared.len() + data.len());
                owned.extend_from_slice(shared);
                owned.extend_from_slice(data);
                *self = Buffer::Owned(owned);
            }
        }
    }

    fn push_bytes(&mut self, data: Bytes) {
        if self.len() == 0 {
            *self = Buffer::Shared(data);
        } else {
            self.extend_from_slice(&data);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Header,
    Skip(u64),
    PreviousTagSize(u32),
    Tag,
}

/// An incremental FLV demuxer. Feed it bytes with [`push`](Self::push) as they arrive and take
/// complete tags with [`next_tag`](Self::next_tag), which returns `Ok(None)` while the next tag is
/// incomplete.
///
/// ```
/// use streamr_media::flv::{FlvReader, FlvWriter, FlvHeader, FlvTag, FlvTagType};
///
/// let mut file = FlvWriter::new().header(FlvHeader { has_audio: true, has_video: false });
/// let tag = FlvTag { tag_type: FlvTagType::Audio, timestamp: 40, stream_id: 0, data: vec![0xAF, 1, 2].into() };
/// FlvWriter::new().write_tag(&tag, &mut file).unwrap();
///
/// let mut reader = FlvReader::new();
/// reader.push(&file);
/// assert_eq!(reader.next_tag().unwrap(), Some(tag));
/// assert_eq!(reader.next_tag().unwrap(), None);
/// reader.finish().unwrap();
/// ```
#[derive(Debug)]
pub struct FlvReader {
    buf: Buffer,
    /// Stream offset of `buf[0]`.
    offset: u64,
    expect: Expect,
    header: Option<FlvHeader>,
    check_previous_tag_size: bool,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    /// A reader that expects an FLV header first and checks every PreviousTagSize field.
    pub fn new() -> Self {
        FlvReader {
            buf: Buffer::Owned(BytesMut::new()),
            offset: 0,
            expect: Expect::Header,
            header: None,
            check_previous_tag_size: true,
        }
    }

    /// A reader for a stream of bare tags (PreviousTagSize0 first, no file header), such as an
    /// HTTP-FLV body after its header was consumed elsewhere.
    pub fn without_header() -> Self {
        FlvReader {
            expect: Expect::PreviousTagSize(0),
            ..Self::new()
        }
    }

    /// Skips the PreviousTagSize checks, for files written by muxers that get them wrong.
    pub fn lenient_previous_tag_size(mut self) -> Self {
        self.check_previous_tag_size = false;
        self
    }

    /// Appends received bytes (copied into the reader's buffer).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Appends received bytes without copying them when nothing is buffered (a whole file read or
    /// mapped into memory): the tags' bodies are then slices of `data`. With bytes still
    /// buffered, `data` is copied as by [`push`](Self::push).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use streamr_media::flv::{FlvReader, FlvWriter, FlvHeader, FlvTag, FlvTagType};
    ///
    /// let mut file = FlvWriter::new().header(FlvHeader { has_audio: true, has_video: false });
    /// let tag = FlvTag { tag_type: FlvTagType::Audio, timestamp: 0, stream_id: 0, data: vec![0xAF, 1, 2].into() };
    /// FlvWriter::new().write_tag(&tag, &mut file).unwrap();
    /// let file = Bytes::from(file);
    ///
    /// let mut reader = FlvReader::new();
    /// reader.push_bytes(file.clone());
    /// let read = reader.next_tag().unwrap().unwrap();
    /// assert_eq!(read, tag);
    /// // The body points into `file`: no copy was made.
    /// assert!(file.as_ptr_range().contains(&read.data.as_ptr()));
    /// ```
    pub fn push_bytes(&mut self, data: Bytes) {
        self.buf.push_bytes(data);
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Absolute stream offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Returns the next complete tag, `Ok(None)` when more bytes are needed, or an error naming
    /// the byte offset of the malformed element. After an error the reader keeps returning it.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        loop {
            match self.expect {
                Expect::Header => {
                    let Some(bytes) = self.buf.get(..FLV_HEADER_LEN) else {
                        return Ok(None);
                    };
                    let mut fixed = [0u8; FLV_HEADER_LEN];
                    fixed.copy_from_slice(bytes);
                    let (header, data_offset) = FlvHeader::parse(&fixed)?;
                    self.header = Some(header);
                    self.consume(FLV_HEADER_LEN);
                    let extra = u64::from(data_offset).saturating_sub(FLV_HEADER_LEN as u64);
                    self.expect = Expect::Skip(extra);
                }
                Expect::Skip(remaining) => {
                    let available = self.buf.len() as u64;
                    let take = remaining.min(available);
                    // `take` is at most buf.len(), which fits in usize.
                    self.consume(usize::try_from(take).unwrap_or(self.buf.len()));
                    if take < remaining {
                        self.expect = Expect::Skip(remaining - take);
                        return Ok(None);
                    }
                    self.expect = Expect::PreviousTagSize(0);
                }
                Expect::PreviousTagSize(expected) => {
                    let Some(bytes) = self.buf.get(..PREVIOUS_TAG_SIZE_LEN) else {
                        return Ok(None);
                    };
                    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    if self.check_previous_tag_size && found != expected {
                        return Err(FlvError::PreviousTagSizeMismatch {
                            offset: self.offset,
                            expected,
                            found,
                        });
                    }
                    self.consume(PREVIOUS_TAG_SIZE_LEN);
                    self.expect = Expect::Tag;
                }
                Expect::Tag => return self.read_tag(),
            }
        }
    }

    fn read_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        let Some(h) = self.buf.get(..TAG_HEADER_LEN) else {
            return Ok(None);
        };
        let [type_byte, s0, s1, s2, t0, t1, t2, t3, i0, i1, i2] =
            <[u8; TAG_HEADER_LEN]>::try_from(h).unwrap_or([0; TAG_HEADER_LEN]);
        if type_byte & 0x20 != 0 {
            return Err(FlvError::EncryptedTag {
                offset: self.offset,
            });
        }
        let code = type_byte & 0x1f;
        let tag_type = FlvTagType::from_code(code).ok_or(FlvError::UnknownTagType {
            tag_type: code,
            offset: self.offset,
        })?;
        let body_len = u32::from_be_bytes([0, s0, s1, s2]) as usize;
        let total = TAG_HEADER_LEN + body_len;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let timestamp = u32::from_be_bytes([t3, t0, t1, t2]);
        let stream_id = u32::from_be_bytes([0, i0, i1, i2]);
        self.consume(TAG_HEADER_LEN);
        let data = self.buf.split_to(body_len);
        self.offset += body_len as u64;
        self.expect = Expect::PreviousTagSize(total as u32);
        Ok(Some(FlvTag {
            tag_type,
            timestamp,
            stream_id,
            data,
        }))
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    /// Declares the end of the stream: succeeds when no partial element is left over. A stream
    /// may end after a tag's trailing PreviousTagSize or right after the tag itself.
    pub fn finish(&self) -> Result<(), FlvError> {
        let have = self.buf.len() as u64;
        let needed = match self.expect {
            Expect::Header => FLV_HEADER_LEN as u64,
            Expect::Skip(n) => n,
            Expect::PreviousTagSize(_) if have == 0 && self.header.is_some() => return Ok(()),
            Expect::PreviousTagSize(_) => PREVIOUS_TAG_SIZE_LEN as u64,
            Expect::Tag if have == 0 => return Ok(()),
            Expect::Tag => match self.buf.as_slice().get(1..4) {
                Some(s) => {
                    (TAG_HEADER_LEN as u64) + u64::from(u32::from_be_bytes([0, s[0], s[1], s[2]]))
                }
                None => TAG_HEADER_LEN as u64,
            },
        };
        Err(FlvError::Truncated {
            offset: self.offset,
            missing: needed.saturating_sub(have).max(1),
        })
    }

    /// Reads a complete in-memory FLV file.
    pub fn read_all(bytes: &[u8]) -> Result<(FlvHeader, Vec<FlvTag>), FlvError> {
        let mut reader = FlvReader::new();
        reader.push(bytes);
        let mut tags = Vec::new();
        while let Some(tag) = reader.next_tag()? {
            tags.push(tag);
        }
        reader.finish()?;
        let header = reader.header.unwrap_or_default();
        Ok((header, tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLV: &[u8] = include_bytes!("../../tests/data/media/av_bframes.flv");

    fn drain(reader: &mut FlvReader) -> Vec<FlvTag> {
        let mut tags = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            tags.push(tag);
        }
        tags
    }

    #[test]
    fn shared_bytes_give_the_same_tags_without_copying_bodies() {
        let (_, expected) = FlvReader::read_all(FLV).unwrap();
        let file = Bytes::from_static(FLV);
        let mut reader = FlvReader::new();
        reader.push_bytes(file.clone());
        let tags = drain(&mut reader);
        reader.finish().unwrap();
        assert_eq!(tags, expected);
        let range = file.as_ptr_range();
        assert!(tags
            .iter()
            .filter(|tag| !tag.data.is_empty())
            .all(|tag| range.contains(&tag.data.as_ptr())));
    }

    #[test]
    fn slices_and_shared_bytes_mix_in_any_order() {
        let (_, expected) = FlvReader::read_all(FLV).unwrap();
        let mut reader = FlvReader::new();
        let mut tags = Vec::new();
        // Shared bytes ending inside a tag, then a slice, then shared bytes again once the
        // buffer was emptied, then shared bytes appended to a partial tag.
        reader.push_bytes(Bytes::from_static(&FLV[..5000]));
        tags.extend(drain(&mut reader));
        reader.push(&FLV[5000..60_000]);
        tags.extend(drain(&mut reader));
        reader.push_bytes(Bytes::from_static(&FLV[60_000..100_000]));
        tags.extend(drain(&mut reader));
        reader.push_bytes(Bytes::from_static(&FLV[100_000..]));
        tags.extend(drain(&mut reader));
        reader.finish().unwrap();
        assert_eq!(tags, expected);
    }
}
