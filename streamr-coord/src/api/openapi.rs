//! The OpenAPI 3.1 document of the HTTP API, generated from the request and response types the
//! handlers take and return (`utoipa`), with the limits the handlers enforce written into it
//! from the same constants and configuration they check against.
//!
//! The signed messages the core crate defines (heartbeats, receipts, grants, origin claims) and
//! its hex identifiers are described here by schema types of their own, kept to their JSON by the
//! tests below (a real value of each serialises to JSON that the document's schema accepts).

use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use crate::config::CoordConfig;
// The stand-ins for core types live beside the wire types they describe; the handlers name
// them through this module.
pub(crate) use streamr_client::openapi::*;

/// Lowercase or uppercase hex of exactly `bytes` bytes.
fn hex(bytes: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": format!("^[0-9a-fA-F]{{{}}}$", bytes * 2),
        "description": description,
    })
}

/// The JSON of the identifier schemas `streamr_client::openapi` only names, from the limits the parsers enforce.
fn component_overrides() -> Vec<(&'static str, Value)> {
    let name_limit = streamr_core::MAX_NAME_LEN;
    vec![
        ("NodeId", hex(32, "A node's ed25519 public key.")),
        ("ViewerKey", hex(32, "A viewer's ed25519 public key.")),
        (
            "CoordinatorKey",
            hex(32, "The coordinator's ed25519 public key."),
        ),
        (
            "OperatorKey",
            hex(
                32,
                "An operator's ed25519 public key; it signs the ids of the operator's nodes.",
            ),
        ),
        ("SessionId", hex(16, "A viewing session's id.")),
        ("NodeSessionId", hex(16, "A node session's id.")),
        ("KeyShare", hex(32, "An ephemeral X25519 public share.")),
        (
            "HeartbeatMac",
            hex(
                32,
                "Keyed BLAKE3 of the heartbeat's canonical encoding under the node session key.",
            ),
        ),
        ("Digest", hex(32, "A BLAKE3 digest.")),
        (
            "Signature",
            hex(
                64,
                "An ed25519 signature over the body's canonical encoding.",
            ),
        ),
        (
            "StreamName",
            json!({
                "type": "string",
                "maxLength": name_limit,
                "description": format!("A stream name, at most {name_limit} bytes of UTF-8."),
            }),
        ),
        (
            "OperatorId",
            json!({
                "type": "string",
                "maxLength": name_limit,
                "description": format!("An operator name, at most {name_limit} bytes of UTF-8."),
            }),
        ),
        (
            "NetPrefix",
            json!({
                "type": "array",
                "items": { "type": "integer", "minimum": 0, "maximum": 255 },
                "anyOf": [
                    { "minItems": 3, "maxItems": 3 },
                    { "minItems": 6, "maxItems": 6 },
                    { "minItems": 8, "maxItems": 8 },
                ],
                "description": "The bytes of an IPv4 /24 (3), an IPv6 /48 (6) or a named network's hash (8).",
            }),
        ),
        (
            "MerkleStep",
            json!({
                "type": "array",
                "prefixItems": [
                    { "type": "string", "enum": ["Left", "Right"] },
                    { "$ref": "#/components/schemas/Digest" },
                ],
                "items": false,
                "minItems": 2,
                "description": "The side the sibling is on, and the sibling's digest.",
            }),
        ),
    ]
}

/// `{"error": code, "field": name, "message": text}`: every refused request (`field` with
/// `invalid_field` only).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub(crate) struct ErrorSchema {
    /// Stable code, e.g. `invalid_json`, `unauthorized`, `bad_signature`, `clock_skew`,
    /// `replayed_nonce`, `unknown_session`, `session_expired`, `bad_mac`,
    /// `wrong_session_node`, `not_found`, `rate_limited`.
    error: String,
    /// The request field that was refused (with `invalid_field` only), e.g. `receipts`.
    field: Option<String>,
    /// What was wrong, for people.
    message: String,
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[schema(as = Health)]
#[allow(dead_code)]
pub(crate) struct HealthSchema {
    /// `ok`.
    status: String,
}

