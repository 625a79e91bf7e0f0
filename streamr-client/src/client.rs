//! A typed HTTP client for the coordinator API, for friend nodes, viewers and tools.
//!
//! Each method speaks one endpoint with the wire types of [`crate::wire`]; signing stays with
//! `streamr_core` (the client signs registrations and deregistrations with the node key it is
//! handed, nothing else). A refused request comes back as [`ClientError::Status`] with the HTTP
//! status and the coordinator's JSON error body.
//!
//! ```no_run
//! use streamr_client::CoordinatorClient;
//! use streamr_core::KeyPair;
//!
//! # async fn run() -> Result<(), streamr_client::ClientError> {
//! let client = CoordinatorClient::new("http://127.0.0.1:8090")?;
//! let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
//! let play = client.play("show", &viewer.viewer_key()).await?;
//! println!("watch {}", play.http_flv_url);
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use streamr_core::{
    ContentDigest, CoordinatorKey, KeyPair, NodeHandshake, NodeHeartbeat, NodeId, NodeSession,
    OriginClaim, ProbeResult, RewardSplit, SessionError, SessionId, Signed, SignedHeartbeat,
    SignedPartReport, SignedReceipt, SignedSegmentReport, ViewerKey,
};

use crate::grant_token;
use crate::wire::{
    CoordinatorInfo, CreateStreamRequest, CreateStreamResponse, EarningsResponse, HeartbeatRequest,
    NodeDeregistration, NodeInfo, NodePayouts, NodeRegistration, PartInfo, PartReportResponse,
    PartReportsPage, PayoutInfo, PlayResponse, ProbeInfo, ProofResponse, PublishCheckRequest,
    ReceiptsOutcome, ReceiptsRequest, SegmentInfo, SegmentReport, SegmentReportResponse,
    SessionHeartbeatRequest, SetOriginRequest, SettlementInfo, SignedNodeSessionAccept,
    SimulationRequest, StatementResponse, StreamInfo,
};

/// The coordinator's JSON error body (`{"error": code, "field": name, "message": text}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable error code.
    pub error: String,
    /// The request field refused, with the `invalid_field` code (coordinators before it was
    /// added leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong.
    pub message: String,
}

/// What went wrong calling the coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL is not an absolute http(s) URL.
    #[error("coordinator URL {url:?} is not an http:// or https:// URL")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// The request did not complete (connection refused, timeout, reset).
    #[error("{method} {url}: {source}")]
    Transport {
        /// The request method.
        method: Method,
        /// The full request URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with an error status.
    #[error("{method} {url}: HTTP {status}: {}", describe(.body, .raw))]
    Status {
        /// The request method.
        method: Method,
        /// The full request URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The JSON error body, when the answer had one.
        body: Option<Box<ErrorBody>>,
        /// The raw answer text (at most 1 KiB).
        raw: String,
    },
    /// The answer was not the JSON the endpoint documents.
    #[error("{method} {url}: unexpected answer: {source}")]
    Decode {
        /// The request method.
        method: Method,
        /// The full request URL.
        url: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The coordinator's answer to a node session open did not check out (not signed by the
    /// coordinator key the node knows, or not an answer to its own open).
    #[error("{url}: node session handshake refused: {source}")]
    Handshake {
        /// The full request URL.
        url: String,
        /// Why.
        #[source]
        source: SessionError,
    },
}

/// The operating system's random source, for handshake secrets.
fn rand_core_os() -> streamr_core::OsRng {
    streamr_core::OsRng
}

fn describe(body: &Option<Box<ErrorBody>>, raw: &str) -> String {
    match body {
        Some(body) => format!("{} ({})", body.message, body.error),
        None => raw.to_owned(),
    }
}

impl ClientError {
    /// The HTTP status, when the coordinator answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The coordinator's error code (e.g. `stream_key_rejected`), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status {
                body: Some(body), ..
            } => Some(&body.error),
            _ => None,
        }
    }
}

/// The coordinator's answer to a publish check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishVerdict {
    /// The publisher may go live.
    Allowed,
    /// The coordinator has no stream of that id.
    UnknownStream,
    /// The stream key is not the stream's (or the stream has ended).
    KeyRejected,
    /// Another node is the stream's origin.
    NotOrigin {
        /// The coordinator's explanation.
        reason: String,
    },
}

