//! What every viewer request passes through: the grant check, the on-demand upstream pull,
//! the bytes served per session, and the receipts viewers hand the node. Shared by the RTMP
//! hooks and the HTTP middleware.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use streamr_client::client::{unix_ms, CoordinatorClient, PublishVerdict};
use streamr_client::grant_token;
use streamr_client::wire::{ReceiptsOutcome, ReceiptsRequest};
use streamr_core::{KeyPair, SessionGrant, SessionId, SignedReceipt};
use streamr_media::name::NameError;
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::server::{Refusal, RelayHooks, StreamEvent, StreamRequest};
use streamr_media::upstream::UpstreamPuller;

use crate::accounting::{self, Accounting};
use crate::grants::{GrantChecker, GrantRefusal};
use crate::origin_gate::{Admission, OriginGate, OriginRefusal};

/// Sessions kept for receipt checks; the oldest are forgotten beyond this.
const MAX_SESSIONS: usize = 100_000;
/// Largest playlist rewritten to carry grants.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// The origin's publish check: the coordinator, and the node key its origin claims are
/// signed with.
pub(crate) struct OriginCheck {
    pub(crate) client: CoordinatorClient,
    pub(crate) key: KeyPair,
}

impl std::fmt::Debug for OriginCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCheck")
            .field("client", &self.client)
            .field("node_id", &self.key.node_id())
            .finish()
    }
}

/// State shared by the RTMP hooks, the HTTP middleware and the heartbeat task.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) hub: RelayHub,
    pub(crate) puller: Option<UpstreamPuller>,
    pub(crate) grants: Option<GrantChecker>,
    /// The coordinator to ask about publishers' stream keys, and the node key that signs the
    /// origin claim sent with each check (origin role).
    pub(crate) publish_check: Option<OriginCheck>,
    /// How long an HTTP request waits for a pull to deliver the stream.
    pub(crate) pull_wait: Duration,
    /// Bytes served per granted session, for the heartbeats' claims.
    pub(crate) accounting: Accounting,
    /// Who may play at this origin (`None`: anyone; see [`OriginGate`]).
    pub(crate) origin_gate: Option<OriginGate>,
    sessions: Mutex<HashMap<SessionId, SessionGrant>>,
    receipts: Mutex<HashMap<SessionId, SignedReceipt>>,
}

/// A granted request: its session and the counter its HTTP response bytes add to (`None`
/// when the accounting table is full).
struct Admitted {
    session: SessionId,
    counter: Option<Arc<AtomicU64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    pub(crate) fn new(
        hub: RelayHub,
        puller: Option<UpstreamPuller>,
        grants: Option<GrantChecker>,
        publish_check: Option<OriginCheck>,
        pull_wait: Duration,
        receipt_grace: Duration,
    ) -> Self {
        Gate {
            hub,
            puller,
            grants,
            publish_check,
            pull_wait,
            accounting: Accounting::new(receipt_grace),
            origin_gate: None,
            sessions: Mutex::default(),
            receipts: Mutex::default(),
        }
    }

    /// Serves only the network's relays and granted viewers at this origin.
    pub(crate) fn with_origin_gate(mut self, origin_gate: OriginGate) -> Self {
        self.origin_gate = Some(origin_gate);
        self
    }

    /// Admits a play at the origin when it is gated (anyone when it is not).
    async fn admit_at_origin(&self, query: &str, key: &StreamKey) -> Result<(), OriginRefusal> {
        let Some(origin_gate) = &self.origin_gate else {
            return Ok(());
        };
        match origin_gate.admit(query, &key.name, unix_ms()).await? {
            Admission::Relay(node) => {
                tracing::debug!(stream = %key, relay = %node, "relay admitted");
            }
            Admission::Viewer => {}
        }
        Ok(())
    }

