//! RTMP protocol: handshake, chunk stream, messages and the sans-IO client and server sessions.
//!
//! Layers, bottom up:
//! - [`handshake`]: C0/C1/C2 and S0/S1/S2, simple and Flash Player 9 digest forms.
//! - [`chunk`]: the chunk stream as a `tokio_util` codec ([`chunk::ChunkDecoder`],
//!   [`chunk::ChunkEncoder`]) plus [`chunk::encode_shared_media`] for the fan-out hot path.
//! - [`message`]: typed protocol control, user control, command, data and media messages.
//! - [`session`]: the sans-IO server and client sessions built on all of the above.

pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
pub mod url;
