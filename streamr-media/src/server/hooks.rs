//! What an embedding application plugs into the server: authorization and lifecycle events.

use std::net::SocketAddr;

use async_trait::async_trait;

use crate::relay::{StreamKey, ViewerStats};

/// A request to publish or play, as the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The stream, with the `?query` removed from the name.
    pub key: StreamKey,
    /// The query string after `?` in the stream name (tokens, signatures), without the `?`.
    pub query: String,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Why a hook refused a request; sent to the client in the `onStatus` description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// A short human-readable reason.
    pub reason: String,
}

impl Refusal {
    /// A refusal with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
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

    /// Decides whether `request` may play. Refused players get `NetStream.Play.Failed`.
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let _ = request;
        Ok(())
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
