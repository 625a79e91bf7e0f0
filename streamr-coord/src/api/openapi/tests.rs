//! The document against the checked-in copy, the limits against the handlers' checks, and the
//! schemas against real values of the types they describe.

use proptest::prelude::*;
use serde_json::{json, Value};
use streamr_core::{
    split_pool, BalanceLeaf, ContentDigest, KeyPair, MerkleTree, NetPrefix, NodeEpochInput,
    NodeHeartbeat, OperatorId, OriginClaim, OriginSegmentReport, ProbeResult, RewardConfig,
    SessionGrant, SessionId, Signed, StreamId, ViewerReceipt,
};

use super::{build, document};
use crate::config::CoordConfig;
use crate::storage::{
    EvidenceRecord, LedgerEntryRecord, NodeRecord, PayoutRecord, ProbeRecord, SegmentRecord,
    SettlementRecord, StatsRow, StreamRecord, Totals,
};
use crate::wire::{
    CreateStreamRequest, CreateStreamResponse, HeartbeatRequest, NodeDeregistration,
    NodeRegistration, PlayResponse, ReceiptsRequest, SegmentReport, SegmentReportResponse,
    SetOriginRequest,
};

/// The checked-in copy, for clients and reviewers; `STREAMR_BLESS=1` rewrites it.
const CHECKED_IN: &str = include_str!("../../../openapi.json");

#[test]
fn served_document_equals_the_checked_in_copy() {
    let served = document(&CoordConfig::default());
    if std::env::var_os("STREAMR_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        std::fs::write(path, format!("{served}\n")).expect("write openapi.json");
        return;
    }
    assert!(
        served.trim_end() == CHECKED_IN.trim_end(),
        "streamr-coord/openapi.json is out of date: run \
         `STREAMR_BLESS=1 cargo test -p streamr-coord --lib openapi` and commit it"
    );
}

#[test]
fn every_limit_and_schema_lands_in_the_document() {
    let mut missed = Vec::new();
    let doc = build(&CoordConfig::default(), &mut missed);
    assert!(missed.is_empty(), "not placed: {missed:?}");
    assert_eq!(doc["openapi"], "3.1.0");
    // Every operation answers its refusals with the JSON error schema.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    let named = schema["$ref"] == "#/components/schemas/Error"
                        || schema["$ref"] == "#/components/schemas/Readiness";
                    assert!(named, "{method} {path} {status}: {response}");
                }
            }
            if operation.get("security").is_some() {
                assert!(
                    operation["responses"].get("401").is_some(),
                    "{method} {path} needs the admin token and documents no 401"
                );
            }
        }
    }
}

#[test]
fn the_served_limits_follow_the_configuration() {
    let config = CoordConfig {
        max_receipts_per_request: 7,
        ..CoordConfig::default()
    };
    let doc: Value = serde_json::from_str(&document(&config)).expect("json");
    assert_eq!(
        doc["components"]["schemas"]["ReceiptsRequest"]["properties"]["receipts"]["maxItems"],
        7
    );
}

