//! LL-HLS over HTTP: the playlist with blocking reload and delta updates, the init segment,
//! segments and parts (blocking while a preload hint waits for its part).
//!
//! Under `/{app}/{stream}/`: `ll.m3u8` (with `_HLS_msn`, `_HLS_part`, `_HLS_skip`),
//! `init-{hash}.mp4`, `{msn}.m4s` and `{msn}.{part}.m4s`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::live_hls::{LiveHls, LlLookup, LlRequest};
use crate::relay::StreamKey;

/// Content type of fMP4 init segments, segments and parts.
pub const CONTENT_TYPE_MP4: &str = "video/mp4";
/// The LL-HLS playlist's file name under `/{app}/{stream}/`.
pub const LL_PLAYLIST_NAME: &str = "ll.m3u8";

/// Why a blocking-reload query is malformed.
fn parse_request(query: Option<&str>) -> Result<LlRequest, String> {
    let mut request = LlRequest::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "_HLS_msn" => {
                request.msn = Some(
                    value
                        .parse()
                        .map_err(|_| format!("_HLS_msn={value} is not a decimal integer"))?,
                )
            }
            "_HLS_part" => {
                request.part = Some(
                    value
                        .parse()
                        .map_err(|_| format!("_HLS_part={value} is not a decimal integer"))?,
                )
            }
            "_HLS_skip" => match value {
                "YES" | "v2" => request.skip = true,
                _ => return Err(format!("_HLS_skip={value}: expected YES or v2")),
            },
            _ => {}
        }
    }
    if request.part.is_some() && request.msn.is_none() {
        return Err("_HLS_part without _HLS_msn".into());
    }
    Ok(request)
}

fn error(status: StatusCode, error: &str, message: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(serde_json::json!({ "error": error, "message": message })),
    )
        .into_response()
}

/// The longest a request may be held: three of the longest target duration allowed (the
/// playlist's own target, once known, shortens it to three of its target durations, as RFC
/// 8216bis allows before a server answers 503).
fn hold(hls: &LiveHls) -> Duration {
    Duration::from_secs(u64::from(hls.config().segmenter.target_duration_secs.max(1)) * 3)
}

/// Serves `file` of the LL-HLS rendition of `key`; `None` when `file` is no LL-HLS file name
/// (the caller goes on with other file types).
pub(crate) async fn serve(
    hls: &LiveHls,
    key: &StreamKey,
    file: &str,
    query: Option<&str>,
) -> Option<Response> {
    if file == LL_PLAYLIST_NAME {
        return Some(playlist(hls, key, query).await);
    }
    if !(file.ends_with(".m4s") || (file.starts_with("init-") && file.ends_with(".mp4"))) {
        return None;
    }
    let body = hls.ll_file(key, file, hold(hls)).await;
    Some(match body {
        Some(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE_MP4),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{}/{}/{file} is not available", key.app, key.name),
        ),
    })
}

async fn playlist(hls: &LiveHls, key: &StreamKey, query: Option<&str>) -> Response {
    let request = match parse_request(query) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_delivery_directive", message),
    };
    match hls.ll_playlist(key, request, hold(hls)).await {
        LlLookup::Ready(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(super::CONTENT_TYPE_M3U8),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response(),
        LlLookup::TooFar => error(
            StatusCode::BAD_REQUEST,
            "too_far_ahead",
            "the requested segment or part is too far beyond the live edge".into(),
        ),
        LlLookup::Pending if request.msn.is_some() => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_yet_available",
            "the requested segment or part did not arrive in three target durations".into(),
        ),
        LlLookup::Pending => error(
            StatusCode::NOT_FOUND,
            "stream has no segment yet",
            format!("{}/{}", key.app, key.name),
        ),
        LlLookup::Unknown => error(
            StatusCode::NOT_FOUND,
            "stream not found",
            format!("{}/{}", key.app, key.name),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_directives_parse_or_are_refused() {
        assert_eq!(
            parse_request(Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES&grant=x")),
            Ok(LlRequest {
                msn: Some(5),
                part: Some(2),
                skip: true
            })
        );
        assert_eq!(parse_request(None), Ok(LlRequest::default()));
        assert!(parse_request(Some("_HLS_part=2")).is_err());
        assert!(parse_request(Some("_HLS_msn=-1")).is_err());
        assert!(parse_request(Some("_HLS_msn=1&_HLS_part=x")).is_err());
        assert!(parse_request(Some("_HLS_skip=NO")).is_err());
    }
}