/// `GET /readyz`.
#[derive(ToSchema)]
#[schema(as = Readiness)]
#[allow(dead_code)]
pub(crate) struct ReadinessSchema {
    /// `ready` or `unavailable`.
    status: String,
    /// `storage_unreachable` when unavailable.
    error: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::ops::openapi,
        super::ops::stats,
        super::info::coordinator,
        super::streams::create,
        super::streams::list,
        super::streams::get_one,
        super::streams::end,
        super::streams::set_origin,
        super::streams::rotate_key,
        super::streams::publish_check,
        super::streams::report_segment,
        super::streams::list_segments,
        super::parts::report_parts,
        super::parts::find_part,
        super::parts::part_reports,
        super::parts::stream_part_reports,
        super::streams::stats,
        super::viewers::play,
        super::viewers::post_receipts,
        super::nodes::register,
        super::operators::rotate,
        super::operators::unbind,
        super::nodes::list,
        super::nodes::heartbeat,
        super::nodes::open_session,
        super::nodes::session_heartbeat,
        super::nodes::deregister,
        super::nodes::get_one,
        super::nodes::stats,
        super::ledger::earnings,
        super::ledger::node_payouts,
        super::nodes::reachability,
        super::tree::upstream,
        super::nodes::report_probe,
        super::ledger::list_epochs,
        super::ledger::statement,
        super::ledger::proof,
        super::ledger::pending_payouts,
        super::ledger::simulate,
    ),
    components(schemas(ErrorSchema))
)]
struct ApiDoc;

/// Sets `key` to `value` in the object at `pointer`; `false` when there is no object there.
fn set(doc: &mut Value, pointer: &str, key: &str, value: Value) -> bool {
    match doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
        Some(object) => {
            object.insert(key.to_owned(), value);
            true
        }
        None => false,
    }
}

/// The limits the handlers enforce, as `(JSON pointer, keyword, value)`.
fn limits(config: &CoordConfig) -> Vec<(String, &'static str, Value)> {
    let schema = |name: &str, field: &str| format!("/components/schemas/{name}/properties/{field}");
    let mut limits = vec![
        (schema("CreateStreamRequest", "id"), "minLength", json!(1)),
        (
            schema("CreateStreamRequest", "id"),
            "maxLength",
            json!(streamr_core::MAX_NAME_LEN),
        ),
        (
            schema("CreateStreamRequest", "id"),
            "pattern",
            json!(super::streams::STREAM_ID_PATTERN),
        ),
        (
            schema("HeartbeatRequest", "receipts"),
            "maxItems",
            json!(config.max_receipts_per_request),
        ),
        (
            schema("SessionHeartbeatRequest", "receipts"),
            "maxItems",
            json!(config.max_receipts_per_request),
        ),
        (schema("ReceiptsRequest", "receipts"), "minItems", json!(1)),
        (schema("OriginPartReport", "parts"), "minItems", json!(1)),
        (
            schema("OriginPartReport", "parts"),
            "maxItems",
            json!(streamr_core::MAX_PARTS_PER_REPORT),
        ),
        (
            schema("PartHash", "len"),
            "maximum",
            json!(streamr_core::MAX_PART_LEN),
        ),
        (
            schema("ReceiptsRequest", "receipts"),
            "maxItems",
            json!(config.max_receipts_per_request),
        ),
        (
            schema("SimulationRequest", "nodes"),
            "maxItems",
            json!(super::ledger::MAX_SIMULATED_NODES),
        ),
    ];
    for field in ["payout_address", "operator", "rtmp_url", "http_url"] {
        let url = field.ends_with("_url");
        limits.push((schema("NodeRegistration", field), "minLength", json!(1)));
        limits.push((
            schema("NodeRegistration", field),
            "maxLength",
            json!(super::nodes::MAX_FIELD_LEN),
        ));
        limits.push((
            schema("NodeRegistration", field),
            "pattern",
            json!(if url {
                super::nodes::URL_PATTERN
            } else {
                super::nodes::TEXT_PATTERN
            }),
        ));
    }
    // Integers the handlers store as signed 64-bit numbers and refuse above that.
    for (name, fields) in [
        ("NodeRegistration", &["capacity_kbps", "timestamp_ms"][..]),
        ("SegmentReport", &["sequence", "published_ms"][..]),
        ("OriginSegmentReport", &["sequence", "published_ms"][..]),
        ("LlSegmentHashes", &["len"][..]),
        ("PartHash", &["msn", "cut_ms"][..]),
        (
            "NodeHeartbeat",
            &[
                "timestamp_ms",
                "nonce",
                "viewers",
                "bytes_served",
                "unattested_bytes",
            ][..],
        ),
    ] {
        for field in fields {
            limits.push((schema(name, field), "maximum", json!(i64::MAX)));
        }
    }
    limits
}

/// The query parameters' limits, as `(path, method, parameter, keyword, value)`.
fn parameter_limits() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
)> {
    let mut limits = vec![
        (
            "/streams/{id}/play",
            "get",
            "exclude",
            "maxItems",
            json!(super::viewers::MAX_EXCLUDED),
        ),
        (
            "/streams/{id}/parts/{hash}",
            "get",
            "hash",
            "pattern",
            json!("^[0-9a-fA-F]{64}$"),
        ),
    ];
    for (path, method) in [
        ("/streams", "get"),
        ("/streams/{id}/segments", "get"),
        ("/streams/{id}/stats", "get"),
        ("/nodes/{id}/stats", "get"),
        ("/epochs", "get"),
        ("/payouts/pending", "get"),
    ] {
        limits.push((path, method, "limit", "minimum", json!(1)));
        limits.push((
            path,
            method,
            "limit",
            "maximum",
            json!(super::streams::MAX_LIST_LIMIT),
        ));
    }
    limits
}