    /// Checks the grant (when grants are enforced) and remembers the session it opens;
    /// `None` when grants are not enforced.
    fn admit(&self, query: &str, key: &StreamKey) -> Result<Option<Admitted>, GrantRefusal> {
        let Some(checker) = &self.grants else {
            return Ok(None);
        };
        let now = unix_ms();
        let grant = checker.check(query, &key.name, now)?;
        let counter = self.accounting.open(&grant, now);
        let session = grant.session_id;
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, grant| grant.expiry_ms > now);
        }
        if sessions.len() < MAX_SESSIONS {
            sessions.insert(grant.session_id, grant);
        }
        Ok(Some(Admitted { session, counter }))
    }

    /// Starts (or joins) the pull of `key` in the relay role.
    fn pull(&self, key: &StreamKey) {
        if let Some(puller) = &self.puller {
            puller.ensure(key);
        }
    }

    /// Waits up to the pull wait for `key` to be published here (pulled or local).
    async fn wait_for(&self, key: &StreamKey) {
        if self.puller.is_none() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.pull_wait;
        while !self.hub.is_publishing(key) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps the newest receipt per session for the next heartbeat. Receipts must come from
    /// the viewer of a session this node admitted.
    pub(crate) fn accept_receipts(&self, receipts: Vec<SignedReceipt>) -> ReceiptsOutcome {
        let mut outcome = ReceiptsOutcome::default();
        let sessions = lock(&self.sessions);
        let mut kept = lock(&self.receipts);
        for receipt in receipts {
            let session = receipt.body.session_id;
            let Some(grant) = sessions.get(&session) else {
                outcome
                    .rejected
                    .push(format!("session {session}: not served by this node"));
                continue;
            };
            let verified = grant
                .viewer
                .verifying_key()
                .and_then(|key| receipt.verify_with(&key).map(|_| ()));
            if verified.is_err() {
                outcome
                    .rejected
                    .push(format!("session {session}: not signed by its viewer"));
                continue;
            }
            self.accounting
                .receipted(&session, receipt.body.bytes_total, unix_ms());
            let newer = kept
                .get(&session)
                .is_none_or(|old| old.body.seq < receipt.body.seq);
            if newer {
                kept.insert(session, receipt);
                outcome.accepted += 1;
            } else {
                outcome.rejected.push(format!(
                    "session {session}: not newer than the kept receipt"
                ));
            }
        }
        outcome
    }

    /// Hands over the receipts kept since the last call.
    pub(crate) fn take_receipts(&self) -> Vec<SignedReceipt> {
        lock(&self.receipts).drain().map(|(_, r)| r).collect()
    }

    /// Puts back receipts a failed heartbeat could not deliver (unless newer ones arrived).
    pub(crate) fn restore_receipts(&self, receipts: Vec<SignedReceipt>) {
        let mut kept = lock(&self.receipts);
        for receipt in receipts {
            kept.entry(receipt.body.session_id).or_insert(receipt);
        }
    }
}

/// The RTMP side: publish checks (origin), grants and pulls (relay).
#[derive(Debug, Clone)]
pub(crate) struct NodeHooks(pub(crate) std::sync::Arc<Gate>);

#[async_trait]
impl RelayHooks for NodeHooks {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let Some(OriginCheck {
            client,
            key: node_key,
        }) = &self.0.publish_check
        else {
            return Ok(());
        };
        let stream_key = request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("key="))
            .unwrap_or_default();
        match client
            .publish_verdict_as_origin(&request.key.name, stream_key, node_key)
            .await
        {
            Ok(PublishVerdict::Allowed) => Ok(()),
            Ok(refused) => {
                let reason = match refused {
                    PublishVerdict::UnknownStream => {
                        "the coordinator has no such stream (create it with POST /streams)".into()
                    }
                    PublishVerdict::NotOrigin { reason } => {
                        format!("this node is not the stream's origin: {reason}")
                    }
                    _ => "wrong stream key (or the stream has ended)".to_owned(),
                };
                tracing::warn!(stream = %request.key, peer = %request.peer, %reason,
                    "publish refused");
                Err(Refusal::new(reason))
            }
            Err(error) => {
                tracing::warn!(stream = %request.key, peer = %request.peer, %error,
                    "cannot ask the coordinator about a publisher; refusing it");
                Err(Refusal::new(
                    "the coordinator cannot be reached to check the key",
                ))
            }
        }
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        if let Err(refusal) = self.0.admit_at_origin(&request.query, &request.key).await {
            tracing::info!(stream = %request.key, peer = %request.peer, %refusal,
                "play at the origin refused");
            return Err(Refusal::new(refusal.to_string()));
        }
        match self.0.admit(&request.query, &request.key) {
            Err(refusal) => {
                tracing::info!(stream = %request.key, peer = %request.peer, %refusal,
                    "play refused");
                return Err(Refusal::new(refusal.to_string()));
            }
            Ok(Some(admitted)) => self
                .0
                .accounting
                .rtmp_admitted(request.peer, admitted.session),
            Ok(None) => {}
        }
        self.0.pull(&request.key);
        Ok(())
    }

    /// Ties RTMP plays to their sessions for the byte accounting.
    async fn on_event(&self, event: StreamEvent) {
        match event {
            StreamEvent::PlayStarted {
                key,
                peer,
                viewer_id,
            } => self.0.accounting.rtmp_started(&key, peer, viewer_id),
            StreamEvent::PlayEnded { key, peer, stats } => {
                self.0.accounting.rtmp_ended(&key, peer, &stats)
            }
            _ => {}
        }
    }
}

