//! FLV: tag headers and their classification for the relay, and the file/stream reader and writer.

pub mod tag;

mod error;
mod header;
mod reader;
mod writer;

pub use error::FlvError;
pub use header::{FlvHeader, FLV_HEADER_LEN};
pub use reader::{FlvReader, FlvTag, FlvTagType, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN};
pub use writer::{FlvWriter, MAX_TAG_BODY_LEN};
