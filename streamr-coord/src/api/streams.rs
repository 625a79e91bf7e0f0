//! Stream lifecycle, the origin's publish check and segment reports.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rand::RngCore;
use serde::Deserialize;
use streamr_core::{
    ContentDigest, LlSegmentHashes, NodeId, SegmentChain, SignatureError, StreamId,
};

use super::openapi::{ErrorSchema, SegmentReportRequestSchema};
use super::{Admin, Shared};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::storage::{to_wire, LlSegment, SegmentRecord, StreamRecord};
use crate::wire::{
    CreateStreamRequest, CreateStreamResponse, PublishCheckRequest, SegmentInfo, SegmentReport,
    SegmentReportRequest, SegmentReportResponse, SetOriginRequest, StreamInfo,
};

/// `?limit=` for list endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(try_from = "RawLimit")]
#[into_params(parameter_in = Query)]
pub(crate) struct Limit {
    /// At most this many rows (1-1000, default 100).
    #[serde(default = "default_limit")]
    #[param(default = 100)]
    limit: u16,
}

/// `?limit=` as given, before its range is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    #[serde(default = "default_limit")]
    limit: u16,
}

impl TryFrom<RawLimit> for Limit {
    type Error = String;

    fn try_from(raw: RawLimit) -> Result<Self, Self::Error> {
        if (1..=MAX_LIST_LIMIT).contains(&raw.limit) {
            Ok(Limit { limit: raw.limit })
        } else {
            Err(format!(
                "limit must be 1-{MAX_LIST_LIMIT}, not {}",
                raw.limit
            ))
        }
    }
}

/// Most rows a list endpoint answers with.
pub(crate) const MAX_LIST_LIMIT: u16 = 1000;

/// The stream names `POST /streams` accepts, as the OpenAPI document states them: what
/// [`valid_stream_id`] checks (the length limit is `streamr_core::MAX_NAME_LEN`).
pub(crate) const STREAM_ID_PATTERN: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$";

/// The rule nodes apply to RTMP and HTTP stream names (`streamr_media::name`): a stream the
/// coordinator accepts is one every node can publish, relay and write to disk.
pub(crate) fn valid_stream_id(id: &str) -> bool {
    !(id.is_empty()
        || id.starts_with('.')
        || id.contains("..")
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// `{id}` of the stream routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct StreamPath {
    /// Stream id (the name the origin publishes under).
    id: String,
}

/// Answer to a successful publish check.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PublishCheckResponse {
    /// Always `true` (a refused check answers 403).
    pub(crate) allowed: bool,
    /// The stream.
    pub(crate) stream_id: String,
    /// The node bound as the stream's origin, if any.
    pub(crate) origin_node: Option<String>,
}

fn default_limit() -> u16 {
    100
}

impl Limit {
    pub(crate) fn value(&self) -> i64 {
        i64::from(self.limit)
    }
}

fn stream_key_hash(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64, ApiError> {
    i64::try_from(value).map_err(|_| ApiError::InvalidField {
        field,
        reason: format!("{value} is larger than {}", i64::MAX),
    })
}

pub(crate) async fn load_stream(state: &Shared, id: &str) -> Result<StreamRecord, ApiError> {
    state
        .storage
        .get_stream(id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "stream",
            id: id.to_owned(),
        })
}

/// Loads stream `id` for a report its origin signed: 403 `not_origin` when the report was
/// signed for another stream, or `signer` is not the stream's bound origin (or it has none
/// yet).
pub(crate) async fn origin_stream(
    state: &Shared,
    id: &str,
    signed_for: &StreamId,
    signer: &NodeId,
) -> Result<StreamRecord, ApiError> {
    let stream = load_stream(state, id).await?;
    if signed_for.as_str() != stream.id {
        return Err(ApiError::NotOrigin {
            stream_id: stream.id,
            reason: format!("the report was signed for stream {signed_for}"),
        });
    }
    let signer = signer.to_string();
    if stream.origin_node.as_deref() != Some(signer.as_str()) {
        return Err(ApiError::NotOrigin {
            reason: match &stream.origin_node {
                Some(origin) => format!("node {signer} is not the origin node {origin}"),
                None => format!(
                    "the stream has no origin node yet; node {signer} must pass a signed \
                     publish check first"
                ),
            },
            stream_id: stream.id,
        });
    }
    Ok(stream)
}

/// Register a stream; returns the stream key once.
#[utoipa::path(post, path = "/streams", tag = "streams", security(("admin" = [])),
    request_body = CreateStreamRequest,
    responses(
        (status = 201, description = "Created", body = CreateStreamResponse),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 409, description = "conflict: the stream exists already", body = ErrorSchema),
    ))]