/// What a node tells the coordinator when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAdvert {
    /// Who runs the node.
    pub operator: String,
    /// Where rewards are paid.
    pub payout_address: String,
    /// Base RTMP URL viewers play from (`rtmp://host:port/live`).
    pub rtmp_url: String,
    /// Base HTTP URL for HTTP-FLV and HLS (`http://host:port`).
    pub http_url: String,
    /// Upload capacity in kbit/s.
    pub capacity_kbps: u64,
    /// The operator key's signature over the node id and `operator`
    /// (`OperatorMembership::sign`); without it the node is its own operator, and a name bound
    /// to an operator key is refused.
    pub operator_membership: Option<streamr_core::OperatorMembership>,
}

/// The time for a signed request the coordinator refuses to see twice (an upstream request):
/// the clock, but always after the previous one this process made, so two requests within one
/// millisecond are not taken for a replay.
fn fresh_request_ms() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = unix_ms();
    let previous = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |last| Some(last.saturating_add(1).max(now)),
        )
        .unwrap_or(0);
    previous.saturating_add(1).max(now)
}

/// Milliseconds since the Unix epoch by the local clock.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A client for one coordinator. Cheap to clone (connections are pooled and shared).
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    base: String,
    admin_token: Option<String>,
}

const MAX_RAW_ERROR: usize = 1024;

/// How long past its hold a streamed answer may take to end before the client gives up.
const STREAM_GRACE: Duration = Duration::from_secs(10);

/// Longest line of a streamed part-report answer (a page of 64 reports of 32 parts is about
/// 0.6 MB).
const MAX_STREAM_LINE: usize = 4 << 20;

/// An open `GET /streams/{id}/part-reports/stream` answer, read page by page.
#[derive(Debug)]
pub struct PartReportStream {
    response: reqwest::Response,
    url: String,
    /// Bytes read past the last whole line.
    lines: Lines,
    /// The closing line (a page without reports) was read.
    closed: bool,
}

/// NDJSON bytes split into lines as chunks arrive (sans-IO).
#[derive(Debug, Default)]
struct Lines {
    buffer: Vec<u8>,
}

impl Lines {
    /// Adds a chunk as read.
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole line, its newline included.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buffer.iter().position(|&byte| byte == b'\n')?;
        Some(self.buffer.drain(..=end).collect())
    }

    /// Bytes held past the last whole line.
    fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// How a streamed part-report answer went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamedPage {
    /// A page of reports stored since the last.
    Page(PartReportsPage),
    /// The coordinator closed the answer at the end of its hold (ask again with the last
    /// page's `next`).
    Closed,
    /// The answer ended without its closing line: the connection was cut (ask again with the
    /// last page's `next`; nothing is lost).
    Cut,
}

impl PartReportStream {
    /// The next page, as soon as the coordinator writes it.
    pub async fn next_page(&mut self) -> Result<StreamedPage, ClientError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                let page: PartReportsPage =
                    serde_json::from_slice(&line).map_err(|source| ClientError::Decode {
                        method: Method::GET,
                        url: self.url.clone(),
                        source,
                    })?;
                if page.reports.is_empty() {
                    self.closed = true;
                    return Ok(StreamedPage::Closed);
                }
                return Ok(StreamedPage::Page(page));
            }
            if self.closed {
                return Ok(StreamedPage::Closed);
            }
            if self.lines.pending() > MAX_STREAM_LINE {
                return Err(ClientError::Decode {
                    method: Method::GET,
                    url: self.url.clone(),
                    source: <serde_json::Error as serde::de::Error>::custom(format!(
                        "a line longer than {MAX_STREAM_LINE} bytes"
                    )),
                });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.lines.push(&chunk),
                Ok(None) | Err(_) => return Ok(StreamedPage::Cut),
            }
        }
    }
}

