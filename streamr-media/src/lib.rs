//! # streamr-media
//!
//! Media building blocks for StreamrP2P: RTMP (handshake, chunk stream, AMF0, sessions), FLV,
//! codec configuration records, MPEG-TS and fMP4/CMAF muxing, HLS and LL-HLS segmenting, and the
//! relay fan-out that shares every received frame with all viewers.
//!
//! Protocol state machines are sans-IO: they take bytes and return events and bytes, so they run
//! under any runtime and are tested without sockets ([`rtmp::session::ServerSession`],
//! [`rtmp::session::ClientSession`], [`hls::Segmenter`], [`ts`]). The tokio adapters sit beside
//! them: [`RelayServer`] (RTMP), [`http::HttpServer`] (HLS and HTTP-FLV), [`RtmpClient`] and
//! [`upstream::UpstreamPuller`] (pulling from an origin).
//!
//! An embedding application plugs in one trait, [`RelayHooks`]: it authorizes publishers and
//! players and hears lifecycle events. A [`PlayGate`] applies the same hooks to every delivery
//! path (RTMP, HTTP-FLV, HLS and LL-HLS; [`StreamRequest::protocol`] says which) and adds
//! relay-on-demand: a play or GET for a stream this server does not have starts, or joins, a
//! pull from the upstream, and HTTP waits for it. An accepted playlist request's query (a
//! token) is carried onto every URI of the playlist. See `examples/edge_relay.rs`.
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `server` | yes | the tokio RTMP adapters: `server` (`RelayServer`, `RelayHooks`), `client` (`RtmpClient`), `publish`, `upstream` |
//! | `http` | yes | `http`: HLS and HTTP-FLV over axum (`HttpServer`, `LiveHls`) |
//!
//! With `default-features = false` the crate is the sans-IO core alone (RTMP, AMF0, FLV, codec
//! records, MPEG-TS, HLS, the relay hub): no axum, hyper, tower or socket code, and tokio with its
//! `sync` feature only.
//!
//! An RTMP origin/relay with HLS and HTTP-FLV in a few lines:
//!
//! ```no_run
//! use streamr_media::http::{HttpServer, LiveHlsConfig};
//! use streamr_media::{RelayServer, RelayServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let rtmp = RelayServer::start(RelayServerConfig::default()).await?; // 127.0.0.1:1935
//! let http = HttpServer::start(
//!     "127.0.0.1:8080".parse().expect("a socket address"),
//!     rtmp.hub().clone(),
//!     LiveHlsConfig::default(),
//! )
//! .await?;
//! // Publish to rtmp://127.0.0.1:1935/live/key; play the same URL, or
//! // http://127.0.0.1:8080/live/key.flv, http://127.0.0.1:8080/live/key.m3u8 (MPEG-TS HLS) and
//! // http://127.0.0.1:8080/live/key/ll.m3u8 (LL-HLS, fMP4).
//! tokio::signal::ctrl_c().await?;
//! http.shutdown().await;
//! rtmp.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The relay hub on its own, without sockets:
//!
//! ```
//! use bytes::Bytes;
//! use streamr_media::{FrameKind, RelayEvent, RelayHub, StreamKey};
//!
//! let hub = RelayHub::default();
//! let key = StreamKey::parse("live", "demo").expect("valid names");
//! let publisher = hub.publish(key.clone()).expect("the key is free");
//! let mut viewer = hub.subscribe(key).expect("below the viewer limit");
//! // An AVC keyframe: the viewer starts here, sharing the publisher's bytes.
//! publisher.send(FrameKind::Video, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65]));
//! let mut events = Vec::new();
//! viewer.try_recv_batch(&mut events, 16);
//! assert!(matches!(&events[..], [RelayEvent::Frame(frame)] if frame.is_video_keyframe()));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod amf0;
#[cfg(feature = "server")]
pub mod client;
pub mod codec;
pub mod flv;
pub mod fmp4;
pub mod hls;
#[cfg(feature = "http")]
pub mod http;
pub mod name;
#[cfg(feature = "server")]
pub mod publish;
pub mod relay;
pub mod rtmp;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod shared_bytes;
pub mod ts;
#[cfg(feature = "server")]
pub mod upstream;

pub use amf0::Amf0Value;
#[cfg(feature = "server")]
pub use client::{ClientError, RtmpClient};
pub use relay::{
    Frame, FrameKind, Publisher, RelayConfig, RelayEvent, RelayHub, StreamKey, StreamStats,
    Subscription, ViewerStats,
};
pub use rtmp::session::{
    ClientConfig, ClientEvent, ClientRole, ClientSession, MediaKind, PublishMode, ServerConfig,
    ServerEvent, ServerSession,
};
pub use rtmp::url::RtmpUrl;
#[cfg(feature = "server")]
pub use server::{
    PlayAdmission, PlayGate, Protocol, Refusal, RelayHooks, RelayServer, RelayServerConfig,
    StreamEvent, StreamRequest,
};
