//! RTMP protocol: handshake, chunk stream, messages and the sans-IO client and server sessions.
//!
//! Layers, bottom up:
//! - [`handshake`]: C0/C1/C2 and S0/S1/S2, simple and Flash Player 9 digest forms.
//! - [`chunk`]: the chunk stream as a `tokio_util` codec ([`chunk::ChunkDecoder`],
//!   [`chunk::ChunkEncoder`]) plus [`chunk::encode_shared_media`] for the fan-out hot path.
//! - [`message`]: typed protocol control, user control, command, data and media messages.
//! - [`session`]: the sans-IO server and client sessions built on all of the above.
//!
//! A friend node's client session pulling from an origin's server session, with the bytes moved
//! by hand instead of over TCP:
//!
//! ```
//! use streamr_media::rtmp::session::*;
//!
//! let mut origin = ServerSession::new(ServerConfig::default());
//! let mut friend = ClientSession::new(ClientConfig::new("origin", "live", "key", ClientRole::Play));
//! let mut frames = Vec::new();
//! for _ in 0..10 {
//!     origin.feed(&friend.take_output()).unwrap();
//!     while let Some(event) = origin.poll_event() {
//!         match event {
//!             ServerEvent::ConnectRequested { .. } => origin.accept_connect().unwrap(),
//!             ServerEvent::PlayRequested { stream_id, .. } => {
//!                 origin.accept_play(stream_id).unwrap();
//!                 let frame = bytes::Bytes::from_static(&[0x17, 1, 0, 0, 0]);
//!                 origin.send_media(stream_id, MediaKind::Video, 40, frame).unwrap();
//!             }
//!             _ => {}
//!         }
//!     }
//!     friend.feed(&origin.take_output()).unwrap();
//!     while let Some(event) = friend.poll_event() {
//!         if let ClientEvent::Media { timestamp, payload, .. } = event {
//!             frames.push((timestamp, payload));
//!         }
//!     }
//! }
//! assert_eq!(frames.len(), 1);
//! assert_eq!(frames[0].0, 40);
//! ```

pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
pub mod url;
