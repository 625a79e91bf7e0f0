//! The HTTP side of a [`PlayGate`]: every stream request (playlist, segment, part, init section,
//! HTTP-FLV) is authorized by the same hooks as an RTMP play, a stream this server does not have
//! is pulled on demand and waited for, and an accepted playlist's query (the token) is carried
//! onto the URIs it names.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use percent_encoding::percent_decode_str;

use super::flv_raw::ResponseByteCounters;
use super::router::{router, HttpState};
use super::LiveHls;
use crate::hls::{carried_query, playlist_for_alias, playlist_with_query};
use crate::name::NameError;
use crate::relay::{RelayHub, StreamKey};
use crate::server::{PlayGate, Protocol, Refusal, RefusalKind, StreamRequest, StreamWait};

/// Largest playlist rewritten to carry a query.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// What the gate middleware holds.
#[derive(Debug, Clone)]
pub(super) struct GateState {
    pub(super) gate: PlayGate,
    pub(super) hub: RelayHub,
    /// Whose playlists are served without waiting for a pull.
    pub(super) hls: LiveHls,
}

/// The media routes of [`router`] behind `gate`: see the module docs. Also serves
/// `/{app}/{stream}/index.m3u8` as `/{app}/{stream}.m3u8`.
pub fn gated_router(state: HttpState, gate: PlayGate) -> Router {
    let hub = state.hub().clone();
    let hls = state.live_hls().clone();
    // Outside the media router, so a rewritten path (the `index.m3u8` alias) is routed anew.
    Router::new()
        .fallback_service(router(state))
        .layer(axum::middleware::from_fn_with_state(
            GateState { gate, hub, hls },
            gate_request,
        ))
}

/// What an HTTP path asks for.
#[derive(Debug)]
pub(super) enum Target {
    /// `/{app}/{name}.m3u8`, `/{app}/{name}/ll.m3u8`, `/{app}/{name}/master.m3u8` (the
    /// multivariant playlist), or `/{app}/{name}/index.m3u8` (`alias`, served as the first).
    Playlist { key: StreamKey, alias: bool },
    /// `/{app}/{name}.flv`.
    Flv(StreamKey),
    /// `/{app}/{name}/{sequence}.ts`, or an LL-HLS file (`init-*.mp4`, `{msn}.m4s`,
    /// `{msn}.{part}.m4s`).
    Segment(StreamKey),
}

impl Target {
    pub(super) fn key(&self) -> &StreamKey {
        match self {
            Target::Playlist { key, .. } | Target::Flv(key) | Target::Segment(key) => key,
        }
    }

    fn protocol(&self) -> Protocol {
        match self {
            Target::Flv(_) => Protocol::HttpFlv,
            Target::Playlist { .. } | Target::Segment(_) => Protocol::Hls,
        }
    }
}

/// What `path` asks for: `None` when it is no stream path, an error when it is one with an
/// invalid app or stream name.
///
/// The path is split at its raw `/`s and each segment percent-decoded to tell what it asks
/// for, as the router reads it, so an escaped suffix (`demo%2Eflv`, `1%2Ets`) is the same
/// target as the plain one and meets the same checks. Names are parsed from the raw segments:
/// a name never needs escaping, so an escaped one is refused rather than decoded. A segment
/// that does not decode to UTF-8 is no stream path (the router refuses it too).
pub(super) fn target(path: &str) -> Option<Result<Target, NameError>> {
    let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let decoded: Vec<Cow<'_, str>> = raw
        .iter()
        .map(|segment| percent_decode_str(segment).decode_utf8())
        .collect::<Result<_, _>>()
        .ok()?;
    let parts: Vec<&str> = decoded.iter().map(|segment| segment.as_ref()).collect();
    let key = |app: &str, name: &str| StreamKey::parse(app, name);
    let target = match (parts.as_slice(), raw.as_slice()) {
        ([_, file], [app, raw_file]) => {
            let suffix = if file.ends_with(".m3u8") {
                ".m3u8"
            } else if file.ends_with(".flv") {
                ".flv"
            } else {
                return None;
            };
            // Unescaped, the suffix ends the raw segment too; escaped, the whole raw segment is
            // taken as the name, whose `%` fails the name check.
            let name = raw_file.strip_suffix(suffix).unwrap_or(raw_file);
            let key = key(app, name);
            if suffix == ".flv" {
                key.map(Target::Flv)
            } else {
                key.map(|key| Target::Playlist { key, alias: false })
            }
        }
        ([_, _, "index.m3u8"], [app, name, _]) => {
            key(app, name).map(|key| Target::Playlist { key, alias: true })
        }
        ([_, _, "ll.m3u8" | crate::hls::MULTIVARIANT_NAME], [app, name, _]) => {
            key(app, name).map(|key| Target::Playlist { key, alias: false })
        }
        ([_, _, file], [app, name, _])
            if file.ends_with(".ts") || file.ends_with(".m4s") || file.ends_with(".mp4") =>
        {
            key(app, name).map(Target::Segment)
        }
        _ => return None,
    };
    Some(target)
}

