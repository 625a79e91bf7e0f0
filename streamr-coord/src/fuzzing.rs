//! The coordinator's JSON request bodies in process, for fuzzing (feature `fuzzing`): the API
//! router over an in-memory SQLite database, one `POST` at a time without a socket. The
//! `coord_json` fuzz target and the test that replays its corpus share it.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use streamr_core::KeyPair;
use tower::ServiceExt;

use crate::{connect, CoordConfig, Coordinator};

/// The admin token every harness request carries, so admin endpoints parse their bodies too.
pub const ADMIN_TOKEN: &str = "fuzz-admin";

/// The endpoints that take a JSON body, in the order the input's first byte selects them.
pub const JSON_ENDPOINTS: &[&str] = &[
    "/streams",
    "/streams/show/end",
    "/streams/show/origin",
    "/streams/show/publish-check",
    "/streams/show/segments",
    "/receipts",
    "/nodes",
    "/nodes/heartbeat",
    "/nodes/deregister",
    "/probes",
    "/simulate",
    "/streams/show/parts",
];

/// Largest response body read back.
const MAX_BODY: usize = 1 << 20;

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: Vec<u8>,
}

/// A coordinator's API over an in-memory database, on its own single-threaded runtime, with
/// the stream `show` created.
pub struct JsonHarness {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
}

impl std::fmt::Debug for JsonHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonHarness").finish_non_exhaustive()
    }
}

/// Why the harness could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The database could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] crate::StorageError),
}

impl JsonHarness {
    /// Builds the API (no rate limit, fixed coordinator key) and creates the stream `show`.
    pub fn new() -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let app = runtime.block_on(async {
            let storage = connect("sqlite::memory:").await?;
            let config = CoordConfig {
                admin_token: Some(ADMIN_TOKEN.into()),
                coordinator_key: KeyPair::from_seed([7; 32]),
                rate_limit: None,
                ..CoordConfig::default()
            };
            Ok::<_, HarnessError>(Coordinator::new(config, storage).router())
        })?;
        let harness = JsonHarness { runtime, app };
        harness.post("/streams", br#"{"id":"show","title":"Show"}"#.to_vec());
        Ok(harness)
    }

    /// Posts `body` to `path` with the admin token.
    pub fn post(&self, path: &str, body: Vec<u8>) -> Option<Answer> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "coordinator.test")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::from(body))
            .ok()?;
        let app = self.app.clone();
        self.runtime.block_on(async move {
            let response = app.oneshot(request).await.ok()?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), MAX_BODY)
                .await
                .ok()?
                .to_vec();
            Some(Answer { status, body })
        })
    }

    /// The fuzz target's input: the first byte picks one of [`JSON_ENDPOINTS`], the rest is
    /// the body. Panics when the answer breaks what every answer must satisfy (see
    /// [`check_answer`]).
    pub fn run_input(&self, data: &[u8]) -> Option<Answer> {
        let (selector, body) = data.split_first()?;
        let path = JSON_ENDPOINTS.get(usize::from(*selector) % JSON_ENDPOINTS.len())?;
        let answer = self.post(path, body.to_vec())?;
        check_answer(path, &answer);
        Some(answer)
    }
}

/// What every answer to a JSON body must satisfy: no server error, and any refusal is a JSON
/// object with an `error` field.
pub fn check_answer(path: &str, answer: &Answer) {
    assert!(
        !answer.status.is_server_error(),
        "POST {path}: server error {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status.is_client_error() {
        let error = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|json| json.get("error").map(|error| error.is_string()));
        assert_eq!(
            error,
            Some(true),
            "POST {path}: a {} without a JSON error: {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
}

/// Opens `stored` as the sealed key column of a node session row (fixed session id, node and
/// expiry, a fixed coordinator key), as a replica does when it reads a row it did not write:
/// the `session_vault` fuzz target drives it. Returns whether it opened; never panics. A seal
/// made for that row is also checked to open back to its key.
pub fn open_sealed_session_key(stored: &[u8]) -> bool {
    use streamr_core::{KnownSession, NodeSessionId, SessionKey};
    let vault = crate::session_vault::SessionVault::new(&KeyPair::from_seed([7; 32]));
    let id = NodeSessionId::from_bytes([1; 16]);
    let node_id = KeyPair::from_seed([3; 32]).node_id();
    let opened = vault
        .open(&id, node_id, 5_000, &String::from_utf8_lossy(stored))
        .is_ok();
    let mut key = [0u8; 32];
    let take = stored.len().min(32);
    key[..take].copy_from_slice(&stored[..take]);
    let session = KnownSession {
        node_id,
        key: SessionKey::from_bytes(key),
        expires_at_ms: 5_000,
    };
    let sealed = vault.seal(&id, &session, [9; 12]);
    assert_eq!(vault.open(&id, node_id, 5_000, &sealed), Ok(session));
    opened
}
