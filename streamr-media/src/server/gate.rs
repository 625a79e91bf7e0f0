//! What every play passes through, whatever the protocol: the embedder's hooks, then the
//! on-demand pull of a stream this server does not have.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::hooks::{AllowAll, PlayAdmission, Refusal, RelayHooks, StreamEvent, StreamRequest};
use crate::relay::{RelayHub, StreamKey};
use crate::upstream::UpstreamPuller;

/// How often [`PlayGate::wait_for_stream`] looks at the hub while a pull starts.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// The hooks and the relay-on-demand of a server, shared by its RTMP and HTTP sides.
///
/// As [`RelayHooks`] (hand it to [`RelayServer`](super::RelayServer)) it authorizes with the
/// embedder's hooks and then starts, or joins, the pull of the stream from the upstream; the
/// HTTP server ([`HttpServer::start_with_gate`](crate::http::HttpServer::start_with_gate))
/// also waits for a pulled stream to arrive before it answers.
#[derive(Clone)]
pub struct PlayGate {
    hooks: Arc<dyn RelayHooks>,
    upstream: Option<UpstreamPuller>,
    pull_wait: Duration,
}

impl std::fmt::Debug for PlayGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayGate")
            .field("upstream", &self.upstream)
            .field("pull_wait", &self.pull_wait)
            .finish_non_exhaustive()
    }
}

impl Default for PlayGate {
    fn default() -> Self {
        PlayGate::new(Arc::new(AllowAll))
    }
}

/// What a wait for a stream ended with ([`PlayGate::wait_for_stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamWait {
    /// The stream is published here (locally or by a pull).
    Ready,
    /// The stream is not here, and no upstream failure is known (yet): answer "not found".
    Absent,
    /// The pull's upstreams failed; the reason of the last failure.
    UpstreamFailed(String),
}

impl PlayGate {
    /// A gate asking `hooks`, with no upstream.
    pub fn new(hooks: Arc<dyn RelayHooks>) -> Self {
        PlayGate {
            hooks,
            upstream: None,
            pull_wait: Duration::ZERO,
        }
    }

    /// Pulls streams this server does not have with `puller`; an HTTP request waits up to
    /// `pull_wait` for the stream to arrive.
    pub fn with_upstream(mut self, puller: UpstreamPuller, pull_wait: Duration) -> Self {
        self.upstream = Some(puller);
        self.pull_wait = pull_wait;
        self
    }

    /// The puller, when the gate has an upstream.
    pub fn upstream(&self) -> Option<&UpstreamPuller> {
        self.upstream.as_ref()
    }

    /// Asks the hooks, then starts or joins the pull of the stream (when there is an upstream).
    pub async fn admit(&self, request: &StreamRequest) -> Result<PlayAdmission, Refusal> {
        let admission = self.hooks.admit_play(request).await?;
        if let Some(puller) = &self.upstream {
            puller.ensure(&request.key);
        }
        Ok(admission)
    }

    /// Waits up to the pull wait for `key` to be published in `hub`. Without an upstream it
    /// does not wait.
    pub async fn wait_for_stream(&self, hub: &RelayHub, key: &StreamKey) -> StreamWait {
        if hub.is_publishing(key) {
            return StreamWait::Ready;
        }
        let Some(puller) = &self.upstream else {
            return StreamWait::Absent;
        };
        let deadline = tokio::time::Instant::now() + self.pull_wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(WAIT_POLL).await;
            if hub.is_publishing(key) {
                return StreamWait::Ready;
            }
        }
        match puller.status(key).and_then(|status| status.last_error) {
            Some(error) => StreamWait::UpstreamFailed(error),
            None => StreamWait::Absent,
        }
    }
}

#[async_trait]
impl RelayHooks for PlayGate {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        self.hooks.authorize_publish(request).await
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        self.admit(request).await.map(|_| ())
    }

    async fn admit_play(&self, request: &StreamRequest) -> Result<PlayAdmission, Refusal> {
        self.admit(request).await
    }

    async fn on_event(&self, event: StreamEvent) {
        self.hooks.on_event(event).await;
    }
}
