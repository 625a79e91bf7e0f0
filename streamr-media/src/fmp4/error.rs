//! Errors of the fMP4 muxer and box reader.

use thiserror::Error;

/// Why an fMP4 init segment or fragment could not be built, or a box could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    /// A box grew past the 32-bit size field (a fragment of more than 4 GiB).
    #[error("box `{fourcc}` of {len} bytes does not fit a 32-bit size")]
    BoxTooLarge {
        /// The box type.
        fourcc: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A codec configuration record could not be read.
    #[error("{codec} configuration is invalid: {reason}")]
    InvalidConfig {
        /// The codec.
        codec: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A fragment was asked for without any sample.
    #[error("a fragment needs at least one sample")]
    EmptyFragment,
    /// A box header declares a size smaller than its header or past the end of the data.
    #[error("box at offset {offset} declares {size} bytes, {available} available")]
    BadBoxSize {
        /// Offset of the box header.
        offset: usize,
        /// The declared size.
        size: u64,
        /// Bytes left from the offset.
        available: usize,
    },
}