fn json_error(status: StatusCode, error: &str, message: &str, key: &StreamKey) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({
            "error": error,
            "message": message,
            "stream": format!("{}/{}", key.app, key.name),
        })),
    )
        .into_response()
}

pub(super) fn invalid_name(error: &NameError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({ "error": "invalid_name", "message": error.to_string() })),
    )
        .into_response()
}

fn refused(refusal: &Refusal, key: &StreamKey) -> Response {
    let status = match refusal.kind {
        RefusalKind::Unauthorized => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    json_error(status, &refusal.code, &refusal.reason, key)
}

async fn gate_request(
    State(state): State<GateState>,
    mut request: Request,
    next: Next,
) -> Response {
    let target = match target(request.uri().path()) {
        None => return next.run(request).await,
        Some(Err(error)) => return invalid_name(&error),
        Some(Ok(target)) => target,
    };
    let query = request.uri().query().unwrap_or_default().to_owned();
    let byte_counter = match state.admit(&target, &query, peer_of(&request)).await {
        Ok(byte_counter) => byte_counter,
        Err(response) => return response,
    };
    let key = target.key();
    if let Target::Playlist { alias: true, .. } = target {
        if let Some(uri) = alias_uri(key, &query) {
            *request.uri_mut() = uri;
        }
    }
    if let Some(counter) = &byte_counter {
        // HTTP-FLV streamed on the raw connection counts its bytes itself.
        request
            .extensions_mut()
            .get_or_insert_default::<ResponseByteCounters>()
            .push(counter.clone());
    }
    let response = next.run(request).await;
    finish(response, &target, &query, byte_counter).await
}

/// The peer address the HTTP loop put into `request`'s extensions.
pub(super) fn peer_of<B>(request: &axum::http::Request<B>) -> SocketAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0)
}

/// The path an `index.m3u8` alias is served as (`None`: it does not make a URI, and the
/// request goes on under its own path).
pub(super) fn alias_uri(key: &StreamKey, query: &str) -> Option<Uri> {
    format!("/{}/{}.m3u8?{query}", key.app, key.name)
        .parse::<Uri>()
        .ok()
}

impl GateState {
    /// Runs the play hooks for `target` and waits for its stream (relay-on-demand): the
    /// admission's byte counter, or the response refusing the request.
    ///
    /// An HLS request for a stream whose playlist is served here (live, or ended and kept)
    /// does not wait: what the playlist lists is in memory, a blocking reload is held by live
    /// HLS itself (for at most three target durations, and not at all once the playlist
    /// ended), and a relay whose pull ended (its origin's publisher left) would otherwise
    /// hold every request for the pull wait before answering from the same playlist.
    pub(super) async fn admit(
        &self,
        target: &Target,
        query: &str,
        peer: SocketAddr,
    ) -> Result<Option<Arc<AtomicU64>>, Response> {
        let key = target.key();
        let stream_request = StreamRequest::new(key.clone(), query, peer, target.protocol());
        let admission = match self.gate.admit(&stream_request).await {
            Ok(admission) => admission,
            Err(refusal) => {
                tracing::debug!(stream = %key, %peer, protocol = %target.protocol(), %refusal,
                    "play refused");
                return Err(refused(&refusal, key));
            }
        };
        let hls_served = matches!(target, Target::Playlist { .. } | Target::Segment(_))
            && self.hls.has_playlist(key);
        if hls_served {
            return Ok(admission.byte_counter);
        }
        if let StreamWait::UpstreamFailed(reason) = self.gate.wait_for_stream(&self.hub, key).await
        {
            return Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                &reason,
                key,
            ));
        }
        Ok(admission.byte_counter)
    }
}

