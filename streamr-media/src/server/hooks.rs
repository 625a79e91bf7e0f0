//! What an embedding application plugs into the servers: authorization and lifecycle events.
//!
//! The same hooks authorize plays on every delivery path: RTMP, HTTP-FLV and HLS/LL-HLS (see
//! [`PlayGate`](super::PlayGate)); [`StreamRequest::protocol`] says which one asked.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;

use crate::relay::{StreamKey, ViewerStats};

/// The delivery path a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// RTMP (or RTMPS) publish or play.
    Rtmp,
    /// `GET /{app}/{stream}.flv`.
    HttpFlv,
    /// An HLS or LL-HLS playlist, segment, part or init section.
    Hls,
}

impl Protocol {
    /// A stable lowercase name: `rtmp`, `http-flv`, `hls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "http-flv",
            Protocol::Hls => "hls",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to publish or play, as the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamRequest {
    /// The stream, with the `?query` removed from the name.
    pub key: StreamKey,
    /// The query string (tokens, signatures), without the `?`: after `?` in an RTMP stream
    /// name, or the HTTP request's URL query.
    pub query: String,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The delivery path the request came in on.
    pub protocol: Protocol,
}

impl StreamRequest {
    /// A request for `key` from `peer` over `protocol`, carrying `query` (without `?`).
    pub fn new(
        key: StreamKey,
        query: impl Into<String>,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Self {
        StreamRequest {
            key,
            query: query.into(),
            peer,
            protocol,
        }
    }
}

/// Whether a refusal is for missing or for wrong credentials; HTTP answers 401 or 403.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The request carried no credentials the hook could check (HTTP 401).
    Unauthorized,
    /// The credentials were checked and refused (HTTP 403).
    #[default]
    Forbidden,
}

/// Why a hook refused a request: sent to an RTMP client in the `onStatus` description, and to
/// an HTTP client as a 401/403 JSON body `{"error": code, "message": reason, "stream": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// A short human-readable reason.
    pub reason: String,
    /// A stable machine-readable code (the HTTP body's `error`; default `play_refused`).
    pub code: Cow<'static, str>,
    /// Missing or wrong credentials (the HTTP status).
    pub kind: RefusalKind,
}

impl Refusal {
    /// A refusal with `reason`, code `play_refused`, of kind [`RefusalKind::Forbidden`].
    pub fn new(reason: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
            code: Cow::Borrowed("play_refused"),
            kind: RefusalKind::Forbidden,
        }
    }

    /// The same refusal with the machine-readable `code`.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = code.into();
        self
    }

    /// The same refusal for missing credentials (HTTP 401).
    pub fn unauthorized(mut self) -> Self {
        self.kind = RefusalKind::Unauthorized;
        self
    }
}

/// What an accepted play comes with.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PlayAdmission {
    /// A counter the bytes of the HTTP response bodies served for this request are added to
    /// (per-session metering); RTMP plays report theirs in [`StreamEvent::PlayEnded`].
    pub byte_counter: Option<Arc<AtomicU64>>,
}

impl PlayAdmission {
    /// An admission counting the HTTP response's body bytes into `counter`.
    pub fn counting_into(counter: Arc<AtomicU64>) -> Self {
        PlayAdmission {
            byte_counter: Some(counter),
        }
    }
}

/// A stream lifecycle event reported to [`RelayHooks::on_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A publisher started sending `key`.
    PublishStarted {
        /// The stream.
        key: StreamKey,
        /// The publisher's address.
        peer: SocketAddr,
    },
    /// The publisher of `key` left (or was disconnected).
    PublishEnded {
        /// The stream.
        key: StreamKey,
        /// The publisher's address.
        peer: SocketAddr,
    },
    /// A player started watching `key`.
    PlayStarted {
        /// The stream.
        key: StreamKey,
        /// The player's address.
        peer: SocketAddr,
        /// The viewer's id within the stream.
        viewer_id: u64,
    },
    /// A player stopped watching `key`, with what it was sent and what it skipped.
    PlayEnded {
        /// The stream.
        key: StreamKey,
        /// The player's address.
        peer: SocketAddr,
        /// The viewer's final counters.
        stats: ViewerStats,
    },
}

/// Authorization and lifecycle callbacks. Every method has an allow-all / do-nothing default,
/// so an implementation overrides only what it needs.
#[async_trait]
pub trait RelayHooks: Send + Sync + 'static {
    /// Decides whether `request` may publish. Refused publishers get `NetStream.Publish.BadName`.
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let _ = request;
        Ok(())
    }

    /// Decides whether `request` may play, over any protocol ([`StreamRequest::protocol`]).
    /// Refused RTMP players get `NetStream.Play.Failed`, HTTP clients a 401 or 403.
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let _ = request;
        Ok(())
    }

    /// Admits a play, with what the admission comes with (a byte counter). The default calls
    /// [`authorize_play`](RelayHooks::authorize_play); override this instead when HTTP
    /// responses should be metered per request.
    async fn admit_play(&self, request: &StreamRequest) -> Result<PlayAdmission, Refusal> {
        self.authorize_play(request).await?;
        Ok(PlayAdmission::default())
    }

    /// Called on every publish and play start and end.
    async fn on_event(&self, event: StreamEvent) {
        let _ = event;
    }
}

/// Hooks that allow everything and ignore events.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl RelayHooks for AllowAll {}