/// What an HTTP path asks for.
enum Target {
    /// `/{app}/{name}.m3u8`, or `/{app}/{name}/index.m3u8` (rewritten to the former).
    Playlist { key: StreamKey, alias: bool },
    /// `/{app}/{name}.flv`.
    Flv(StreamKey),
    /// `/{app}/{name}/{sequence}.ts`, or an LL-HLS file (`init-*.mp4`, `{msn}.m4s`,
    /// `{msn}.{part}.m4s`).
    Segment(StreamKey),
}

/// What `path` asks for: `None` when it is no stream path, an error when it is one with an
/// invalid app or stream name (checked on the raw path, so no escaped form slips past).
fn target(path: &str) -> Option<Result<Target, NameError>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let target = match parts.as_slice() {
        [app, file] => {
            if let Some(name) = file.strip_suffix(".m3u8") {
                StreamKey::parse(app, name).map(|key| Target::Playlist { key, alias: false })
            } else {
                let name = file.strip_suffix(".flv")?;
                StreamKey::parse(app, name).map(Target::Flv)
            }
        }
        [app, name, "index.m3u8"] => {
            StreamKey::parse(app, name).map(|key| Target::Playlist { key, alias: true })
        }
        // The LL-HLS playlist: served as it is, with its grant carried onto every URI.
        [app, name, "ll.m3u8"] => {
            StreamKey::parse(app, name).map(|key| Target::Playlist { key, alias: false })
        }
        [app, name, file]
            if file.ends_with(".ts") || file.ends_with(".m4s") || file.ends_with(".mp4") =>
        {
            StreamKey::parse(app, name).map(Target::Segment)
        }
        _ => return None,
    };
    Some(target)
}

fn invalid_name(error: &NameError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({
            "error": "invalid_name",
            "message": error.to_string(),
        })),
    )
        .into_response()
}

fn forbidden(key: &StreamKey, refusal: &GrantRefusal) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({
            "error": "grant_refused",
            "message": refusal.to_string(),
            "stream": format!("{}/{}", key.app, key.name),
        })),
    )
        .into_response()
}

fn origin_forbidden(key: &StreamKey, refusal: &OriginRefusal) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({
            "error": "origin_play_refused",
            "message": refusal.to_string(),
            "stream": format!("{}/{}", key.app, key.name),
        })),
    )
        .into_response()
}