/// The media router's `response` to an admitted request for `target`: a playlist's URIs carry
/// the accepted query, and a successful body counts into the admission's `byte_counter`.
pub(super) async fn finish(
    response: Response,
    target: &Target,
    query: &str,
    byte_counter: Option<Arc<AtomicU64>>,
) -> Response {
    let response = match (target, carried_query(query)) {
        (Target::Playlist { .. }, Some(carried)) if response.status().is_success() => {
            with_query(response, target.key(), &carried).await
        }
        // Served as `/{app}/{stream}.m3u8`, whose segment URIs are relative to `/{app}/`.
        (Target::Playlist { alias: true, key }, None) if response.status().is_success() => {
            rewritten(response, |text| playlist_for_alias(text, key)).await
        }
        _ => response,
    };
    match byte_counter {
        Some(counter) if response.status().is_success() => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, counted(body, counter))
        }
        _ => response,
    }
}

/// Rewrites a playlist response so the URIs it names carry `query`.
async fn with_query(response: Response, key: &StreamKey, query: &str) -> Response {
    rewritten(response, |text| playlist_with_query(text, key, query)).await
}

/// A playlist response whose body `rewrite` changed.
async fn rewritten(response: Response, rewrite: impl FnOnce(&str) -> String) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PLAYLIST_BYTES).await else {
        return (StatusCode::BAD_GATEWAY, "playlist too large").into_response();
    };
    let text = rewrite(&String::from_utf8_lossy(&bytes));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

/// `body`, adding the length of every data chunk read from it to `counter`.
fn counted(body: Body, counter: Arc<AtomicU64>) -> Body {
    Body::from_stream(body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_stream_and_protocol() {
        let flv = target("/live/show.flv").and_then(Result::ok);
        assert!(matches!(&flv, Some(Target::Flv(k)) if k.name == "show"));
        assert_eq!(flv.map(|t| t.protocol()), Some(Protocol::HttpFlv));
        assert!(matches!(
            target("/live/show/index.m3u8"),
            Some(Ok(Target::Playlist { alias: true, key })) if key.name == "show"
        ));
        assert!(matches!(
            target("/live/show/master.m3u8"),
            Some(Ok(Target::Playlist { alias: false, key })) if key.name == "show"
        ));
        assert!(matches!(
            target("/live/show/ll.m3u8"),
            Some(Ok(Target::Playlist { alias: false, .. }))
        ));
        for file in ["12.ts", "4.m4s", "4.0.m4s", "init-ab.mp4"] {
            let segment = target(&format!("/live/show/{file}")).and_then(Result::ok);
            assert_eq!(segment.map(|t| t.protocol()), Some(Protocol::Hls), "{file}");
        }
        assert!(target("/receipts").is_none());
        assert!(target("/a/b/c/d").is_none());
    }

    #[test]
    fn escaped_paths_are_the_targets_the_router_decodes_them_to() {
        // An escaped name or suffix is a stream path with an invalid name (400), never one
        // the gate lets past.
        assert!(matches!(target("/live/show%2Eflv"), Some(Err(_))));
        assert!(matches!(target("/live/sh%6Fw.flv"), Some(Err(_))));
        assert!(matches!(target("/live/show%2Em3u8"), Some(Err(_))));
        for file in ["1%2Ets", "4%2em4s", "init%2Dab%2Emp4"] {
            let segment = target(&format!("/live/show/{file}")).and_then(Result::ok);
            assert_eq!(segment.map(|t| t.protocol()), Some(Protocol::Hls), "{file}");
        }
        assert!(matches!(
            target("/live/show/ll%2Em3u8"),
            Some(Ok(Target::Playlist { alias: false, .. }))
        ));
        // An escaped slash stays inside its segment: no stream name holds one.
        assert!(matches!(target("/live/a%2Fb.flv"), Some(Err(_))));
        assert!(matches!(target("/live/..%2Fx.m3u8"), Some(Err(_))));
        // Not UTF-8 once decoded: no stream path (the router refuses it as well).
        assert!(target("/live/%FF.flv").is_none());
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
}