pub(crate) async fn create(
    State(state): State<Shared>,
    _admin: Admin,
    ApiJson(request): ApiJson<CreateStreamRequest>,
) -> Result<(StatusCode, Json<CreateStreamResponse>), ApiError> {
    let id = request.id.as_str();
    if !valid_stream_id(id) {
        return Err(ApiError::InvalidField {
            field: "id",
            reason: "must be 1-128 characters of A-Z a-z 0-9 - _ ., not starting with a dot and without \"..\"".into(),
        });
    }
    if state.storage.get_stream(id).await?.is_some() {
        return Err(ApiError::Conflict(format!("stream {id} exists already")));
    }
    let stream_key = new_stream_key();
    let stream = StreamRecord {
        id: id.to_owned(),
        title: request.title,
        stream_key_hash: stream_key_hash(&stream_key),
        status: "live".into(),
        created_at_ms: now_ms(),
        ended_at_ms: None,
        origin_node: request.origin_node.map(|node| node.to_string()),
    };
    state.storage.create_stream(&stream).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateStreamResponse {
            stream: stream.into(),
            stream_key,
        }),
    ))
}

/// A fresh random stream key (48 hex characters).
fn new_stream_key() -> String {
    let mut key = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut key);
    hex::encode(key)
}

/// `POST /streams/{id}/key` (admin): replaces the stream key with a new one, shown once in the
/// answer (the coordinator stores only its hash, so a lost key cannot be shown again: rotate
/// it). The old key stops working at once; a publisher already live stays live.
#[utoipa::path(post, path = "/streams/{id}/key", tag = "streams", security(("admin" = [])),
    params(StreamPath),
    responses(
        (status = 200, description = "The new key, shown once", body = CreateStreamResponse),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn rotate_key(
    State(state): State<Shared>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CreateStreamResponse>, ApiError> {
    let stream_key = new_stream_key();
    let stream = state
        .storage
        .set_stream_key_hash(&id, &stream_key_hash(&stream_key))
        .await?
        .ok_or(ApiError::NotFound {
            what: "stream",
            id: id.clone(),
        })?;
    tracing::info!(stream = %id, "stream key rotated by an operator");
    Ok(Json(CreateStreamResponse {
        stream: stream.into(),
        stream_key,
    }))
}

/// List streams, newest first.
#[utoipa::path(get, path = "/streams", tag = "streams", params(Limit),
    responses((status = 200, description = "Streams", body = Vec<StreamInfo>)))]
