//! # streamr-media
//!
//! Media building blocks for StreamrP2P: RTMP (handshake, chunk stream, AMF0, sessions), FLV,
//! codec configuration records, MPEG-TS muxing, HLS segmenting, and the relay fan-out that shares
//! every received frame with all viewers.
//!
//! Protocol state machines are sans-IO: they take bytes and return events and bytes, so they run
//! under any runtime and are tested without sockets. The tokio adapters sit beside them.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod amf0;
pub mod client;
pub mod codec;
pub mod flv;
pub mod hls;
pub mod http;
pub mod publish;
pub mod relay;
pub mod rtmp;
pub mod server;
pub mod ts;
pub mod upstream;
