//! The node's HTTP request handling in process, for fuzzing (feature `fuzzing`): the same app
//! [`Node::start`](crate::Node::start) serves (grant gate, `POST /receipts`, HLS and HTTP-FLV
//! routes), twice: as a relay enforcing grants, and as a standalone node that admits everyone
//! (so every request also reaches the media routes). Requests are driven one at a time without
//! a socket. The `node_http` fuzz target and the test that replays its corpus share it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use streamr_core::KeyPair;
use streamr_media::http::{HttpState, LiveHls, LiveHlsConfig};
use streamr_media::relay::{RelayConfig, RelayHub};
use streamr_media::server::PlayGate;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::gate::Gate;
use streamr_core::GrantChecker;

/// Largest response body read back.
const MAX_BODY: usize = 1 << 20;

/// The coordinator key the harness trusts for grants.
pub fn coordinator_key() -> KeyPair {
    KeyPair::from_seed([7; 32])
}

/// The harness node's key (grants must name its node id).
pub fn node_key() -> KeyPair {
    KeyPair::from_seed([9; 32])
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type` header, when present.
    pub content_type: Option<String>,
    /// The body (at most 1 MiB).
    pub body: Vec<u8>,
}

/// A node's HTTP app, with and without grants, on its own single-threaded runtime.
pub struct HttpHarness {
    runtime: tokio::runtime::Runtime,
    granted: axum::Router,
    open: axum::Router,
    stop: CancellationToken,
}

impl std::fmt::Debug for HttpHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHarness").finish_non_exhaustive()
    }
}

impl Drop for HttpHarness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl HttpHarness {
    /// Builds the apps: a relay that enforces grants from [`coordinator_key`] for
    /// [`node_key`], and a standalone node, neither with an upstream to pull from.
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop = CancellationToken::new();
        let grants = GrantChecker::new(coordinator_key().coordinator_key(), node_key().node_id());
        let granted = runtime.block_on(app(Some(grants), &stop));
        let open = runtime.block_on(app(None, &stop));
        Ok(HttpHarness {
            runtime,
            granted,
            open,
            stop,
        })
    }

    /// Sends `method target` (a request target as on an HTTP/1.1 request line: path and
    /// query) with `body` to the node enforcing grants; `None` when `target` is not a valid
    /// request target.
    pub fn request(&self, method: Method, target: &[u8], body: Vec<u8>) -> Option<Answer> {
        self.send(&self.granted, method, target, body)
    }

    /// Like [`request`](Self::request), to the standalone node that admits everyone.
    pub fn request_open(&self, method: Method, target: &[u8], body: Vec<u8>) -> Option<Answer> {
        self.send(&self.open, method, target, body)
    }

    fn send(
        &self,
        app: &axum::Router,
        method: Method,
        target: &[u8],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "node.test")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .ok()?;
        let app = app.clone();
        self.runtime.block_on(async move {
            let response = app.oneshot(request).await.ok()?;
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            // HTTP-FLV bodies are endless: read only what is ready.
            let body = tokio::time::timeout(
                Duration::from_millis(50),
                axum::body::to_bytes(response.into_body(), MAX_BODY),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
            Some(Answer {
                status,
                content_type,
                body,
            })
        })
    }

    /// The fuzz target's input: a request target, optionally followed by a newline and a body
    /// (then the request is a `POST`, else a `GET`), sent to both nodes. Returns the answer of
    /// the node enforcing grants; panics when either answer breaks what every answer must
    /// satisfy (see [`check_answer`]).
    pub fn run_input(&self, data: &[u8]) -> Option<Answer> {
        let (target, body, method) = match data.iter().position(|byte| *byte == b'\n') {
            Some(at) => (&data[..at], data[at + 1..].to_vec(), Method::POST),
            None => (data, Vec::new(), Method::GET),
        };
        if let Some(answer) = self.request_open(method.clone(), target, body.clone()) {
            check_answer(&answer);
        }
        let answer = self.request(method, target, body)?;
        check_answer(&answer);
        Some(answer)
    }
}

/// The node's HTTP app over a fresh hub, enforcing `grants` when given.
async fn app(grants: Option<GrantChecker>, stop: &CancellationToken) -> axum::Router {
    let hub = RelayHub::new(RelayConfig::default());
    let gate = Arc::new(Gate::new(
        hub.clone(),
        grants,
        None,
        Duration::from_secs(10),
    ));
    let hls = LiveHls::start(hub.clone(), LiveHlsConfig::default(), stop.clone());
    let play_gate = PlayGate::new(Arc::new(crate::gate::NodeHooks(gate.clone())));
    crate::http_app(gate, play_gate, HttpState::new(hub, hls), None)
}

/// What every answer to any request must satisfy: no server error, and a refusal (4xx) says
/// why in a JSON object with an `error` field.
pub fn check_answer(answer: &Answer) {
    assert!(
        !answer.status.is_server_error(),
        "server error {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status.is_client_error() && answer.status != StatusCode::METHOD_NOT_ALLOWED {
        let error = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|json| json.get("error").map(|error| error.is_string()));
        assert_eq!(
            error,
            Some(true),
            "a {} without a JSON error: {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
}
