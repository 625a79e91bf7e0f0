//! Test support: fresh SQLite and PostgreSQL databases, and a small client that drives the
//! router in-process.

#![allow(dead_code, unused_imports)]

/// Runs each named scenario (`async fn scenario(db: &TestDb)`) as two tests, one against a fresh
/// SQLite database and one against a fresh database on the PostgreSQL server. With
/// `multi_thread;` first, the tests run on a two-worker runtime (scenarios whose requests must
/// truly run concurrently).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    (multi_thread; $($scenario:ident),* $(,)?) => {
        on_both_backends!(@tests (flavor = "multi_thread", worker_threads = 2); $($scenario),*);
    };
    ($($scenario:ident),* $(,)?) => {
        on_both_backends!(@tests (); $($scenario),*);
    };
    (@tests $runtime:tt; $($scenario:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test $runtime]
                async fn $scenario() {
                    let db = super::TestDb::sqlite().await;
                    super::$scenario(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test $runtime]
                #[ignore = "interop: needs PostgreSQL (STREAMR_TEST_POSTGRES_URL)"]
                async fn $scenario() {
                    let db = super::TestDb::postgres().await;
                    super::$scenario(&db).await;
                }
            )*
        }
    };
}

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use streamr_coord::wire::NodeRegistration;
use streamr_coord::{connect, CoordConfig, Coordinator, Storage};
use streamr_core::{CanonicalMessage, ContentDigest, KeyPair, NodeHeartbeat, Signed, StreamId};
use tower::ServiceExt;

pub mod epoch_inputs;

pub use epoch_inputs::{claims_heartbeat, create_stream, probe_session, report_segments};
pub use streamr_test_support::now_ms;
use streamr_test_support::postgres::PgDatabase;

pub const ADMIN: &str = "test-admin-token";

/// A database that lives as long as the test: a SQLite file in a temporary directory, or a
/// uniquely named PostgreSQL database dropped afterwards.
pub enum TestDb {
    Sqlite(tempfile::TempDir, String),
    Postgres(PgDatabase),
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("coordinator.db").display());
        TestDb::Sqlite(dir, url)
    }

    /// Creates a database on the server named by STREAMR_TEST_POSTGRES_URL (default local
    /// trust-auth server). Fails, never skips, when the server is unreachable.
    pub async fn postgres() -> TestDb {
        TestDb::Postgres(PgDatabase::create().await)
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite(_, url) => url,
            TestDb::Postgres(db) => &db.url,
        }
    }

    pub async fn storage(&self) -> Arc<dyn Storage> {
        connect(self.url()).await.expect("open storage")
    }
}

/// A configuration for tests: admin token, short epochs, immediate vesting.
pub fn test_config() -> CoordConfig {
    let mut config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        epoch_length: Duration::from_secs(2),
        settlement_grace: Duration::from_millis(500),
        // These coordinators run no workers, so nothing notes them up between the tests'
        // calls: every pause would read as an outage. The outage tests turn it on.
        outage_grace: Duration::ZERO,
        rate_limit: None,
        // The test nodes' addresses answer nothing: a probe would find every one down.
        relay_probe_timeout: None,
        ..CoordConfig::default()
    };
    config.settlement.vesting_epochs = 0;
    config
}

/// Drives a coordinator's router in-process.
pub struct Client {
    pub coordinator: Coordinator,
    router: axum::Router,
}

impl Client {
    pub fn new(coordinator: Coordinator) -> Client {
        let router = coordinator.router();
        Client {
            coordinator,
            router,
        }
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        admin: bool,
    ) -> (StatusCode, Value) {
        self.raw_from(method, path, body, admin, None).await
    }

    /// A request as if it came from `peer` (the address the server's connect info would
    /// carry), or from an unknown address.
    pub async fn raw_from(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        admin: bool,
        peer: Option<std::net::IpAddr>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(ip) = peer {
            request = request.extension(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                ip, 40_000,
            )));
        }
        if admin {
            request = request.header("authorization", format!("Bearer {ADMIN}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).expect("request"))
            .await
            .expect("router never fails");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.raw("GET", path, Vec::new(), false).await
    }

    /// A GET as if from `peer`.
    pub async fn get_from(&self, path: &str, peer: std::net::IpAddr) -> (StatusCode, Value) {
        self.raw_from("GET", path, Vec::new(), false, Some(peer))
            .await
    }

    pub async fn get_admin(&self, path: &str) -> (StatusCode, Value) {
        self.raw("GET", path, Vec::new(), true).await
    }

    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (StatusCode, Value) {
        self.raw("POST", path, serde_json::to_vec(body).expect("json"), false)
            .await
    }

    pub async fn post_admin(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (StatusCode, Value) {
        self.raw("POST", path, serde_json::to_vec(body).expect("json"), true)
            .await
    }
}

pub fn registration(node: &KeyPair, http_url: &str) -> Signed<NodeRegistration> {
    Signed::sign(
        NodeRegistration {
            operator_membership: None,
            node_id: node.node_id(),
            payout_address: format!("payout-{}", node.node_id()),
            operator: format!("operator-{}", &node.node_id().to_string()[..8]),
            rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
            http_url: http_url.into(),
            capacity_kbps: 50_000,
            timestamp_ms: now_ms(),
        },
        node,
    )
}

pub fn heartbeat(node: &KeyPair, nonce: u64, streams: &[&str]) -> Signed<NodeHeartbeat> {
    Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce,
            streams: streams
                .iter()
                .map(|s| StreamId::new(*s).expect("stream id"))
                .collect(),
            viewers: 1,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    )
}

/// Makes the canonical bytes of a message observable for tampering tests.
pub fn canonical<T: CanonicalMessage>(message: &T) -> Vec<u8> {
    message.canonical_bytes()
}

pub fn digest(hex: &Value) -> ContentDigest {
    hex.as_str().expect("hex string").parse().expect("digest")
}

/// Sleeps until the epoch containing `t_ms` has ended and its settlement grace (the receipts'
/// deadline) passed, so it can be settled.
pub async fn wait_for_epoch_end(config: &CoordConfig, t_ms: u64) {
    let length = config.epoch_length.as_millis() as u64;
    let end = (t_ms / length + 1) * length + config.settlement_grace.as_millis() as u64;
    let now = now_ms();
    if end > now {
        tokio::time::sleep(Duration::from_millis(end - now + 50)).await;
    }
}