pub(crate) async fn list(
    State(state): State<Shared>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<StreamInfo>>, ApiError> {
    Ok(Json(to_wire(
        state.storage.list_streams(limit.value()).await?,
    )))
}

/// One stream.
#[utoipa::path(get, path = "/streams/{id}", tag = "streams", params(StreamPath),
    responses(
        (status = 200, description = "The stream", body = StreamInfo),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn get_one(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StreamInfo>, ApiError> {
    Ok(Json(load_stream(&state, &id).await?.into()))
}

/// End a stream.
#[utoipa::path(post, path = "/streams/{id}/end", tag = "streams", security(("admin" = [])),
    params(StreamPath),
    responses(
        (status = 200, description = "The ended stream", body = StreamInfo),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn end(
    State(state): State<Shared>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StreamInfo>, ApiError> {
    let ended = state.storage.end_stream(&id, now_ms()).await?;
    // Its parts are no longer confirmed to viewers (another replica's memory forgets them as
    // newer parts come in).
    state.recent_parts.forget_stream(&id);
    ended
        .map(|stream| Json(stream.into()))
        .ok_or(ApiError::NotFound { what: "stream", id })
}

/// Bind the stream to another origin node, or clear the binding.
///
/// Only the origin node may sign segment reports. With `{"origin_node": null}` the next node
/// that signs a successful publish check is bound.
#[utoipa::path(post, path = "/streams/{id}/origin", tag = "streams", security(("admin" = [])),
    params(StreamPath), request_body = SetOriginRequest,
    responses(
        (status = 200, description = "The stream", body = StreamInfo),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn set_origin(
    State(state): State<Shared>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SetOriginRequest>,
) -> Result<Json<StreamInfo>, ApiError> {
    let node = request.origin_node.map(|node| node.to_string());
    let stream = state
        .storage
        .set_origin(&id, node.as_deref())
        .await?
        .ok_or(ApiError::NotFound {
            what: "stream",
            id: id.clone(),
        })?;
    tracing::info!(stream = %id, origin_node = ?stream.origin_node, "origin node set by an operator");
    Ok(Json(stream.into()))
}

/// Maps a failed origin signature check to 401: bad signature, or a timestamp outside the
/// skew window.
pub(crate) fn origin_signature_error(
    state: &Shared,
    what: &'static str,
    error: SignatureError,
) -> ApiError {
    match error {
        SignatureError::StaleTimestamp {
            timestamp_ms,
            skew_ms,
            ..
        } => ApiError::ClockSkew {
            timestamp_ms: i64::try_from(timestamp_ms).unwrap_or(i64::MAX),
            skew_ms: i64::try_from(skew_ms).unwrap_or(i64::MAX),
            limit_ms: i64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
        },
        _ => ApiError::BadSignature { what },
    }
}

pub(crate) fn max_skew_ms(state: &Shared) -> u64 {
    u64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_now_ms() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

/// The origin's on-publish hook: 200 when the key matches a live stream, 403 otherwise.
///
/// When the origin signs an [`streamr_core::OriginClaim`] with the request, a stream without
/// an origin is bound to that node (trust on first publish), and a stream bound to another
/// node refuses the publish (403 `not_origin`).
#[utoipa::path(post, path = "/streams/{id}/publish-check", tag = "streams",
    params(StreamPath), request_body = PublishCheckRequest,
    responses(
        (status = 200, description = "The key is valid", body = PublishCheckResponse),
        (status = 401, description = "bad_signature or clock_skew on the origin claim",
         body = ErrorSchema),
        (status = 403, description = "stream_key_rejected, or not_origin", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn publish_check(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<PublishCheckRequest>,
) -> Result<Json<PublishCheckResponse>, ApiError> {
    let stream = load_stream(&state, &id).await?;
    let presented = blake3::hash(request.stream_key.as_bytes());
    let matches = blake3::Hash::from_hex(&stream.stream_key_hash)
        .map(|stored| stored == presented)
        .unwrap_or(false);
    if !(matches && stream.status == "live") {
        return Err(ApiError::StreamKeyRejected { stream_id: id });
    }
    let mut origin_node = stream.origin_node.clone();
    if let Some(claim) = &request.origin {
        let claim = claim
            .verify(unix_now_ms(), max_skew_ms(&state))
            .map_err(|error| origin_signature_error(&state, "origin claim", error))?;
        if claim.stream_id.as_str() != stream.id {
            return Err(ApiError::NotOrigin {
                stream_id: stream.id,
                reason: format!("the claim was signed for stream {}", claim.stream_id),
            });
        }
        let signer = claim.node_id.to_string();
        let bound = state.storage.bind_origin(&stream.id, &signer).await?;
        if bound.as_deref() != Some(signer.as_str()) {
            return Err(ApiError::NotOrigin {
                stream_id: stream.id,
                reason: format!(
                    "node {signer} is not the origin node {}",
                    bound.unwrap_or_default()
                ),
            });
        }
        origin_node = Some(signer);
    }
    Ok(Json(PublishCheckResponse {
        allowed: true,
        stream_id: stream.id,
        origin_node,
    }))
}

/// Stores a segment hash and the running digest the viewers' receipts must match.
///
/// Either a report signed by the stream's origin node (no token; 401 `bad_signature` or
/// `clock_skew` when the signature or timestamp fails, 403 `not_origin` when the signer is not
/// the stream's origin or the report names another stream), or a bare report with the admin
/// token (operators' tools). Refused reports store nothing.
#[utoipa::path(post, path = "/streams/{id}/segments", tag = "streams",
    security((), ("admin" = [])), params(StreamPath), request_body = SegmentReportRequestSchema,
    responses(
        (status = 201, description = "Stored", body = SegmentReportResponse),
        (status = 200, description = "The same report was stored already",
         body = SegmentReportResponse),
        (status = 401, description = "unauthorized, bad_signature or clock_skew",
         body = ErrorSchema),
        (status = 403, description = "not_origin", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
        (status = 409, description = "conflict: the sequence was reported with another hash",
         body = ErrorSchema),
    ))]
pub(crate) async fn report_segment(
    State(state): State<Shared>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SegmentReportRequest>,
) -> Result<(StatusCode, Json<SegmentReportResponse>), ApiError> {
    let (stream, report, ll, run) = match request {
        SegmentReportRequest::Admin(report) => {
            state.require_admin(&headers)?;
            (load_stream(&state, &id).await?, report, None, None)
        }
        SegmentReportRequest::Signed(signed) => {
            let body = signed
                .verify(unix_now_ms(), max_skew_ms(&state))
                .map_err(|error| origin_signature_error(&state, "segment report", error))?;
            let stream = origin_stream(&state, &id, &body.stream_id, &body.node_id).await?;
            let report = SegmentReport {
                sequence: body.sequence,
                hash: body.hash,
                published_ms: body.published_ms,
            };
            (stream, report, body.ll.clone(), body.run)
        }
    };
    let sequence = to_i64("sequence", report.sequence)?;
    let published_ms = to_i64("published_ms", report.published_ms)?;
    let previous = match sequence.checked_sub(1) {
        Some(prev) if prev >= 0 => state.storage.get_segment(&stream.id, prev).await?,
        _ => None,
    };
    let mut chain = match previous {
        Some(prev) => {
            let digest: ContentDigest = prev.digest.parse().map_err(|_| {
                ApiError::Storage(crate::StorageError::Corrupt {
                    what: "segment digest",
                    detail: format!("{} #{}", prev.stream_id, prev.sequence),
                })
            })?;
            SegmentChain::anchored(digest, report.sequence)
        }
        None => SegmentChain::genesis(report.sequence),
    };
    let digest = chain.push(&report.hash);
    let mut segment = SegmentRecord {
        stream_id: stream.id,
        sequence,
        hash: report.hash.to_string(),
        digest: digest.to_string(),
        published_ms,
        reported_at_ms: now_ms(),
        run: run.map(|run| format!("{run:016x}")),
        ll: None,
    };
    let created = state.storage.insert_segment(&segment).await?;
    if let Some(ll) = &ll {
        segment.ll = Some(store_ll(&state, &segment.stream_id, report.sequence, ll).await?);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SegmentReportResponse {
            segment: segment.into(),
            created,
        }),
    ))
}

/// Stores the LL-HLS rendition of segment `sequence`, its digest chained from the previous
/// segment's LL digest (from zero when that segment has none), and returns what is stored: the
/// first report of a sequence number wins, as for the TS hash.
async fn store_ll(
    state: &Shared,
    stream_id: &str,
    sequence: u64,
    ll: &LlSegmentHashes,
) -> Result<LlSegment, ApiError> {
    let at = to_i64("sequence", sequence)?;
    let corrupt = |sequence: i64| {
        ApiError::Storage(crate::StorageError::Corrupt {
            what: "LL-HLS segment digest",
            detail: format!("{stream_id} #{sequence}"),
        })
    };
    let mut chain = SegmentChain::genesis(sequence);
    if let Some(previous) = at.checked_sub(1).filter(|previous| *previous >= 0) {
        let stored = state
            .storage
            .list_segments_ll(stream_id, previous, previous)
            .await?;
        if let Some((_, previous_ll)) = stored.first() {
            let digest: ContentDigest =
                previous_ll.digest.parse().map_err(|_| corrupt(previous))?;
            chain = SegmentChain::anchored(digest, sequence);
        }
    }
    let record = LlSegment {
        hash: ll.hash.to_string(),
        digest: chain.push(&ll.hash).to_string(),
        part_hashes: ll.part_hashes.iter().map(ToString::to_string).collect(),
        len: to_i64("ll.len", ll.len)?,
    };
    if state
        .storage
        .insert_segment_ll(stream_id, at, &record)
        .await?
    {
        return Ok(record);
    }
    let stored = state.storage.list_segments_ll(stream_id, at, at).await?;
    stored
        .into_iter()
        .next()
        .map(|(_, stored)| stored)
        .ok_or_else(|| corrupt(at))
}

/// Latest segments, newest first.
#[utoipa::path(get, path = "/streams/{id}/segments", tag = "streams", params(StreamPath, Limit),
    responses(
        (status = 200, description = "Segments", body = Vec<SegmentInfo>),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn list_segments(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<SegmentInfo>>, ApiError> {
    load_stream(&state, &id).await?;
    let mut segments = state.storage.list_segments(&id, limit.value()).await?;
    let (Some(newest), Some(oldest)) = (segments.first(), segments.last()) else {
        return Ok(Json(to_wire(segments)));
    };
    let renditions: std::collections::HashMap<i64, LlSegment> = state
        .storage
        .list_segments_ll(&id, oldest.sequence, newest.sequence)
        .await?
        .into_iter()
        .collect();
    if !renditions.is_empty() {
        for segment in &mut segments {
            segment.ll = renditions.get(&segment.sequence).cloned();
        }
    }
    Ok(Json(to_wire(segments)))
}

/// Per-minute delivery of a stream.
#[utoipa::path(get, path = "/streams/{id}/stats", tag = "streams", params(StreamPath, Limit),
    responses(
        (status = 200, description = "Per-minute rows", body = Vec<crate::wire::StatsInfo>),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn stats(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<crate::wire::StatsInfo>>, ApiError> {
    load_stream(&state, &id).await?;
    Ok(Json(to_wire(
        state
            .storage
            .minute_stats("stream", &id, limit.value())
            .await?,
    )))
}
