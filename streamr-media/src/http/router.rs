//! The axum router: HLS playlists and segments, HTTP-FLV, CORS, cache headers, JSON 404s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Extensions, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

use super::flv_raw::{
    stream_flv_with, FlvCounters, Framing, ResponseByteCounters, ZERO_COPY_MIN_BYTES,
};
use super::http_flv::flv_body;
use super::live_hls::{LiveHls, PlaylistLookup};
use crate::hls::MULTIVARIANT_NAME;
use crate::name::NameError;
use crate::relay::{RelayHub, StreamKey};

/// Content type of HLS playlists.
pub const CONTENT_TYPE_M3U8: &str = "application/vnd.apple.mpegurl";
/// Content type of MPEG-TS segments.
pub const CONTENT_TYPE_TS: &str = "video/mp2t";
/// Content type of HTTP-FLV.
pub const CONTENT_TYPE_FLV: &str = "video/x-flv";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    hub: RelayHub,
    hls: LiveHls,
    flv: Arc<FlvCounters>,
    /// Cancelled when the node shuts down: HTTP-FLV players streamed on taken-over connections
    /// get the end of their response, as RTMP players get their connection closed.
    shutdown: CancellationToken,
    /// Smallest HTTP-FLV batch sent with `sendfile` (`None`: never).
    flv_sendfile_min: Option<usize>,
    /// An HTTP-FLV player on a taken-over connection that takes no byte for this long loses
    /// its response: the HTTP server's [`streamr_net::HttpLimits::write_timeout`].
    write_timeout: Duration,
}

impl HttpState {
    /// State serving `hub`'s streams, with live HLS from `hls` (started on the same hub).
    pub fn new(hub: RelayHub, hls: LiveHls) -> Self {
        HttpState {
            hub,
            hls,
            flv: Arc::default(),
            shutdown: CancellationToken::new(),
            flv_sendfile_min: Some(ZERO_COPY_MIN_BYTES),
            write_timeout: streamr_net::HttpLimits::default().write_timeout,
        }
    }

    /// The hub the streams are served from.
    pub fn hub(&self) -> &RelayHub {
        &self.hub
    }

    /// The live HLS the playlists and segments are served from.
    pub(super) fn live_hls(&self) -> &LiveHls {
        &self.hls
    }

    /// Ends the HTTP-FLV responses streamed on taken-over connections (the end of the body,
    /// then the connection closes) once `shutdown` is cancelled; the HTTP server's graceful
    /// shutdown no longer sees those connections.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// HTTP-FLV batches of at least `min` bytes to a player on a plain TCP connection go out with
    /// `sendfile` from the stream's shared file (default [`ZERO_COPY_MIN_BYTES`]; `None`: every
    /// batch by vectored writes). See [`crate::shared_bytes`].
    pub fn with_flv_sendfile_min(mut self, min: Option<usize>) -> Self {
        self.flv_sendfile_min = min;
        self
    }

    /// The write deadline of the HTTP-FLV responses streamed on taken-over connections: a
    /// player that takes no byte for `write_timeout` loses its response; one that keeps
    /// reading, however slowly, keeps it (the slow-viewer policy skips it ahead to a keyframe
    /// instead). Give it the [`streamr_net::HttpLimits::write_timeout`] the HTTP server runs
    /// with (the default is that of [`streamr_net::HttpLimits::default`]), so that responses the
    /// server writes and the ones streamed here have the same deadline.
    pub fn with_write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }

    /// Counters of the HTTP-FLV players streamed on taken-over connections.
    pub fn flv_counters(&self) -> Arc<FlvCounters> {
        self.flv.clone()
    }
}

