//! What every play passes through, whatever the protocol: the embedder's hooks, then the
//! on-demand pull of a stream this server does not have.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::hooks::{AllowAll, PlayAdmission, Refusal, RelayHooks, StreamEvent, StreamRequest};
use crate::relay::{RelayHub, StreamKey};
use crate::upstream::UpstreamPuller;

/// The hooks and the relay-on-demand of a server, shared by its RTMP and HTTP sides.
///
/// As [`RelayHooks`] (hand it to [`RelayServer`](super::RelayServer)) it authorizes with the
/// embedder's hooks and then starts, or joins, the pull of the stream from the upstream; the
/// HTTP server ([`HttpServer::start_with_gate`](crate::http::HttpServer::start_with_gate))
/// also waits for a pulled stream to arrive before it answers.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use streamr_media::http::{HttpServer, LiveHlsConfig};
/// use streamr_media::server::AllowAll;
/// use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
/// use streamr_media::{PlayGate, RelayHub, RelayServer, RelayServerConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = RelayHub::default();
/// let upstream = UpstreamConfig::default().with_upstreams(["rtmp://origin.example:1935"]);
/// let puller = UpstreamPuller::new(hub.clone(), upstream);
/// let gate = PlayGate::new(Arc::new(AllowAll)).with_upstream(puller, Duration::from_secs(5));
/// let rtmp = RelayServer::start_on_hub(RelayServerConfig::default(), Arc::new(gate.clone()), hub.clone()).await?;
/// let bind = "127.0.0.1:8080".parse().expect("a socket address");
/// let http = HttpServer::start_with_gate(bind, hub, LiveHlsConfig::default(), gate).await?;
/// # Ok(())
/// # }
/// ```
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
        // Woken by the stream's frames, not polled (a pull publishes with its first frame); an
        // internal subscriber is no viewer, so it keeps no pull alive.
        if let Ok(mut watch) = hub.subscribe_internal(key.clone()) {
            while !hub.is_publishing(key) {
                match tokio::time::timeout_at(deadline, watch.recv()).await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if hub.is_publishing(key) {
            return StreamWait::Ready;
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::server::{Protocol, RefusalKind};
    use crate::upstream::UpstreamConfig;

    /// Admits `?ok`, refuses anything else.
    struct OnlyOk;

    #[async_trait]
    impl RelayHooks for OnlyOk {
        async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
            if request.query == "ok" {
                Ok(())
            } else {
                Err(Refusal::new("not ok").with_code("not_ok").unauthorized())
            }
        }
    }

    fn request(query: &str) -> StreamRequest {
        let key = StreamKey::parse("live", "show").expect("valid names");
        let peer = SocketAddr::from(([127, 0, 0, 1], 5000));
        StreamRequest::new(key, query, peer, Protocol::Hls)
    }

    /// A puller whose only upstream refuses connections at once.
    fn puller(hub: &RelayHub) -> UpstreamPuller {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = format!("rtmp://{}", closed.local_addr().expect("address"));
        drop(closed);
        let config = UpstreamConfig::default().with_upstreams([upstream]);
        UpstreamPuller::new(hub.clone(), config)
    }

    #[tokio::test]
    async fn a_refused_play_keeps_its_refusal_and_starts_no_pull() {
        let hub = RelayHub::default();
        let puller = puller(&hub);
        let gate = PlayGate::new(Arc::new(OnlyOk)).with_upstream(puller.clone(), Duration::ZERO);
        let refusal = gate.admit(&request("no")).await.expect_err("refused");
        assert_eq!(
            (refusal.code.as_ref(), refusal.kind),
            ("not_ok", RefusalKind::Unauthorized)
        );
        assert_eq!(puller.totals().pulls, 0);
        assert!(gate.admit(&request("ok")).await.is_ok());
        assert_eq!(puller.totals().pulls, 1);
        // A second admitted play joins the pull.
        assert!(gate.authorize_play(&request("ok")).await.is_ok());
        assert_eq!(puller.totals().pulls, 1);
    }

    #[tokio::test]
    async fn a_stream_published_here_is_ready_without_a_wait() {
        let hub = RelayHub::default();
        let key = request("").key;
        let gate = PlayGate::default();
        assert_eq!(gate.wait_for_stream(&hub, &key).await, StreamWait::Absent);
        let _publisher = hub.publish(key.clone()).expect("the key is free");
        let gate = gate.with_upstream(puller(&hub), Duration::from_secs(60));
        assert_eq!(gate.wait_for_stream(&hub, &key).await, StreamWait::Ready);
        assert_eq!(gate.upstream().map(|p| p.totals().pulls), Some(0));
    }

    #[tokio::test]
    async fn a_wait_ends_with_the_streams_first_frame() {
        let hub = RelayHub::default();
        let key = request("").key;
        let gate = PlayGate::default().with_upstream(puller(&hub), Duration::from_secs(60));
        let publishing = hub.clone();
        let published = key.clone();
        let publisher = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let publisher = publishing.publish(published).expect("the key is free");
            let keyframe = bytes::Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65]);
            publisher.send(crate::relay::FrameKind::Video, 0, keyframe);
            publisher
        });
        let wait = tokio::time::timeout(Duration::from_secs(10), gate.wait_for_stream(&hub, &key));
        assert_eq!(
            wait.await,
            Ok(StreamWait::Ready),
            "woken well before the 60 s pull wait"
        );
        drop(publisher.await);
    }

    #[tokio::test]
    async fn a_failing_upstream_ends_the_wait_with_its_error() {
        let hub = RelayHub::default();
        let gate = PlayGate::default().with_upstream(puller(&hub), Duration::from_millis(300));
        let admitted = request("");
        gate.admit(&admitted).await.expect("allow-all");
        let wait = gate.wait_for_stream(&hub, &admitted.key).await;
        assert!(
            matches!(wait, StreamWait::UpstreamFailed(ref e) if !e.is_empty()),
            "{wait:?}"
        );
    }
}
