//! The two error layers of the coordinator: storage and API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use streamr_net::failure_log::{Throttle, REPEAT_EVERY};

/// What went wrong in a storage backend, and on which table or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database URL names no backend this build supports.
    #[error("unsupported database URL {url:?}: expected sqlite://... or postgres://...")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// Connecting to the database or running its migrations failed.
    #[error("opening database {url:?}: {source}")]
    Open {
        /// The URL as given (credentials included only if the operator put them there).
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Running the schema migrations failed.
    #[error("migrating database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("{operation}: {source}")]
    Query {
        /// The storage operation that ran the query, e.g. `record_heartbeat`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The heartbeat nonce is not above the node's last accepted one.
    #[error("heartbeat nonce {nonce} of node {node_id} is not above the last accepted {last}")]
    ReplayedNonce {
        /// The node that sent the heartbeat.
        node_id: String,
        /// The nonce it sent.
        nonce: i64,
        /// The last nonce accepted from it.
        last: i64,
    },
    /// A heartbeat came from a node that is not registered or was deregistered.
    #[error("node {node_id} is not registered")]
    UnknownNode {
        /// The node.
        node_id: String,
    },
    /// A segment sequence number was reported twice with different hashes.
    #[error("segment {sequence} of stream {stream_id} was already reported with another hash")]
    ConflictingSegment {
        /// The stream.
        stream_id: String,
        /// The segment's sequence number.
        sequence: i64,
    },
    /// A group-committed transaction failed; every write in it was rolled back.
    #[error("heartbeat batch not stored: {detail}")]
    Batch {
        /// The failure of the shared transaction.
        detail: String,
    },
    /// The heartbeat writer task is gone (the service is shutting down).
    #[error("heartbeat writer stopped")]
    WriterStopped,
    /// A stored value could not be decoded.
    #[error("corrupt {what} in storage: {detail}")]
    Corrupt {
        /// Which stored value.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl StorageError {
    /// Wraps a driver error with the name of the operation that saw it.
    pub(crate) fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| StorageError::Query { operation, source }
    }

    /// Whether the database could not be reached (refused or lost connections, a server
    /// shutting down or starting, no connection free within the pool's timeout), as against
    /// a query that failed on a reachable database: the former passes, and requests that hit
    /// it are answered 503 `storage_unavailable`.
    pub fn is_unreachable(&self) -> bool {
        let source = match self {
            StorageError::Query { source, .. } | StorageError::Open { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(error) => error.code().is_some_and(|code| {
                // Connection exceptions; admin, crash and "starting up" shutdowns; too many
                // connections; a database that accepts none (PostgreSQL's SQLSTATEs).
                code.starts_with("08")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
            }),
            _ => false,
        }
    }
}

impl StorageError {
    /// Whether the database is out of disk space (SQLite's `SQLITE_FULL`, PostgreSQL's
    /// `disk_full`, or the OS's `ENOSPC` under the driver): its writes fail, and nothing of
    /// them is stored, until space is freed, after which the coordinator carries on by
    /// itself. Requests that hit it are answered 503 `storage_unavailable`, as for an
    /// unreachable database.
    pub fn is_out_of_space(&self) -> bool {
        let source = match self {
            StorageError::Query { source, .. } | StorageError::Open { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::Database(error) => error
                .code()
                .is_some_and(|code| matches!(&*code, "13" | "53100")),
            sqlx::Error::Io(error) => error.raw_os_error() == Some(ENOSPC),
            _ => false,
        }
    }
}

/// The OS's "no space left on device" (Linux, the BSDs and macOS alike).
const ENOSPC: i32 = 28;

/// An API request that failed: each variant maps to one HTTP status and a JSON body
/// `{"error": "<code>", "message": "<what was wrong>"}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body was not valid JSON for the endpoint.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A path parameter had the wrong form.
    #[error("invalid path parameter: {0}")]
    InvalidPath(String),
    /// A query string parameter had the wrong form.
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    /// A field was syntactically valid JSON but had an unacceptable value.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The body exceeded the configured size limit.
    #[error("request body too large: {0}")]
    BodyTooLarge(String),
    /// The admin bearer token was missing or wrong.
    #[error("missing or wrong admin bearer token")]
    Unauthorized,
    /// A signature did not verify.
    #[error("bad signature on {what}")]
    BadSignature {
        /// What was signed (heartbeat, receipt, request).
        what: &'static str,
    },
    /// A session heartbeat named a session this coordinator does not know (never opened,
    /// expired and purged, or lost): the node opens a new session and sends it again.
    #[error("unknown node session {session_id}: open a new one (POST /nodes/sessions)")]
    UnknownSession {
        /// The session id the request named.
        session_id: String,
    },
    /// A session heartbeat's session has expired: the node opens a new one.
    #[error("node session {session_id} expired at {expires_at_ms}: open a new one (POST /nodes/sessions)")]
    SessionExpired {
        /// The session.
        session_id: String,
        /// When it expired (coordinator clock, Unix milliseconds).
        expires_at_ms: i64,
    },
    /// A session heartbeat's MAC did not verify under its session's key.
    #[error("heartbeat mac does not verify under node session {session_id}")]
    BadMac {
        /// The session.
        session_id: String,
    },
    /// A session heartbeat named another node than the one that opened the session.
    #[error("node session {session_id} belongs to another node than {node_id}")]
    WrongSessionNode {
        /// The session.
        session_id: String,
        /// The node the heartbeat named.
        node_id: String,
    },
    /// A signed request's timestamp was outside the accepted skew window.
    #[error("timestamp {timestamp_ms} is {skew_ms} ms away from the coordinator clock (limit {limit_ms} ms)")]
    ClockSkew {
        /// The timestamp in the request.
        timestamp_ms: i64,
        /// Its distance from the coordinator's clock.
        skew_ms: i64,
        /// The accepted distance.
        limit_ms: i64,
    },
    /// The stream key presented by a publisher was wrong.
    #[error("stream key rejected for stream {stream_id}")]
    StreamKeyRejected {
        /// The stream.
        stream_id: String,
    },
    /// A node that is not the stream's origin signed an origin-only request.
    #[error("not the origin of stream {stream_id}: {reason}")]
    NotOrigin {
        /// The stream.
        stream_id: String,
        /// Why the signer was refused.
        reason: String,
    },
    /// A registration named an operator whose name is bound to an operator key, without that
    /// key's signature over the node (`streamr-node --operator-key`).
    #[error("operator name {name:?} is bound to operator key {operator_key}; register with that key's signature over the node (streamr-node --operator-key), or under another name")]
    OperatorNameBound {
        /// The name asked for.
        name: String,
        /// The operator key (hex) it is bound to.
        operator_key: String,
    },
    /// A registration proved membership with an operator key that a rotation retired from the
    /// operator name.
    #[error("operator key {retired_key} of operator name {name:?} was retired by rotation {rotation}; the name is bound to operator key {operator_key}: sign the node with that key (streamr-node --operator-key)")]
    OperatorKeyRetired {
        /// The name asked for (canonical).
        name: String,
        /// The retired key the registration's proof is by.
        retired_key: String,
        /// The rotation that retired it.
        rotation: i64,
        /// The operator key (hex) the name is bound to now.
        operator_key: String,
    },
    /// A rotation statement's old key is not the key its operator name is bound to now.
    #[error("operator name {name:?} is bound to operator key {operator_key}, not to the rotation's old key {old_key}")]
    OperatorKeyNotBound {
        /// The name (canonical).
        name: String,
        /// The key it is bound to now.
        operator_key: String,
        /// The statement's old key.
        old_key: String,
    },
    /// A rotation statement's sequence is not above the name's last accepted rotation: it was
    /// accepted before (a replay) or is out of order.
    #[error("rotation {sequence} of operator name {name:?} is not above its last accepted rotation {last}; sign a new statement with sequence {next}", next = last.saturating_add(1))]
    StaleOperatorRotation {
        /// The name (canonical).
        name: String,
        /// The statement's sequence.
        sequence: u64,
        /// The last accepted sequence.
        last: u64,
    },
    /// The resource does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of resource.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request conflicts with stored state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller exceeded its request rate.
    #[error("rate limit exceeded; retry later")]
    RateLimited,
    /// A viewer key or source prefix spent its grant budget for the epoch.
    #[error("grant budget of {scope} {subject} is spent for this epoch ({spent} of {limit} used, this request needs {cost}); retry in the next epoch")]
    GrantBudgetSpent {
        /// `viewer`, `ipv4/24`, `ipv6/48`, `ipv6/64` or `unknown`.
        scope: String,
        /// The key or prefix.
        subject: String,
        /// Units spent before this request.
        spent: i64,
        /// Units this request needed.
        cost: i64,
        /// The epoch's limit.
        limit: i64,
    },
    /// The coordinator serves as many long-lived answers of this kind as it takes; the
    /// client uses a cheaper way or retries later.
    #[error("busy: {0}")]
    Busy(String),
    /// The coordinator is stopping: a request that was waiting (a part lookup with
    /// `wait_ms`) ends without an answer; the client asks again (another replica, or this one
    /// once it is back).
    #[error("the coordinator is shutting down; ask again")]
    ShuttingDown,
    /// No node can serve the stream right now.
    #[error("no node available for stream {stream_id}")]
    NoNodeAvailable {
        /// The stream.
        stream_id: String,
    },
    /// Storage failed; the client sees a 500 or 503 without internal detail.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Requests that found the database unreachable, in every coordinator of the process: while it
/// is away, each node's heartbeat would log one.
static REQUESTS_UNREACHABLE: Throttle = Throttle::new();
/// Requests whose query failed on a reachable database: throttled apart, so that an outage's
/// lines never hide one.
static REQUESTS_FAILED: Throttle = Throttle::new();
/// Requests that found the database out of disk space: throttled apart, so the cause of a run
/// of 503s is named.
static REQUESTS_OUT_OF_SPACE: Throttle = Throttle::new();

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    message: String,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidPath(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized | ApiError::BadSignature { .. } => StatusCode::UNAUTHORIZED,
            ApiError::ClockSkew { .. }
            | ApiError::UnknownSession { .. }
            | ApiError::SessionExpired { .. }
            | ApiError::BadMac { .. } => StatusCode::UNAUTHORIZED,
            ApiError::WrongSessionNode { .. } => StatusCode::FORBIDDEN,
            ApiError::StreamKeyRejected { .. }
            | ApiError::NotOrigin { .. }
            | ApiError::OperatorNameBound { .. }
            | ApiError::OperatorKeyRetired { .. } => StatusCode::FORBIDDEN,
            ApiError::OperatorKeyNotBound { .. } | ApiError::StaleOperatorRotation { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited | ApiError::GrantBudgetSpent { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NoNodeAvailable { .. } | ApiError::Busy(_) | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Storage(StorageError::ReplayedNonce { .. }) => StatusCode::CONFLICT,
            ApiError::Storage(StorageError::UnknownNode { .. }) => StatusCode::NOT_FOUND,
            ApiError::Storage(StorageError::ConflictingSegment { .. }) => StatusCode::CONFLICT,
            ApiError::Storage(error) if error.is_unreachable() || error.is_out_of_space() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The request field an [`ApiError::InvalidField`] names; `None` for every other error.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A stable machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadSignature { .. } => "bad_signature",
            ApiError::ClockSkew { .. } => "clock_skew",
            ApiError::UnknownSession { .. } => "unknown_session",
            ApiError::SessionExpired { .. } => "session_expired",
            ApiError::BadMac { .. } => "bad_mac",
            ApiError::WrongSessionNode { .. } => "wrong_session_node",
            ApiError::Storage(StorageError::ReplayedNonce { .. }) => "replayed_nonce",
            ApiError::Storage(StorageError::UnknownNode { .. }) => "unknown_node",
            ApiError::StreamKeyRejected { .. } => "stream_key_rejected",
            ApiError::NotOrigin { .. } => "not_origin",
            ApiError::OperatorNameBound { .. } => "operator_name_bound",
            ApiError::OperatorKeyRetired { .. } => "operator_key_retired",
            ApiError::OperatorKeyNotBound { .. } => "operator_key_not_bound",
            ApiError::StaleOperatorRotation { .. } => "stale_operator_rotation",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict(_) | ApiError::Storage(StorageError::ConflictingSegment { .. }) => {
                "conflict"
            }
            ApiError::RateLimited => "rate_limited",
            ApiError::GrantBudgetSpent { .. } => "grant_budget_spent",
            ApiError::NoNodeAvailable { .. } => "no_node_available",
            ApiError::Busy(_) => "busy",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Storage(error) if error.is_unreachable() || error.is_out_of_space() => {
                "storage_unavailable"
            }
            ApiError::Storage(_) => "storage_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Storage(
                err @ (StorageError::ReplayedNonce { .. }
                | StorageError::UnknownNode { .. }
                | StorageError::ConflictingSegment { .. }),
            ) => err.to_string(),
            ApiError::Storage(err) if err.is_out_of_space() => {
                if let Some(unlogged) = REQUESTS_OUT_OF_SPACE.admit(std::time::Instant::now()) {
                    tracing::error!(
                        error = %err,
                        unlogged_since_last = unlogged,
                        "the database is out of disk space: writes are refused (503) and \
                         nothing of them is stored until space is freed; the coordinator \
                         carries on by itself then (logged at most every {}s)",
                        REPEAT_EVERY.as_secs()
                    );
                }
                "the coordinator's database is out of disk space; try again later".to_owned()
            }
            ApiError::Storage(err) if err.is_unreachable() => {
                if let Some(unlogged) = REQUESTS_UNREACHABLE.admit(std::time::Instant::now()) {
                    tracing::error!(
                        error = %err,
                        unlogged_since_last = unlogged,
                        "the database is unreachable while serving requests (logged at most \
                         every {}s)",
                        REPEAT_EVERY.as_secs()
                    );
                }
                "the coordinator's database is unreachable; try again shortly".to_owned()
            }
            ApiError::Storage(err) => {
                if let Some(unlogged) = REQUESTS_FAILED.admit(std::time::Instant::now()) {
                    tracing::error!(
                        error = %err,
                        unlogged_since_last = unlogged,
                        "storage failure while serving a request (logged at most every {}s)",
                        REPEAT_EVERY.as_secs()
                    );
                }
                "internal storage error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: self.code(),
            field: self.field(),
            message,
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(source: sqlx::Error) -> StorageError {
        StorageError::query("list_nodes")(source)
    }

    /// SQLite's "database or disk is full", as a full disk gives it (here: a page limit).
    #[tokio::test]
    async fn a_full_database_is_503_storage_unavailable_and_says_so() {
        use sqlx::Connection as _;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        for statement in ["CREATE TABLE filler (v BLOB)", "PRAGMA max_page_count = 8"] {
            sqlx::query(statement)
                .execute(&mut db)
                .await
                .expect(statement);
        }
        let mut full = None;
        for _ in 0..100 {
            if let Err(error) = sqlx::query("INSERT INTO filler VALUES (zeroblob(4000))")
                .execute(&mut db)
                .await
            {
                full = Some(error);
                break;
            }
        }
        let full = query(full.expect("the database fills up"));
        assert!(full.is_out_of_space(), "{full}");
        let error = ApiError::Storage(full);
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), "storage_unavailable");
        let response = error.into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "storage_unavailable");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("disk space")),
            "{body}"
        );
        let no_space = query(sqlx::Error::Io(std::io::Error::from_raw_os_error(ENOSPC)));
        assert!(no_space.is_out_of_space());
        assert!(!query(sqlx::Error::RowNotFound).is_out_of_space());
    }

    #[test]
    fn an_unreachable_database_is_503_and_a_failed_query_500() {
        for unreachable in [
            query(sqlx::Error::PoolTimedOut),
            query(sqlx::Error::PoolClosed),
            query(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
        ] {
            assert!(unreachable.is_unreachable(), "{unreachable}");
            let error = ApiError::Storage(unreachable);
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error.code(), "storage_unavailable");
        }
        for failed in [
            query(sqlx::Error::RowNotFound),
            query(sqlx::Error::ColumnNotFound("epoch".into())),
            StorageError::UnsupportedUrl { url: "x".into() },
        ] {
            assert!(!failed.is_unreachable(), "{failed}");
            let error = ApiError::Storage(failed);
            assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(error.code(), "storage_error");
        }
    }
}