/// The node's HTTP routes:
///
/// - `GET /{app}/{stream}.m3u8`: the live playlist (`no-cache`);
/// - `GET /{app}/{stream}/{sequence}.ts`: a segment (`immutable`);
/// - `GET /{app}/{stream}.flv`: HTTP-FLV from the relay's GOP cache, chunked;
/// - `GET /{app}/{stream}/ll.m3u8` and its `init-*.mp4`, `{msn}.m4s`, `{msn}.{part}.m4s`: the
///   LL-HLS rendition (see the `ll_hls` module);
/// - `GET /{app}/{stream}/master.m3u8`: the multivariant playlist, naming `ll.m3u8` and
///   `../{stream}.m3u8` with their measured bandwidth, codecs, resolution and frame rate; a
///   rendition that cannot carry every track is left out (MPEG-TS for AV1 or Opus, fMP4 for
///   MP3).
///
/// A stream MPEG-TS carries no track of (AV1 with Opus) has no MPEG-TS playlist: its
/// `/{app}/{stream}.m3u8` answers 409 `codecs_not_in_mpeg_ts` with a JSON body naming the
/// multivariant playlist.
///
/// Unknown streams and files get a 404 with a JSON body, invalid app or stream names (see
/// [`crate::name`]) a 400; every response allows any origin.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/{app}/{file}", get(stream_file))
        .route("/{app}/{stream}/{segment}", get(segment))
        .fallback(|| async { not_found("no such route", None) })
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// The 400 response refusing an invalid app or stream name in a request path.
fn invalid_name(error: &NameError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({ "error": "invalid_name", "message": error.to_string() })),
    )
        .into_response()
}

fn not_found(error: &str, key: Option<&StreamKey>) -> Response {
    let stream = key.map(|k| format!("{}/{}", k.app, k.name));
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({ "error": error, "stream": stream })),
    )
        .into_response()
}

/// A 400 with a JSON body for a path axum could not decode (bad percent-encoding, not UTF-8).
fn bad_path(rejection: &PathRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({ "error": "invalid_path", "message": rejection.body_text() })),
    )
        .into_response()
}

async fn stream_file(
    State(state): State<HttpState>,
    method: Method,
    version: Version,
    extensions: Extensions,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((app, file)) = match path {
        Ok(path) => path,
        Err(rejection) => return bad_path(&rejection),
    };
    if let Some(name) = file.strip_suffix(".m3u8") {
        match StreamKey::parse(&app, name) {
            Ok(key) => playlist(state, key).await,
            Err(error) => invalid_name(&error),
        }
    } else if let Some(name) = file.strip_suffix(".flv") {
        match StreamKey::parse(&app, name) {
            Ok(key) => http_flv(state, key, &method, version, &extensions),
            Err(error) => invalid_name(&error),
        }
    } else {
        not_found("unknown file type; use .m3u8 or .flv", None)
    }
}

/// How long a playlist request waits for a new stream's first segment: about one segment
/// duration.
fn first_segment_wait(state: &HttpState) -> Duration {
    Duration::from_millis(
        u64::from(state.hls.config().segmenter.target_duration_secs.max(1)) * 1_000,
    )
}

pub(super) async fn playlist(state: HttpState, key: StreamKey) -> Response {
    let lookup = state.hls.playlist(&key, first_segment_wait(&state)).await;
    playlist_response(lookup, &key)
}

async fn multivariant(state: HttpState, key: StreamKey) -> Response {
    let lookup = state
        .hls
        .multivariant(&key, first_segment_wait(&state))
        .await;
    playlist_response(lookup, &key)
}

fn playlist_response(lookup: PlaylistLookup, key: &StreamKey) -> Response {
    match lookup {
        PlaylistLookup::Ready(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE_M3U8),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response(),
        PlaylistLookup::NotCarried => (
            StatusCode::CONFLICT,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            Json(serde_json::json!({
                "error": "codecs_not_in_mpeg_ts",
                "message": "MPEG-TS cannot carry this stream's codecs (AV1, Opus); \
                            play its LL-HLS (fMP4) rendition",
                "stream": format!("{}/{}", key.app, key.name),
                "multivariant": format!("/{}/{}/{MULTIVARIANT_NAME}", key.app, key.name),
            })),
        )
            .into_response(),
        PlaylistLookup::Pending => not_found("stream has no segment yet", Some(key)),
        PlaylistLookup::Unknown => not_found("stream not found", Some(key)),
    }
}

