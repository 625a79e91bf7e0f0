//! The 9-byte FLV file header.

use super::FlvError;

/// Size of the FLV header as written by [`FlvHeader::encode`].
pub const FLV_HEADER_LEN: usize = 9;

/// The FLV file header: which kinds of tags the file announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlvHeader {
    /// The file announces audio tags.
    pub has_audio: bool,
    /// The file announces video tags.
    pub has_video: bool,
}

impl FlvHeader {
    /// Parses a header from the first 9 bytes of a stream and returns it with its data offset
    /// (where the first PreviousTagSize field starts).
    pub fn parse(bytes: &[u8; FLV_HEADER_LEN]) -> Result<(Self, u32), FlvError> {
        let [f, l, v, version, flags, o0, o1, o2, o3] = *bytes;
        if [f, l, v] != *b"FLV" {
            return Err(FlvError::BadSignature { found: [f, l, v] });
        }
        if version != 1 {
            return Err(FlvError::UnsupportedVersion { version });
        }
        let data_offset = u32::from_be_bytes([o0, o1, o2, o3]);
        if (data_offset as usize) < FLV_HEADER_LEN {
            return Err(FlvError::BadDataOffset { data_offset });
        }
        let header = FlvHeader {
            has_audio: flags & 0x04 != 0,
            has_video: flags & 0x01 != 0,
        };
        Ok((header, data_offset))
    }

    /// Encodes the header (data offset 9) without the PreviousTagSize0 that follows it.
    pub fn encode(&self) -> [u8; FLV_HEADER_LEN] {
        let flags = (u8::from(self.has_audio) << 2) | u8::from(self.has_video);
        [b'F', b'L', b'V', 1, flags, 0, 0, 0, FLV_HEADER_LEN as u8]
    }
}