/// Checks `value` against `schema` as far as the document uses JSON Schema; objects must have
/// exactly the documented properties, so a field added to a type and not to its schema fails.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if schema == &json!(false) {
        return Err(format!("{at}: nothing is allowed here"));
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        let target = doc
            .pointer(pointer)
            .ok_or_else(|| format!("{at}: dangling {reference}"))?;
        return check(doc, target, value, at);
    }
    for keyword in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            let passing = branches
                .iter()
                .filter(|branch| check(doc, branch, value, at).is_ok())
                .count();
            if passing == 0 || (keyword == "oneOf" && passing > 1) {
                return Err(format!(
                    "{at}: {passing} branches of {keyword} match {value}"
                ));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| fits(t)) {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(format!("{at}: required {name} missing"));
                }
            }
        }
        if let Some(properties) = properties {
            for (name, field) in object {
                let field_schema = properties
                    .get(name)
                    .ok_or_else(|| format!("{at}: {name} is not documented"))?;
                check(doc, field_schema, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let Some(items) = value.as_array() {
        let prefix = schema
            .get("prefixItems")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (index, item) in items.iter().enumerate() {
            let item_schema = prefix
                .get(index)
                .or_else(|| schema.get("items"))
                .cloned()
                .unwrap_or(json!({}));
            check(doc, &item_schema, item, &format!("{at}[{index}]"))?;
        }
        let len = items.len() as u64;
        if schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) > len
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|max| len > max)
        {
            return Err(format!("{at}: {len} items out of bounds"));
        }
    }
    if let Some(text) = value.as_str() {
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(pattern).map_err(|e| format!("{at}: {e}"))?;
            if !re.is_match(text) {
                return Err(format!("{at}: {text:?} does not match {pattern}"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(format!("{at}: {text:?} not in {allowed:?}"));
            }
        }
        let len = text.chars().count() as u64;
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| len > max)
        {
            return Err(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(number) = value.as_i64() {
        if schema
            .get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|min| number < min)
        {
            return Err(format!("{at}: {number} below minimum"));
        }
    }
    Ok(())
}

fn node_record(key: &KeyPair) -> NodeRecord {
    NodeRecord {
        id: key.node_id().to_string(),
        payout_address: "payout".into(),
        operator: "op".into(),
        operator_key: None,
        subnet: "10.0.0.0/24".into(),
        rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
        http_url: "http://127.0.0.1:8080".into(),
        registered_at_ms: 1,
        active: true,
        capacity_kbps: 1000,
        last_nonce: 3,
        last_heartbeat_ms: Some(5),
        status: "online".into(),
        viewers: 2,
        bytes_served: 100,
        streams_json: "[\"s\"]".into(),
        upstreams_json: "[]".into(),
    }
}

/// Real values of every documented type, as `(schema name, JSON)`.
fn samples() -> Vec<(&'static str, Value)> {
    let node = KeyPair::from_seed([1; 32]);
    let viewer = KeyPair::from_seed([2; 32]);
    let coordinator = KeyPair::from_seed([3; 32]);
    let stream = StreamId::new("live-1").expect("stream id");
    let digest = ContentDigest::from_bytes([7; 32]);
    let session_id = SessionId::from_bytes([9; 16]);
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: 1,
            nonce: 2,
            streams: vec![stream.clone()],
            viewers: 3,
            bytes_served: 4,
            unattested_bytes: 5,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        &node,
    );
    let receipt = Signed::sign(
        ViewerReceipt {
            session_id,
            seq: 1,
            bytes_total: 2,
            last_segment_seq: 3,
            segments_digest: digest,
            t_ms: 4,
        },
        &viewer,
    );
    let claim = Signed::sign(
        OriginClaim {
            node_id: node.node_id(),
            stream_id: stream.clone(),
            timestamp_ms: 1,
        },
        &node,
    );
    let report = Signed::sign(
        OriginSegmentReport {
            node_id: node.node_id(),
            stream_id: stream.clone(),
            sequence: 1,
            hash: digest,
            published_ms: 2,
            timestamp_ms: 3,
            ll: Some(streamr_core::LlSegmentHashes {
                hash: digest,
                part_hashes: vec![digest; 2],
                len: 4_000,
            }),
            run: Some(0x5eed),
        },
        &node,
    );
    let part_report = Signed::sign(
        streamr_core::OriginPartReport {
            node_id: node.node_id(),
            stream_id: stream.clone(),
            run: u64::MAX,
            parts: vec![streamr_core::PartHash {
                msn: 1,
                index: 2,
                hash: digest,
                len: 900,
                cut_ms: 3,
            }],
            timestamp_ms: 4,
        },
        &node,
    );
    let grant = Signed::sign(
        SessionGrant {
            session_id,
            viewer: viewer.viewer_key(),
            node_id: node.node_id(),
            stream_id: stream.clone(),
            max_bytes: 1,
            expiry_ms: 2,
        },
        &coordinator,
    );
    let registration = Signed::sign(
        NodeRegistration {
            operator_membership: None,
            node_id: node.node_id(),
            payout_address: "payout".into(),
            operator: "op".into(),
            rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
            http_url: "http://127.0.0.1:8080".into(),
            capacity_kbps: 1,
            timestamp_ms: 2,
        },
        &node,
    );
    let deregistration = Signed::sign(
        NodeDeregistration {
            node_id: node.node_id(),
            timestamp_ms: 2,
        },
        &node,
    );
    let inputs: Vec<NodeEpochInput> = [
        (node.node_id(), NetPrefix::parse("10.1.2.0/24")),
        (viewer.node_id(), NetPrefix::parse("2001:db8:1::/48")),
        (coordinator.node_id(), Some(NetPrefix::named("trial"))),
    ]
    .into_iter()
    .map(|(node_id, subnet)| NodeEpochInput {
        node_id,
        operator: OperatorId::new("op").expect("operator"),
        subnet: subnet.expect("prefix"),
        verified_bytes: 1000,
        on_time_bytes: 900,
        flagged_bytes: 0,
        availability_ppm: 1_000_000,
        unattested_bytes: 0,
        probe_capacity_bytes: 0,
        probation_ppm: 1_000_000,
    })
    .collect();
    let leaves: Vec<BalanceLeaf> = inputs
        .iter()
        .map(|input| BalanceLeaf {
            node_id: input.node_id,
            cumulative_earned: 10,
            cumulative_vested: 5,
        })
        .collect();
    let tree = MerkleTree::build(&leaves);
    let stream_record = StreamRecord {
        id: "live-1".into(),
        title: "t".into(),
        stream_key_hash: "h".into(),
        status: "live".into(),
        created_at_ms: 1,
        ended_at_ms: None,
        origin_node: Some(node.node_id().to_string()),
    };
    let segment = SegmentRecord {
        stream_id: "live-1".into(),
        sequence: 1,
        hash: digest.to_string(),
        digest: digest.to_string(),
        published_ms: 1,
        reported_at_ms: 2,
        run: Some(format!("{:016x}", 0x5eed_u64)),
        ll: Some(crate::storage::LlSegment {
            hash: digest.to_string(),
            digest: digest.to_string(),
            part_hashes: vec![digest.to_string(); 2],
            len: 4_000,
        }),
    };
    let settlement = SettlementRecord {
        epoch: 1,
        previous_hash: "p".into(),
        statement_hash: "s".into(),
        merkle_root: "m".into(),
        pool: 1,
        distributed: 1,
        penalties: 0,
        vested: 0,
        leaf_count: 3,
        inputs_json: "[]".into(),
        statement_json: "{}".into(),
        leaves_json: "[]".into(),
        observations_json: "{}".into(),
        settled_at_ms: 1,
        settled_by: "replica".into(),
    };
    let entry = LedgerEntryRecord {
        idx: 0,
        epoch: 1,
        kind: "reward".into(),
        debit: "pool".into(),
        credit: "unvested:x".into(),
        node_id: None,
        amount: 1,
    };
    let payout = PayoutRecord {
        node_id: node.node_id().to_string(),
        cumulative_net: 1,
        epoch: 1,
        payout_address: "payout".into(),
        gross: 1,
        fees: 0,
        net: 1,
        status: "pending".into(),
        sink_reference: None,
        updated_at_ms: 1,
    };
    let evidence = EvidenceRecord {
        epoch: 1,
        node_id: node.node_id().to_string(),
        rule: "r".into(),
        detail: "d".into(),
        created_at_ms: 1,
    };
    vec![
        ("SignedHeartbeat", json!(heartbeat)),
        ("SignedReceipt", json!(receipt)),
        ("SignedOriginClaim", json!(claim)),
        ("SignedSegmentReport", json!(report)),
        ("SignedPartReport", json!(part_report)),
        (
            "PartReportResponse",
            json!(crate::wire::PartReportResponse {
                parts: 2,
                created: 1
            }),
        ),
        (
            "PartRecord",
            json!(crate::wire::PartInfo::from(crate::storage::PartRecord {
                stream_id: "live-1".into(),
                run: "00000000000000ff".into(),
                msn: 4,
                part_index: 2,
                hash: digest.to_string(),
                len: 900,
                cut_ms: 1,
                reported_at_ms: 2,
            })),
        ),
        ("SegmentReportRequest", json!(report)),
        (
            "SegmentReportRequest",
            json!(SegmentReport {
                sequence: 1,
                hash: digest,
                published_ms: 2,
            }),
        ),
        ("SignedGrant", json!(grant)),
        ("SignedRegistration", json!(registration)),
        ("SignedDeregistration", json!(deregistration)),
        (
            "HeartbeatRequest",
            json!(HeartbeatRequest {
                heartbeat,
                receipts: vec![receipt.clone()],
            }),
        ),
        (
            "ReceiptsRequest",
            json!(ReceiptsRequest {
                receipts: vec![receipt],
            }),
        ),
        (
            "CreateStreamRequest",
            json!(CreateStreamRequest {
                id: stream.clone(),
                title: "t".into(),
                origin_node: Some(node.node_id()),
            }),
        ),
        (
            "SetOriginRequest",
            json!(SetOriginRequest { origin_node: None }),
        ),
        (
            "PublishCheckRequest",
            json!(crate::wire::PublishCheckRequest {
                stream_key: "k".into(),
                origin: Some(claim),
            }),
        ),
        (
            "ProbeResult",
            json!(ProbeResult {
                node_id: node.node_id(),
                hash_ok: true,
                timed_out: false,
                ttfb_ms: 1,
                throughput_bytes_per_s: 2,
            }),
        ),
        (
            "SimulationRequest",
            json!(crate::api::ledger::SimulationRequest {
                pool: 1000,
                nodes: inputs.clone(),
                rewards: Some(RewardConfig::default()),
            }),
        ),
        (
            "RewardSplit",
            json!(split_pool(1000, &inputs, &RewardConfig::default())),
        ),
        (
            "ProofResponse",
            json!(crate::api::ledger::ProofResponse {
                epoch: 1,
                merkle_root: tree.root().to_string(),
                leaf: leaves[1],
                proof: tree.proof(1).expect("proof"),
            }),
        ),
        (
            "PlayResponse",
            json!(PlayResponse {
                node_id: node.node_id(),
                rtmp_url: "rtmp://n/live-1".into(),
                http_flv_url: "http://n/live/live-1.flv".into(),
                hls_url: "http://n/live/live-1.m3u8".into(),
                grant,
            }),
        ),
        (
            "CoordinatorInfo",
            json!(crate::CoordinatorInfo {
                coordinator_key: coordinator.coordinator_key(),
                epoch_length_ms: 1,
                local_trial: false,
                relay_fanout: Some(4),
                max_receipts_per_request: Some(256),
                heartbeat_claim_totals: true,
            }),
        ),
        (
            "CreateStreamResponse",
            json!(CreateStreamResponse {
                stream: stream_record.clone().into(),
                stream_key: "k".into(),
            }),
        ),
        (
            "SegmentReportResponse",
            json!(SegmentReportResponse {
                segment: segment.into(),
                created: true,
            }),
        ),
        (
            "EarningsResponse",
            json!(crate::wire::EarningsResponse {
                node: node_record(&node).into(),
                total: 1,
                entries: vec![entry.clone().into()],
                payouts: vec![payout.into()],
            }),
        ),
        (
            "StatementResponse",
            json!(crate::wire::StatementResponse {
                settlement: settlement.into(),
                entries: vec![entry.into()],
                evidence: vec![evidence.into()],
            }),
        ),
        (
            "ReceiptsOutcome",
            json!(crate::intake::receipts::outcome(
                1,
                vec![crate::wire::ReceiptRejected {
                    code: crate::wire::ReceiptRejectionCode::Outdated,
                    reason: "why".into(),
                }],
            )),
        ),
        (
            "StreamRecord",
            json!(crate::wire::StreamInfo::from(stream_record)),
        ),
        (
            "StatsRow",
            json!(crate::wire::StatsInfo::from(StatsRow {
                minute: 1,
                bytes: 2,
                receipts: 3,
            })),
        ),
        (
            "Totals",
            json!(crate::wire::TotalsInfo::from(Totals::default())),
        ),
        (
            "ProbeRecord",
            json!(crate::wire::ProbeInfo::from(ProbeRecord {
                node_id: node.node_id().to_string(),
                epoch: 1,
                hash_ok: true,
                timed_out: false,
                ttfb_ms: 1,
                throughput_bytes_per_s: 2,
                probed_at_ms: 3,
            })),
        ),
        (
            "PublishCheckResponse",
            json!(crate::api::streams::PublishCheckResponse {
                allowed: true,
                stream_id: "live-1".into(),
                origin_node: None,
            }),
        ),
        (
            "DeregisterResponse",
            json!(crate::api::nodes::DeregisterResponse {
                node_id: node.node_id().to_string(),
                active: false,
            }),
        ),
        (
            "OperatorRotation",
            json!(streamr_core::OperatorRotation::sign(
                &node,
                "acme",
                viewer.operator_key(),
                1
            )),
        ),
        (
            "OperatorBindingInfo",
            json!(crate::wire::OperatorBindingInfo {
                operator: "acme".into(),
                operator_key: node.operator_key(),
                rotation: 1,
            }),
        ),
    ]
}

#[test]
fn real_values_of_every_type_fit_their_documented_schema() {
    let mut missed = Vec::new();
    let doc = build(&CoordConfig::default(), &mut missed);
    for (name, value) in samples() {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        if let Err(error) = check(&doc, &schema, &value, name) {
            panic!("{error}\n{value:#}");
        }
    }
}

#[tokio::test]
async fn error_answers_fit_the_error_schema() {
    use axum::response::IntoResponse;
    let mut missed = Vec::new();
    let doc = build(&CoordConfig::default(), &mut missed);
    let response = crate::ApiError::Unauthorized.into_response();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let value: Value = serde_json::from_slice(&body).expect("json");
    check(
        &doc,
        &json!({ "$ref": "#/components/schemas/Error" }),
        &value,
        "Error",
    )
    .expect("error body");
}

fn pattern(text: &str) -> regex::Regex {
    regex::Regex::new(text).expect("pattern compiles")
}

proptest! {
    #[test]
    fn the_stream_id_pattern_is_the_handlers_rule(id in "[a-zA-Z0-9._/ -]{0,8}") {
        let re = pattern(super::super::streams::STREAM_ID_PATTERN);
        prop_assert_eq!(re.is_match(&id), super::super::streams::valid_stream_id(&id));
    }

    #[test]
    fn the_registration_patterns_are_the_handlers_rule(
        text in "(rtmps?://|https?://|ftp://)?[a-z\\x00-\\x1f\\x7f-\\u{a0}é]{0,6}",
        url in any::<bool>(),
    ) {
        let re = pattern(if url { super::super::nodes::URL_PATTERN } else { super::super::nodes::TEXT_PATTERN });
        let documented = re.is_match(&text) && !text.is_empty();
        let accepted = super::super::nodes::check_text("field", &text, url).is_ok();
        prop_assert_eq!(documented, accepted, "{:?}", text);
    }
}

/// Every operation that needs only the admin token answers 401 without it, or with a wrong one,
/// whatever else is wrong with the request (a malformed body here): the token is checked first.
#[tokio::test]
async fn admin_operations_answer_401_before_looking_at_the_request() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    let config = CoordConfig {
        admin_token: Some("right".into()),
        rate_limit: None,
        ..CoordConfig::default()
    };
    let storage = crate::connect("sqlite::memory:").await.expect("storage");
    let app = crate::Coordinator::new(config.clone(), storage).router();
    let mut missed = Vec::new();
    let doc = build(&config, &mut missed);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if operation["security"] != json!([{ "admin": [] }]) {
                continue;
            }
            let uri = path.replace("{id}", "x").replace("{name}", "x");
            for token in [None, Some("Bearer wrong"), Some("right")] {
                let mut request = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header(header::CONTENT_TYPE, "application/json");
                if let Some(token) = token {
                    request = request.header(header::AUTHORIZATION, token);
                }
                let request = request.body(Body::from("{not json")).expect("request");
                let response = app.clone().oneshot(request).await.expect("answer");
                assert_eq!(
                    response.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {token:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "admin-only operations");
}

/// `?limit=` outside the documented 1-1000 is refused, not quietly clamped.
#[tokio::test]
async fn list_limits_outside_the_documented_range_are_refused() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    let config = CoordConfig {
        rate_limit: None,
        ..CoordConfig::default()
    };
    let storage = crate::connect("sqlite::memory:").await.expect("storage");
    let app = crate::Coordinator::new(config, storage).router();
    for (query, status) in [
        ("", StatusCode::OK),
        ("?limit=1", StatusCode::OK),
        ("?limit=1000", StatusCode::OK),
        ("?limit=0", StatusCode::BAD_REQUEST),
        ("?limit=1001", StatusCode::BAD_REQUEST),
        ("?limit=70000", StatusCode::BAD_REQUEST),
        ("?other=1", StatusCode::BAD_REQUEST),
    ] {
        let request = Request::get(format!("/streams{query}"))
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("answer");
        assert_eq!(response.status(), status, "/streams{query}");
    }
}