async fn segment(
    State(state): State<HttpState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Path((app, stream, segment)) = match path {
        Ok(path) => path,
        Err(rejection) => return bad_path(&rejection),
    };
    let key = match StreamKey::parse(&app, &stream) {
        Ok(key) => key,
        Err(error) => return invalid_name(&error),
    };
    stream_subfile(&state, key, &segment, query.as_deref()).await
}

/// The response to a GET of `/{app}/{stream}/{file}` for a valid stream name: the
/// multivariant playlist, an LL-HLS file or an MPEG-TS segment.
pub(super) async fn stream_subfile(
    state: &HttpState,
    key: StreamKey,
    file: &str,
    query: Option<&str>,
) -> Response {
    if file == MULTIVARIANT_NAME {
        return multivariant(state.clone(), key).await;
    }
    if let Some(response) = super::ll_hls::serve(&state.hls, &key, file, query).await {
        return response;
    }
    let sequence = file.strip_suffix(".ts").and_then(|s| s.parse::<u64>().ok());
    let Some(sequence) = sequence else {
        return not_found("segment names are {sequence}.ts", Some(&key));
    };
    match state.hls.segment(&key, sequence) {
        Some(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE_TS),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => not_found("segment not found", Some(&key)),
    }
}

/// Adds to a handler's `response` to a GET what [`router`]'s layers add: the headers
/// [`CorsLayer::permissive`] adds to a request other than a preflight (`OPTIONS`), which do not
/// depend on the request, then, as axum's method router does, a `content-length` when the body's
/// length is known and the handler set none (in that order, so the bytes on the wire are the
/// same).
pub(super) fn add_route_headers(response: &mut Response) {
    use axum::body::HttpBody;
    let exact = response.body().size_hint().exact();
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static(CORS_VARY));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("*"),
    );
    if let Some(length) = exact {
        if !headers.contains_key(header::CONTENT_LENGTH) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
}

/// The `vary` value of [`CorsLayer::permissive`].
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

fn http_flv(
    state: HttpState,
    key: StreamKey,
    method: &Method,
    version: Version,
    extensions: &Extensions,
) -> Response {
    if !state.hub.is_publishing(&key) {
        return not_found("stream not found", Some(&key));
    }
    let subscription = match state.hub.subscribe(key.clone()) {
        Ok(subscription) => subscription,
        Err(error) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": error.to_string() })),
            )
                .into_response()
        }
    };
    // A GET on a connection the HTTP loop lets go of: stream the response ourselves, one
    // vectored write per batch of frames, like an RTMP player's.
    let raw = (method == Method::GET)
        .then(|| extensions.get::<streamr_net::TakeConnection>())
        .flatten()
        .and_then(streamr_net::TakeConnection::take);
    if let Some(mut raw) = raw {
        let framing = if version >= Version::HTTP_11 {
            Framing::Chunked
        } else {
            Framing::CloseDelimited
        };
        let byte_counters = extensions
            .get::<ResponseByteCounters>()
            .cloned()
            .unwrap_or_default();
        let counters = state.flv.clone();
        let shutdown = state.shutdown.clone();
        let sendfile_min = state.flv_sendfile_min;
        let write_timeout = state.write_timeout;
        tokio::spawn(async move {
            // A plain TCP socket is handed over as itself: large batches then go out with
            // `sendfile` from the stream's shared file; TLS gets vectored writes.
            let streamed = match raw.tcp_mut() {
                Some(socket) => {
                    stream_flv_with(
                        socket,
                        subscription,
                        framing,
                        &counters,
                        &byte_counters,
                        write_timeout,
                        &shutdown,
                        sendfile_min,
                    )
                    .await
                }
                None => {
                    stream_flv_with(
                        &mut raw.io,
                        subscription,
                        framing,
                        &counters,
                        &byte_counters,
                        write_timeout,
                        &shutdown,
                        None,
                    )
                    .await
                }
            };
            if let Err(error) = streamed {
                tracing::debug!(peer = %raw.peer, %error, "HTTP-FLV player left");
            }
        });
        // The HTTP loop writes this into the void and closes its side.
        return (StatusCode::OK, [(header::CONNECTION, "close")]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE_FLV),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(flv_body(subscription)),
    )
        .into_response()
}
