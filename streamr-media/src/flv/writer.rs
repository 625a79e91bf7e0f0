//! FLV writer: the file header and tags with their PreviousTagSize fields.

use bytes::{BufMut, BytesMut};

use super::header::FlvHeader;
use super::reader::{FlvTag, TAG_HEADER_LEN};
use super::FlvError;

/// Largest body the 24-bit DataSize field can describe.
pub const MAX_TAG_BODY_LEN: usize = 0x00FF_FFFF;

/// Writes FLV: the header with PreviousTagSize0, then each tag followed by its PreviousTagSize.
/// Stateless, so the same tag always encodes to the same bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlvWriter;

impl FlvWriter {
    /// A writer.
    pub fn new() -> Self {
        FlvWriter
    }

    /// The file header followed by PreviousTagSize0: the first 13 bytes of an FLV file.
    pub fn header(&self, header: FlvHeader) -> BytesMut {
        let mut out = BytesMut::with_capacity(13);
        out.put_slice(&header.encode());
        out.put_u32(0);
        out
    }

    /// Appends one tag and its trailing PreviousTagSize to `out`.
    pub fn write_tag(&self, tag: &FlvTag, out: &mut BytesMut) -> Result<(), FlvError> {
        let len = tag.data.len();
        if len > MAX_TAG_BODY_LEN {
            return Err(FlvError::BodyTooLarge { len });
        }
        let [_, s0, s1, s2] = (len as u32).to_be_bytes();
        let [t3, t0, t1, t2] = tag.timestamp.to_be_bytes();
        let [_, i0, i1, i2] = tag.stream_id.to_be_bytes();
        out.reserve(TAG_HEADER_LEN + len + 4);
        out.put_slice(&[tag.tag_type.code(), s0, s1, s2, t0, t1, t2, t3, i0, i1, i2]);
        out.put_slice(&tag.data);
        out.put_u32((TAG_HEADER_LEN + len) as u32);
        Ok(())
    }
}