const DESCRIPTION: &str = "Streams, friend nodes, signed heartbeats, viewer routing with signed \
session grants, viewer receipts, epoch settlement, Merkle statements and payouts. Errors are \
JSON: {\"error\": code, \"message\": text}. Times are Unix milliseconds; amounts are integer \
micro-units. Admin operations need `Authorization: Bearer <admin token>` and answer 401 without \
it, before anything else about the request is looked at.";

/// Builds the document; `missed` collects the limits whose place was not found (a test keeps it
/// empty).
fn build(config: &CoordConfig, missed: &mut Vec<String>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    doc["info"] = json!({
        "title": "StreamrP2P coordinator",
        "version": env!("CARGO_PKG_VERSION"),
        "description": DESCRIPTION,
    });
    for (name, schema) in component_overrides() {
        if !set(&mut doc, "/components/schemas", name, schema) {
            missed.push(format!("schema {name}"));
        }
    }
    set(
        &mut doc,
        "/components",
        "securitySchemes",
        json!({ "admin": {
            "type": "http",
            "scheme": "bearer",
            "description": "The coordinator's admin token (--admin-token).",
        }}),
    );
    for (pointer, keyword, value) in limits(config) {
        if !set(&mut doc, &pointer, keyword, value) {
            missed.push(format!("{pointer} {keyword}"));
        }
    }
    for (path, method, name, keyword, value) in parameter_limits() {
        let pointer = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
        let schema = doc
            .pointer_mut(&pointer)
            .and_then(Value::as_array_mut)
            .and_then(|params| params.iter_mut().find(|p| p["name"] == name))
            .and_then(|param| param.get_mut("schema"))
            .and_then(Value::as_object_mut);
        match schema {
            Some(schema) => {
                schema.insert(keyword.to_owned(), value);
            }
            None => missed.push(format!("{path} {method} {name} {keyword}")),
        }
    }
    add_common_errors(&mut doc, config);
    mark_unsigned(&mut doc);
    doc
}

/// The generator writes `u64` as `int64` from 0 up, which says nothing above `i64::MAX` is
/// valid; the handlers take every `u64` there (those that store it signed say so with a
/// `maximum`), so these are marked `uint64`.
fn mark_unsigned(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let unsigned = object.get("type") == Some(&json!("integer"))
                && object.get("format") == Some(&json!("int64"))
                && object.get("minimum") == Some(&json!(0))
                && !object.contains_key("maximum");
            if unsigned {
                object.insert("format".to_owned(), json!("uint64"));
            }
            object.values_mut().for_each(mark_unsigned);
        }
        Value::Array(items) => items.iter_mut().for_each(mark_unsigned),
        _ => {}
    }
}

/// Every operation may be refused for its rate (429), fail in storage (500) or find its
/// database unreachable (503); one with parameters or a body may be malformed (400), and a body
/// may be too large (413).
fn add_common_errors(doc: &mut Value, config: &CoordConfig) {
    let error = |description: String| {
        json!({
            "description": description,
            "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/Error" }
            }},
        })
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let has_input = operation.get("parameters").is_some();
            let has_body = operation.get("requestBody").is_some();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut add = |status: &str, description: String| {
                if !responses.contains_key(status) {
                    responses.insert(status.to_owned(), error(description));
                }
            };
            if has_input || has_body {
                add(
                    "400",
                    "Malformed: invalid_json, invalid_path, invalid_query or invalid_field".into(),
                );
            }
            if has_body {
                add(
                    "413",
                    format!(
                        "body_too_large: the body is over {} bytes",
                        config.max_body_bytes
                    ),
                );
            }
            add("429", "rate_limited: over the per-IP request rate".into());
            add("500", "storage_error".into());
            let unavailable =
                "storage_unavailable: the database is unreachable or out of disk space; try again";
            match responses.get_mut("503") {
                None => {
                    responses.insert("503".to_owned(), error(unavailable.into()));
                }
                // An error of the operation's own; not `/readyz`'s answer, which is no error.
                Some(response)
                    if response.pointer("/content/application~1json/schema/$ref")
                        == Some(&json!("#/components/schemas/Error")) =>
                {
                    if let Some(Value::String(description)) = response.get_mut("description") {
                        description.push_str("; or ");
                        description.push_str(unavailable);
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// The document served at `GET /openapi.json` for this configuration.
pub(crate) fn document(config: &CoordConfig) -> String {
    let mut missed = Vec::new();
    let doc = build(config, &mut missed);
    if !missed.is_empty() {
        tracing::warn!(?missed, "OpenAPI limits not placed");
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests;
