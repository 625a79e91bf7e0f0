//! The operator dashboard (`/dashboard`) and the in-browser player (`/watch/{stream_id}`):
//! static pages and scripts embedded in the binary, plus the one read-only JSON snapshot the
//! dashboard polls (`/dashboard/data.json`) and what the coordinator credited to one viewer key
//! (`/dashboard/viewers/{viewer_key}`), and each node's report of the numbers settlement uses
//! (`/nodes/{id}/report`). Everything else the pages need comes from the
//! public API (`/streams/{id}/play`, `/streams/{id}/segments`, `/receipts`,
//! `/epochs/{epoch}/proofs/{node_id}`).
//!
//! Playback uses hls.js and segment and Merkle hashing uses hash-wasm's BLAKE3, both vendored
//! unmodified from their npm packages under `assets/vendor/` with their licenses.

mod node_report;
mod overview;
mod viewer;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::Shared;

/// What a page may load: its own scripts, WebAssembly (BLAKE3), hls.js's blob worker and media
/// source, and fetches to friend nodes on other origins.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self' blob:; media-src 'self' blob:; connect-src *; img-src 'self' data:; \
     style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Vendored files never change within a build; ours may while developing.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
        immutable: false,
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboard.js"),
        immutable: false,
    },
    Asset {
        name: "watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/watch.js"),
        immutable: false,
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/common.js"),
        immutable: false,
    },
    Asset {
        name: "hls.light.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.light.min.js"),
        immutable: true,
    },
    Asset {
        name: "hls.js.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.js.LICENSE"),
        immutable: true,
    },
    Asset {
        name: "hash-wasm-blake3.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hash-wasm-blake3.umd.min.js"),
        immutable: true,
    },
    Asset {
        name: "hash-wasm.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hash-wasm.LICENSE"),
        immutable: true,
    },
];

const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const WATCH_HTML: &str = include_str!("../../assets/watch.html");

/// The dashboard's routes, merged into the API router.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/data.json", get(overview::data))
        .route("/dashboard/assets/{name}", get(asset))
        .route("/dashboard/viewers/{viewer_key}", get(viewer::summary))
        .route("/nodes/{id}/report", get(node_report::report))
        .route("/watch/{stream_id}", get(watch))
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        ],
        html,
    )
        .into_response()
}

async fn dashboard() -> Response {
    page(DASHBOARD_HTML)
}

/// The player page; the script reads the stream id from the URL, so any id gets the page and
/// the coordinator answers for unknown streams when the page asks to play.
async fn watch(Path(_stream_id): Path<String>) -> Response {
    page(WATCH_HTML)
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound {
            what: "dashboard asset",
            id: name,
        })?;
    let cache = if asset.immutable {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
