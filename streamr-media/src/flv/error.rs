//! Errors of the FLV reader and writer.

use thiserror::Error;

/// Why FLV bytes could not be read or written. Reader errors name the absolute byte offset in the
/// stream where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The stream does not start with the `FLV` signature.
    #[error("not an FLV stream: signature at offset 0 is {found:02x?}, expected \"FLV\"")]
    BadSignature {
        /// The three bytes found instead.
        found: [u8; 3],
    },
    /// The FLV version byte is not 1.
    #[error("unsupported FLV version {version} at offset 3")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The header's data offset is smaller than the 9-byte header itself.
    #[error("FLV header data offset {data_offset} at offset 5 is smaller than the 9-byte header")]
    BadDataOffset {
        /// The data offset found.
        data_offset: u32,
    },
    /// A PreviousTagSize field does not match the size of the tag before it.
    #[error("previous tag size at offset {offset} is {found}, expected {expected}")]
    PreviousTagSizeMismatch {
        /// Byte offset of the PreviousTagSize field.
        offset: u64,
        /// The size of the tag that precedes it (11 + body length, 0 before the first tag).
        expected: u32,
        /// The value stored in the field.
        found: u32,
    },
    /// A tag header names a tag type other than audio (8), video (9) or script data (18).
    #[error("unknown FLV tag type {tag_type} at offset {offset}")]
    UnknownTagType {
        /// The tag type byte (filter bit cleared).
        tag_type: u8,
        /// Byte offset of the tag header.
        offset: u64,
    },
    /// A tag has the filter (encryption) bit set; encrypted FLV is not supported.
    #[error("encrypted FLV tag (filter bit set) at offset {offset}")]
    EncryptedTag {
        /// Byte offset of the tag header.
        offset: u64,
    },
    /// The stream ended in the middle of a header, a tag or a PreviousTagSize field.
    #[error("FLV stream truncated at offset {offset}: {missing} more bytes needed")]
    Truncated {
        /// Byte offset where the incomplete element starts.
        offset: u64,
        /// How many more bytes the element needed.
        missing: u64,
    },
    /// A tag body is too large for the 24-bit FLV DataSize field.
    #[error("FLV tag body of {len} bytes exceeds the 16777215-byte limit")]
    BodyTooLarge {
        /// The body length.
        len: usize,
    },
}