impl CoordinatorClient {
    /// A client for the coordinator at `base_url` (`http://host:port`), with a 10 s request
    /// timeout.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 8 {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                url: base.clone(),
                source,
            })?;
        Ok(CoordinatorClient {
            http,
            base,
            admin_token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` on the endpoints that need the admin token
    /// (creating streams, segment reports, probe reports).
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// The coordinator's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.admin_token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let transport = |source| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let raw = String::from_utf8_lossy(bytes.get(..MAX_RAW_ERROR).unwrap_or(&bytes));
            return Err(ClientError::Status {
                method,
                url,
                status,
                body: serde_json::from_slice(&bytes).ok(),
                raw: raw.into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            url,
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        // Serialising our own wire types cannot fail (string keys, no non-finite floats).
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.call(Method::POST, path, Some(bytes)).await
    }

    /// `POST /nodes`: registers (or re-registers) the node whose key is `node_key`.
    pub async fn register_node(
        &self,
        node_key: &KeyPair,
        advert: &NodeAdvert,
    ) -> Result<NodeInfo, ClientError> {
        let registration = NodeRegistration {
            node_id: node_key.node_id(),
            payout_address: advert.payout_address.clone(),
            operator: advert.operator.clone(),
            rtmp_url: advert.rtmp_url.clone(),
            http_url: advert.http_url.clone(),
            capacity_kbps: advert.capacity_kbps,
            timestamp_ms: unix_ms(),
            operator_membership: advert.operator_membership,
        };
        self.post("/nodes", &Signed::sign(registration, node_key))
            .await
    }

    /// `POST /streams/{id}/upstream`: where this relay (`node_key`) pulls `stream_id` from in
    /// the relay tree, its parent first and the origin last, each with a grant; `failed`
    /// names upstream nodes that just failed it.
    pub async fn upstream(
        &self,
        stream_id: &str,
        node_key: &KeyPair,
        failed: &[NodeId],
    ) -> Result<crate::wire::UpstreamResponse, ClientError> {
        let stream = streamr_core::StreamId::new(stream_id).map_err(|e| ClientError::Decode {
            method: Method::POST,
            url: format!("{}/streams/{stream_id}/upstream", self.base),
            source: serde::de::Error::custom(e),
        })?;
        let request = crate::wire::UpstreamRequest {
            node_id: node_key.node_id(),
            stream_id: stream,
            timestamp_ms: fresh_request_ms(),
            failed: failed.to_vec(),
        };
        self.post(
            &format!("/streams/{stream_id}/upstream"),
            &Signed::sign(request, node_key),
        )
        .await
    }

    /// `POST /nodes/heartbeat`: a signed heartbeat and the viewer receipts it carries.
    pub async fn heartbeat(
        &self,
        heartbeat: SignedHeartbeat,
        receipts: Vec<SignedReceipt>,
    ) -> Result<ReceiptsOutcome, ClientError> {
        self.post(
            "/nodes/heartbeat",
            &HeartbeatRequest {
                heartbeat,
                receipts,
            },
        )
        .await
    }

    /// `POST /nodes/sessions`: opens a node session for `node_key` (a signed handshake with an
    /// ephemeral X25519 share) and checks the answer against `coordinator` (the coordinator key
    /// the node learnt or pins). Heartbeats then go by [`Self::session_heartbeat`].
    pub async fn open_node_session(
        &self,
        node_key: &KeyPair,
        coordinator: &CoordinatorKey,
    ) -> Result<NodeSession, ClientError> {
        let (handshake, open) =
            NodeHandshake::generate(node_key, &mut rand_core_os(), fresh_request_ms());
        let accept: SignedNodeSessionAccept = self.post("/nodes/sessions", &open).await?;
        handshake
            .finish(&accept, coordinator)
            .map_err(|source| ClientError::Handshake {
                url: format!("{}/nodes/sessions", self.base),
                source,
            })
    }

    /// `POST /nodes/session-heartbeat`: a heartbeat authenticated by `session`'s MAC, and the
    /// viewer receipts it carries. Its `bytes_served` and `unattested_bytes` are the session's
    /// running totals (see [`NodeHeartbeat::bytes_served`]). Refused with `unknown_session` or
    /// `session_expired` when the coordinator forgot the session: open a new one (whose totals
    /// start again from zero) and send the heartbeat again.
    pub async fn session_heartbeat(
        &self,
        session: &NodeSession,
        heartbeat: NodeHeartbeat,
        receipts: Vec<SignedReceipt>,
    ) -> Result<ReceiptsOutcome, ClientError> {
        self.post(
            "/nodes/session-heartbeat",
            &SessionHeartbeatRequest::new(session.seal(heartbeat), receipts),
        )
        .await
    }

    /// `POST /nodes/deregister`: the node leaves (it stops being routed to).
    pub async fn deregister_node(&self, node_key: &KeyPair) -> Result<(), ClientError> {
        let body = NodeDeregistration {
            node_id: node_key.node_id(),
            timestamp_ms: unix_ms(),
        };
        let _: serde_json::Value = self
            .post("/nodes/deregister", &Signed::sign(body, node_key))
            .await?;
        Ok(())
    }

    /// `GET /coordinator`: the coordinator's public key (it verifies session grants) and epoch
    /// length.
    pub async fn coordinator_info(&self) -> Result<CoordinatorInfo, ClientError> {
        self.get("/coordinator").await
    }

    /// `GET /nodes`: every registered node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.get("/nodes").await
    }

    /// `GET /nodes/{id}`.
    pub async fn node(&self, node_id: &str) -> Result<NodeInfo, ClientError> {
        self.get(&format!("/nodes/{node_id}")).await
    }

    /// `GET /nodes/{id}/reachability`: whether the coordinator can connect back to the node's
    /// advertised addresses, and which port to forward when not.
    pub async fn reachability(
        &self,
        node_id: &str,
    ) -> Result<crate::wire::ReachabilityReport, ClientError> {
        self.get(&format!("/nodes/{node_id}/reachability")).await
    }

    /// `POST /streams` (admin): creates a stream; the answer holds its stream key. The stream
    /// binds its origin node on the first signed publish check.
    pub async fn create_stream(
        &self,
        stream_id: &str,
        title: &str,
    ) -> Result<CreateStreamResponse, ClientError> {
        self.create_stream_with_origin(stream_id, title, None).await
    }

    /// `POST /streams` (admin): creates a stream whose origin is `origin_node` from the start
    /// (`None`: bound on the first signed publish check).
    pub async fn create_stream_with_origin(
        &self,
        stream_id: &str,
        title: &str,
        origin_node: Option<NodeId>,
    ) -> Result<CreateStreamResponse, ClientError> {
        let id = streamr_core::StreamId::new(stream_id).map_err(|e| ClientError::Decode {
            method: Method::POST,
            url: format!("{}/streams", self.base),
            source: serde::de::Error::custom(e),
        })?;
        self.post(
            "/streams",
            &CreateStreamRequest {
                id,
                title: title.to_owned(),
                origin_node,
            },
        )
        .await
    }

    /// `GET /streams/{id}`.
    pub async fn stream(&self, stream_id: &str) -> Result<StreamInfo, ClientError> {
        self.get(&format!("/streams/{stream_id}")).await
    }

    /// `GET /streams`.
    pub async fn streams(&self) -> Result<Vec<StreamInfo>, ClientError> {
        self.get("/streams").await
    }

    /// `POST /streams/{id}/publish-check`: `Ok(true)` when `stream_key` may publish
    /// `stream_id`, `Ok(false)` when the coordinator refuses it (403/404), an error when it
    /// could not be asked.
    pub async fn publish_check(
        &self,
        stream_id: &str,
        stream_key: &str,
    ) -> Result<bool, ClientError> {
        self.publish_check_request(
            stream_id,
            &PublishCheckRequest {
                stream_key: stream_key.to_owned(),
                origin: None,
            },
        )
        .await
        .map(|verdict| verdict == PublishVerdict::Allowed)
    }

    /// `POST /streams/{id}/publish-check` as the origin node `origin_key`: like
    /// [`Self::publish_check`], with a signed origin claim that binds a stream without an
    /// origin to this node; `Ok(false)` as well when another node is the stream's origin.
    pub async fn publish_check_as_origin(
        &self,
        stream_id: &str,
        stream_key: &str,
        origin_key: &KeyPair,
    ) -> Result<bool, ClientError> {
        self.publish_verdict_as_origin(stream_id, stream_key, origin_key)
            .await
            .map(|verdict| verdict == PublishVerdict::Allowed)
    }

    /// Like [`Self::publish_check_as_origin`], saying why a publisher is refused.
    pub async fn publish_verdict_as_origin(
        &self,
        stream_id: &str,
        stream_key: &str,
        origin_key: &KeyPair,
    ) -> Result<PublishVerdict, ClientError> {
        let stream = streamr_core::StreamId::new(stream_id).map_err(|e| ClientError::Decode {
            method: Method::POST,
            url: format!("{}/streams/{stream_id}/publish-check", self.base),
            source: serde::de::Error::custom(e),
        })?;
        let claim = OriginClaim {
            node_id: origin_key.node_id(),
            stream_id: stream,
            timestamp_ms: unix_ms(),
        };
        self.publish_check_request(
            stream_id,
            &PublishCheckRequest {
                stream_key: stream_key.to_owned(),
                origin: Some(Signed::sign(claim, origin_key)),
            },
        )
        .await
    }

    async fn publish_check_request(
        &self,
        stream_id: &str,
        request: &PublishCheckRequest,
    ) -> Result<PublishVerdict, ClientError> {
        let answer: Result<serde_json::Value, _> = self
            .post(&format!("/streams/{stream_id}/publish-check"), request)
            .await;
        match answer {
            Ok(_) => Ok(PublishVerdict::Allowed),
            Err(error) if error.status() == Some(StatusCode::NOT_FOUND) => {
                Ok(PublishVerdict::UnknownStream)
            }
            Err(error) if error.code() == Some("not_origin") => Ok(PublishVerdict::NotOrigin {
                reason: match &error {
                    ClientError::Status {
                        body: Some(body), ..
                    } => body.message.clone(),
                    _ => String::new(),
                },
            }),
            Err(error) if error.status() == Some(StatusCode::FORBIDDEN) => {
                Ok(PublishVerdict::KeyRejected)
            }
            Err(other) => Err(other),
        }
    }

    /// `POST /streams/{id}/segments` (admin): an operator reports a segment's hash.
    pub async fn report_segment(
        &self,
        stream_id: &str,
        report: &SegmentReport,
    ) -> Result<SegmentReportResponse, ClientError> {
        self.post(&format!("/streams/{stream_id}/segments"), report)
            .await
    }

    /// `POST /streams/{id}/segments`: the stream's origin node reports a segment's hash,
    /// signed with its own key (no admin token needed).
    pub async fn report_segment_signed(
        &self,
        report: &SignedSegmentReport,
    ) -> Result<SegmentReportResponse, ClientError> {
        self.post(
            &format!("/streams/{}/segments", report.body.stream_id),
            report,
        )
        .await
    }

    /// `POST /streams/{id}/parts`: parts the origin cut, signed by the origin node.
    pub async fn report_parts_signed(
        &self,
        report: &SignedPartReport,
    ) -> Result<PartReportResponse, ClientError> {
        self.post(&format!("/streams/{}/parts", report.body.stream_id), report)
            .await
    }

    /// `GET /streams/{id}/parts/{hash}?wait_ms=`: the origin's part whose bytes hash to
    /// `hash`, waiting up to `wait` (at most 5 s) for the origin to report it. 404
    /// `not_found` when it was not reported in time.
    pub async fn part(
        &self,
        stream_id: &str,
        hash: &ContentDigest,
        wait: Duration,
    ) -> Result<PartInfo, ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u16::MAX));
        self.get(&format!(
            "/streams/{stream_id}/parts/{hash}?wait_ms={wait_ms}"
        ))
        .await
    }

    /// `GET /streams/{id}/part-reports?after=&wait_ms=`: the origin's signed part reports
    /// numbered above `after`, oldest first; with none yet, the coordinator waits up to `wait`
    /// (at most 5 s) for one.
    pub async fn part_reports(
        &self,
        stream_id: &str,
        after: u64,
        wait: Duration,
    ) -> Result<PartReportsPage, ClientError> {
        let wait_ms = wait.as_millis().min(5_000);
        self.get(&format!(
            "/streams/{stream_id}/part-reports?after={after}&wait_ms={wait_ms}"
        ))
        .await
    }

    /// `GET /streams/{id}/part-reports/stream?after=&hold_ms=`: the origin's signed part
    /// reports numbered above `after` as the coordinator stores them, over one answer held
    /// open `hold` (1-60 s); read it with [`PartReportStream::next_page`]. A coordinator
    /// without the endpoint answers 404 (older) and one with too many open answers 503
    /// `busy`: use [`part_reports`](Self::part_reports) then.
    pub async fn part_report_stream(
        &self,
        stream_id: &str,
        after: u64,
        hold: Duration,
    ) -> Result<PartReportStream, ClientError> {
        let hold_ms = hold.as_millis().clamp(1_000, 60_000);
        let url = format!(
            "{}/streams/{stream_id}/part-reports/stream?after={after}&hold_ms={hold_ms}",
            self.base
        );
        let transport = |source| ClientError::Transport {
            method: Method::GET,
            url: url.clone(),
            source,
        };
        // The client's 10 s deadline would cut every answer: this one ends with the hold.
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_millis(u64::try_from(hold_ms).unwrap_or(60_000)) + STREAM_GRACE)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            let raw = String::from_utf8_lossy(bytes.get(..MAX_RAW_ERROR).unwrap_or(&bytes));
            return Err(ClientError::Status {
                method: Method::GET,
                url,
                status,
                body: serde_json::from_slice(&bytes).ok(),
                raw: raw.into_owned(),
            });
        }
        Ok(PartReportStream {
            response,
            url,
            lines: Lines::default(),
            closed: false,
        })
    }

    /// `GET /streams/{id}/segments`: the origin's reported segments, newest first.
    pub async fn segments(
        &self,
        stream_id: &str,
        limit: u16,
    ) -> Result<Vec<SegmentInfo>, ClientError> {
        self.get(&format!("/streams/{stream_id}/segments?limit={limit}"))
            .await
    }

    /// `GET /streams/{id}/play?viewer=`: routes the viewer to a node. The returned URLs carry
    /// the grant as `?grant=<token>` (see [`crate::grant_token`]) so any player can use them.
    pub async fn play(
        &self,
        stream_id: &str,
        viewer: &ViewerKey,
    ) -> Result<PlayResponse, ClientError> {
        self.play_excluding(stream_id, viewer, &[]).await
    }

    /// Like [`play`](Self::play), leaving out `exclude`: nodes that just failed this viewer.
    /// Reports from several granted viewers also make the coordinator treat such a node as
    /// down until its next heartbeat.
    pub async fn play_excluding(
        &self,
        stream_id: &str,
        viewer: &ViewerKey,
        exclude: &[NodeId],
    ) -> Result<PlayResponse, ClientError> {
        self.fail_over(stream_id, viewer, exclude, None).await
    }

    /// Like [`play_excluding`](Self::play_excluding), carrying `previous`: the session id of
    /// this viewer's still-live grant for the stream, on a node in `exclude`. Such a fail-over
    /// is not charged to the viewer's grant budget, and ends that grant; a grant is carried
    /// once.
    pub async fn fail_over(
        &self,
        stream_id: &str,
        viewer: &ViewerKey,
        exclude: &[NodeId],
        previous: Option<SessionId>,
    ) -> Result<PlayResponse, ClientError> {
        let mut path = format!("/streams/{stream_id}/play?viewer={viewer}");
        if let Some(previous) = previous {
            path.push_str(&format!("&previous={previous}"));
        }
        for node in exclude {
            path.push_str(&format!("&exclude={node}"));
        }
        let mut play: PlayResponse = self.get(&path).await?;
        play.rtmp_url = grant_token::with_grant(&play.rtmp_url, &play.grant);
        play.http_flv_url = grant_token::with_grant(&play.http_flv_url, &play.grant);
        play.hls_url = grant_token::with_grant(&play.hls_url, &play.grant);
        Ok(play)
    }

    /// `POST /streams/{id}/origin` (admin): binds the stream to another origin node, or clears
    /// the binding (`None`) so the next node that signs a successful publish check is bound.
    pub async fn set_origin(
        &self,
        stream_id: &str,
        origin_node: Option<NodeId>,
    ) -> Result<StreamInfo, ClientError> {
        self.post(
            &format!("/streams/{stream_id}/origin"),
            &SetOriginRequest { origin_node },
        )
        .await
    }

    /// `POST /streams/{id}/key` (admin): replaces the stream key; the answer holds the new one.
    pub async fn rotate_stream_key(
        &self,
        stream_id: &str,
    ) -> Result<CreateStreamResponse, ClientError> {
        self.post(&format!("/streams/{stream_id}/key"), &serde_json::json!({}))
            .await
    }

    /// `POST /receipts`: receipts a viewer hands in itself.
    pub async fn post_receipts(
        &self,
        receipts: Vec<SignedReceipt>,
    ) -> Result<ReceiptsOutcome, ClientError> {
        self.post("/receipts", &ReceiptsRequest { receipts }).await
    }

    /// `POST /probes` (admin): records a probe result.
    pub async fn report_probe(&self, result: &ProbeResult) -> Result<ProbeInfo, ClientError> {
        self.post("/probes", result).await
    }

    /// `GET /nodes/{id}/earnings`: a node's vesting total, ledger entries and payouts.
    pub async fn earnings(&self, node_id: &NodeId) -> Result<EarningsResponse, ClientError> {
        self.get(&format!("/nodes/{node_id}/earnings")).await
    }

    /// `GET /nodes/{id}/payouts`: a node's rewards by stage (unvested, vested, pending, paid,
    /// fees), the payout policy and every payout, pending and sent.
    pub async fn node_payouts(&self, node_id: &str) -> Result<NodePayouts, ClientError> {
        self.get(&format!("/nodes/{node_id}/payouts")).await
    }

    /// `GET /epochs?limit=`: the newest settled epochs first.
    pub async fn epochs(&self, limit: u16) -> Result<Vec<SettlementInfo>, ClientError> {
        self.get(&format!("/epochs?limit={limit}")).await
    }

    /// `GET /epochs/{epoch}`: an epoch's statement (settlement, ledger entries, evidence).
    pub async fn statement(&self, epoch: i64) -> Result<StatementResponse, ClientError> {
        self.get(&format!("/epochs/{epoch}")).await
    }

    /// `GET /epochs/{epoch}/proofs/{node}`: the node's balance leaf and its Merkle path to the
    /// epoch's published root. Check it with [`ProofResponse::verify`] before trusting it.
    pub async fn proof(&self, epoch: i64, node_id: &NodeId) -> Result<ProofResponse, ClientError> {
        self.get(&format!("/epochs/{epoch}/proofs/{node_id}")).await
    }

    /// `GET /payouts/pending?limit=` (admin): payouts not yet confirmed by the payout sink.
    pub async fn pending_payouts(&self, limit: u16) -> Result<Vec<PayoutInfo>, ClientError> {
        self.get(&format!("/payouts/pending?limit={limit}")).await
    }

    /// `POST /simulate`: the reward split the coordinator would make for hypothetical inputs.
    pub async fn simulate(&self, request: &SimulationRequest) -> Result<RewardSplit, ClientError> {
        self.post("/simulate", request).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use streamr_core::{KeyPair, OriginPartReport, StreamId};

    use super::*;
    use crate::wire::NumberedPartReport;

    fn page(seqs: &[u64]) -> PartReportsPage {
        let origin = KeyPair::from_seed([5; 32]);
        let reports = seqs
            .iter()
            .map(|&seq| NumberedPartReport {
                seq,
                report: Signed::sign(
                    OriginPartReport {
                        node_id: origin.node_id(),
                        stream_id: StreamId::new("show").expect("stream id"),
                        run: seq,
                        parts: vec![],
                        timestamp_ms: seq,
                    },
                    &origin,
                ),
            })
            .collect();
        PartReportsPage {
            reports,
            next: seqs.last().copied().unwrap_or(0),
        }
    }

    proptest! {
        /// Pages written as NDJSON come back the same however the bytes are chunked.
        #[test]
        fn streamed_pages_survive_any_chunking(
            pages in proptest::collection::vec(proptest::collection::vec(1u64..1_000, 0..4), 0..6),
            cuts in proptest::collection::vec(1usize..400, 0..40),
        ) {
            let pages: Vec<PartReportsPage> = pages.iter().map(|seqs| page(seqs)).collect();
            let mut bytes = Vec::new();
            for page in &pages {
                bytes.extend(serde_json::to_vec(page).expect("serialise"));
                bytes.push(b'\n');
            }
            let mut lines = Lines::default();
            let mut read = Vec::new();
            let mut rest = bytes.as_slice();
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let at = cuts.next().unwrap_or(rest.len()).min(rest.len());
                let (chunk, after) = rest.split_at(at);
                lines.push(chunk);
                rest = after;
                while let Some(line) = lines.next_line() {
                    read.push(serde_json::from_slice::<PartReportsPage>(&line).expect("a page"));
                }
            }
            prop_assert_eq!(lines.pending(), 0);
            prop_assert_eq!(read, pages);
        }
    }
}
