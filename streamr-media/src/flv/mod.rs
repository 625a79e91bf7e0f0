//! FLV: tag headers and their classification for the relay, and the file/stream reader and writer.