/// Points every segment of a playlist at `/{app}/{name}/{sequence}.ts?grant=<token>` so
/// players that drop the playlist's query string still present the grant.
fn playlist_with_grant(body: &str, key: &StreamKey, token: &str) -> String {
    let with_grant = |uri: &str| {
        let file = uri.rsplit('/').next().unwrap_or(uri);
        format!(
            "/{}/{}/{file}?{}={token}",
            key.app,
            key.name,
            grant_token::GRANT_PARAM
        )
    };
    body.lines()
        .map(|line| {
            if line.is_empty() {
                line.to_owned()
            } else if line.starts_with('#') {
                // LL-HLS tags name their files in a URI attribute (EXT-X-MAP, EXT-X-PART,
                // EXT-X-PRELOAD-HINT).
                match line.split_once("URI=\"") {
                    Some((head, rest)) => match rest.split_once('"') {
                        Some((uri, tail)) => format!("{head}URI=\"{}\"{tail}", with_grant(uri)),
                        None => line.to_owned(),
                    },
                    None => line.to_owned(),
                }
            } else {
                with_grant(line)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// HTTP middleware around the media router: grants, pulls, the `index.m3u8` alias.
pub(crate) async fn http_gate(
    State(gate): State<std::sync::Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    let target = match target(request.uri().path()) {
        None => return next.run(request).await,
        Some(Err(error)) => return invalid_name(&error),
        Some(Ok(target)) => target,
    };
    let query = request.uri().query().unwrap_or_default().to_owned();
    let (key, playlist) = match &target {
        Target::Playlist { key, .. } => (key.clone(), true),
        Target::Flv(key) | Target::Segment(key) => (key.clone(), false),
    };
    if let Err(refusal) = gate.admit_at_origin(&query, &key).await {
        return origin_forbidden(&key, &refusal);
    }
    let counter = match gate.admit(&query, &key) {
        Ok(admitted) => admitted.and_then(|a| a.counter),
        Err(refusal) => return forbidden(&key, &refusal),
    };
    gate.pull(&key);
    gate.wait_for(&key).await;
    if let Target::Playlist { alias: true, .. } = target {
        let rewritten = format!("/{}/{}.m3u8?{query}", key.app, key.name);
        if let Ok(uri) = rewritten.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    if let Some(counter) = &counter {
        // HTTP-FLV streamed on the raw connection counts its bytes itself.
        request
            .extensions_mut()
            .get_or_insert_default::<streamr_media::http::ResponseByteCounters>()
            .push(counter.clone());
    }
    let response = next.run(request).await;
    let response = if playlist {
        with_grant(response, &key, &query).await
    } else {
        response
    };
    match counter {
        Some(counter) if response.status().is_success() => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, accounting::counted(body, counter))
        }
        _ => response,
    }
}

/// Rewrites a successful playlist response so its segments carry the request's grant.
async fn with_grant(response: Response, key: &StreamKey, query: &str) -> Response {
    let token = grant_token::from_query(query).map(str::to_owned);
    let (Some(token), true) = (token, response.status().is_success()) else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PLAYLIST_BYTES).await else {
        return (StatusCode::BAD_GATEWAY, "playlist too large").into_response();
    };
    let text = playlist_with_grant(&String::from_utf8_lossy(&bytes), key, &token);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

/// `POST /receipts`: viewer-signed cumulative receipts, kept for the next heartbeat.
pub(crate) async fn post_receipts(
    State(gate): State<std::sync::Arc<Gate>>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<ReceiptsRequest>(&body) {
        Ok(request) => Json(gate.accept_receipts(request.receipts)).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "invalid_json",
                "message": format!("expected {{\"receipts\": [signed receipts]}}: {error}"),
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_stream() {
        assert!(matches!(target("/live/show.flv"), Some(Ok(Target::Flv(k))) if k.name == "show"));
        assert!(matches!(
            target("/live/show/index.m3u8"),
            Some(Ok(Target::Playlist { alias: true, key })) if key.name == "show"
        ));
        assert!(
            matches!(target("/live/show/12.ts"), Some(Ok(Target::Segment(k))) if k.app == "live")
        );
        assert!(target("/receipts").is_none());
        assert!(target("/a/b/c/d").is_none());
    }

    #[test]
    fn stream_paths_with_invalid_names_are_refused_not_passed_on() {
        for path in [
            "/live/%2E%2E.m3u8",
            "/live/show%41.flv",
            "/../x.m3u8",
            "/live/.hidden/1.ts",
            "/live/a..b/index.m3u8",
        ] {
            assert!(matches!(target(path), Some(Err(_))), "{path}");
        }
    }

    #[test]
    fn playlist_segments_carry_the_grant() {
        let body = "#EXTM3U\n#EXTINF:2.000,\nshow/3.ts\n";
        let out = playlist_with_grant(body, &StreamKey::parse("live", "show").unwrap(), "ab");
        assert_eq!(out, "#EXTM3U\n#EXTINF:2.000,\n/live/show/3.ts?grant=ab\n");
    }

    #[test]
    fn ll_hls_uris_carry_the_grant() {
        let body = "#EXTM3U\n#EXT-X-MAP:URI=\"init-ab.mp4\"\n\
                    #EXT-X-PART:DURATION=0.320,URI=\"4.0.m4s\",INDEPENDENT=YES\n\
                    #EXTINF:2.000,\n4.m4s\n\
                    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"5.0.m4s\"\n";
        let out = playlist_with_grant(body, &StreamKey::parse("live", "show").unwrap(), "ab");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"/live/show/init-ab.mp4?grant=ab\"\n\
             #EXT-X-PART:DURATION=0.320,URI=\"/live/show/4.0.m4s?grant=ab\",INDEPENDENT=YES\n\
             #EXTINF:2.000,\n/live/show/4.m4s?grant=ab\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/live/show/5.0.m4s?grant=ab\"\n"
        );
        assert!(matches!(
            target("/live/show/ll.m3u8"),
            Some(Ok(Target::Playlist { alias: false, .. }))
        ));
        for file in ["4.m4s", "4.0.m4s", "init-ab.mp4"] {
            assert!(matches!(
                target(&format!("/live/show/{file}")),
                Some(Ok(Target::Segment(_)))
            ));
        }
    }
}
