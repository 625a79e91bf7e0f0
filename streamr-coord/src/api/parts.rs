//! LL-HLS part hashes as the origin cuts its parts: the origin reports them (signed, like its
//! segment reports) and viewers ask for the part they just fetched, by hash, waiting briefly
//! when the report has not arrived yet, so each part is checked before it is played.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use streamr_core::{ContentDigest, SignedPartReport, MAX_PARTS_PER_REPORT, MAX_PART_LEN};

use super::openapi::{ErrorSchema, SignedPartReportSchema};
use super::streams::{
    load_stream, max_skew_ms, origin_signature_error, origin_stream, to_i64, unix_now_ms,
    StreamPath,
};
use super::Shared;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::until_stopping;
use crate::storage::{PartRecord, PartsStored};
use crate::wire::{NumberedPartReport, PartInfo, PartReportResponse, PartReportsPage};

/// Longest wait `GET /streams/{id}/parts/{hash}` accepts, in milliseconds.
pub(crate) const MAX_PART_WAIT_MS: u16 = 5_000;

/// How long part reports are kept: viewers only look up parts of the live edge (the segment
/// reports keep every part hash for good).
pub(crate) const PART_RETENTION: Duration = Duration::from_secs(10 * 60);

/// How often a waiting request looks in storage too, for parts another coordinator replica
/// stored (those of this process wake it at once).
const STORAGE_RECHECK: Duration = Duration::from_millis(500);

/// `?wait_ms=` of a part lookup.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(try_from = "RawWait")]
#[into_params(parameter_in = Query)]
pub(crate) struct Wait {
    /// Wait up to this many milliseconds for the origin to report the part (0-5000,
    /// default 0: answer at once).
    #[serde(default)]
    #[param(default = 0, maximum = 5000)]
    wait_ms: u16,
}

/// `?wait_ms=` as given, before its range is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    #[serde(default)]
    wait_ms: u16,
}

impl TryFrom<RawWait> for Wait {
    type Error = String;

    fn try_from(raw: RawWait) -> Result<Self, Self::Error> {
        if raw.wait_ms <= MAX_PART_WAIT_MS {
            Ok(Wait {
                wait_ms: raw.wait_ms,
            })
        } else {
            Err(format!(
                "wait_ms must be 0-{MAX_PART_WAIT_MS}, not {}",
                raw.wait_ms
            ))
        }
    }
}

/// `{id}` and `{hash}` of a part lookup.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct PartPath {
    /// Stream id.
    id: String,
    /// Hex BLAKE3 hash of the part bytes.
    hash: String,
}

/// Stores the hashes of LL-HLS parts as the origin cuts them, so viewers check each part
/// before playing it.
///
/// Signed by the stream's origin node only (401 `bad_signature` or `clock_skew` when the
/// signature or timestamp fails, 403 `not_origin` when the signer is not the stream's origin
/// or the report names another stream). At most 32 parts per report; a report is stored
/// whole or not at all, and a part whose place (run, msn, index) was reported with another
/// hash refuses the report (409). Parts are kept ten minutes.
#[utoipa::path(post, path = "/streams/{id}/parts", tag = "streams",
    params(StreamPath), request_body = SignedPartReportSchema,
    responses(
        (status = 201, description = "Stored", body = PartReportResponse),
        (status = 200, description = "Every part was stored already", body = PartReportResponse),
        (status = 400, description = "invalid_field: no parts, too many, or a field out of range",
         body = ErrorSchema),
        (status = 401, description = "bad_signature or clock_skew", body = ErrorSchema),
        (status = 403, description = "not_origin", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
        (status = 409, description = "conflict: a part's place was reported with another hash",
         body = ErrorSchema),
    ))]
pub(crate) async fn report_parts(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiJson(signed): ApiJson<SignedPartReport>,
) -> Result<(StatusCode, Json<PartReportResponse>), ApiError> {
    let body = signed
        .verify(unix_now_ms(), max_skew_ms(&state))
        .map_err(|error| origin_signature_error(&state, "part report", error))?;
    if body.parts.is_empty() || body.parts.len() > MAX_PARTS_PER_REPORT {
        return Err(ApiError::InvalidField {
            field: "parts",
            reason: format!(
                "must hold 1-{MAX_PARTS_PER_REPORT} parts, not {}",
                body.parts.len()
            ),
        });
    }
    let stream = origin_stream(&state, &id, &body.stream_id, &body.node_id).await?;
    let now = now_ms();
    let run = format!("{:016x}", body.run);
    let mut records = Vec::with_capacity(body.parts.len());
    for part in &body.parts {
        if part.len > MAX_PART_LEN {
            return Err(ApiError::InvalidField {
                field: "parts.len",
                reason: format!("{} is larger than {MAX_PART_LEN}", part.len),
            });
        }
        records.push(PartRecord {
            stream_id: stream.id.clone(),
            run: run.clone(),
            msn: to_i64("parts.msn", part.msn)?,
            part_index: i64::from(part.index),
            hash: part.hash.to_string(),
            len: to_i64("parts.len", part.len)?,
            cut_ms: to_i64("parts.cut_ms", part.cut_ms)?,
            reported_at_ms: now,
        });
    }
    let retention = i64::try_from(PART_RETENTION.as_millis()).unwrap_or(i64::MAX);
    let forget_before = now.saturating_sub(retention);
    // Kept as signed, for nodes to pass on to viewers who check the signature themselves.
    let signed_json = serde_json::to_string(&signed).ok();
    match state
        .storage
        .insert_parts(&records, signed_json.as_deref(), forget_before)
        .await?
    {
        PartsStored::Stored { created } => {
            state.recent_parts.record(&records);
            let status = if created > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(PartReportResponse {
                    parts: u64::try_from(records.len()).unwrap_or(u64::MAX),
                    created,
                }),
            ))
        }
        PartsStored::Conflict { msn, part_index } => Err(ApiError::Conflict(format!(
            "part {msn}.{part_index} of run {run} of stream {} was reported with another hash",
            stream.id
        ))),
    }
}

/// The origin's part whose bytes hash to `{hash}`: what a viewer asks right after fetching a
/// part, before playing it.
///
/// With `wait_ms`, an unknown part is waited for that long (the origin reports each part as
/// it cuts it, usually before a viewer fetched it from a friend node); 404 `not_found` when it
/// was not reported by then (or more than ten minutes ago). A coordinator that stops while
/// the request waits looks in storage once more and answers at once: the part when it is
/// there, otherwise 503 `shutting_down` (not a 404: the wait was cut short; ask again).
#[utoipa::path(get, path = "/streams/{id}/parts/{hash}", tag = "streams", params(PartPath, Wait),
    responses(
        (status = 200, description = "The part", body = PartInfo),
        (status = 404, description = "not_found: no such stream, or no such part (yet)",
         body = ErrorSchema),
        (status = 503, description = "shutting_down: the coordinator stopped while the request \
         waited", body = ErrorSchema),
    ))]
pub(crate) async fn find_part(
    State(state): State<Shared>,
    ApiPath((id, hash)): ApiPath<(String, String)>,
    ApiQuery(wait): ApiQuery<Wait>,
) -> Result<Json<PartInfo>, ApiError> {
    let hash: ContentDigest = hash.parse().map_err(|_| ApiError::InvalidField {
        field: "hash",
        reason: "must be 64 hex digits".into(),
    })?;
    let hash = hash.to_string();
    load_stream(&state, &id).await?;
    // Subscribed before looking, so a report stored in between wakes this request.
    let mut reported = state.recent_parts.subscribe();
    let mut stopping = state.stopping.subscribe();
    if let Some(part) = state.recent_parts.find(&id, &hash) {
        return Ok(Json(part.into()));
    }
    if let Some(part) = state.storage.find_part(&id, &hash).await? {
        return Ok(Json(part.into()));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait.wait_ms));
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + STORAGE_RECHECK,
        STORAGE_RECHECK,
    );
    let not_found = || ApiError::NotFound {
        what: "part",
        id: hash.clone(),
    };
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            () = until_stopping(&mut stopping) => {
                stopped = true;
                break;
            }
            changed = reported.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Some(part) = state.recent_parts.find(&id, &hash) {
                    return Ok(Json(part.into()));
                }
            }
            _ = recheck.tick() => {
                if let Some(part) = state.storage.find_part(&id, &hash).await? {
                    return Ok(Json(part.into()));
                }
            }
        }
    }
    if wait.wait_ms > 0 {
        if let Some(part) = state.storage.find_part(&id, &hash).await? {
            return Ok(Json(part.into()));
        }
    }
    // A lookup that was not to wait (`wait_ms=0`) is answered as ever.
    if stopped && wait.wait_ms > 0 {
        return Err(ApiError::ShuttingDown);
    }
    Err(not_found())
}

/// Most reports one `GET /streams/{id}/part-reports` returns (the newest ones: about 20 s of a
/// stream whose origin reports each part as it cuts it).
pub(crate) const MAX_REPORTS_PER_PAGE: u16 = 64;

/// `?after=&wait_ms=` of a part report fetch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(try_from = "RawCursor")]
#[into_params(parameter_in = Query)]
pub(crate) struct Cursor {
    /// Return the reports numbered above this (default 0: the newest reports held).
    #[serde(default)]
    #[param(default = 0)]
    after: u64,
    /// With no report above `after` yet, wait up to this many milliseconds for one (0-5000,
    /// default 0: answer at once).
    #[serde(default)]
    #[param(default = 0, maximum = 5000)]
    wait_ms: u16,
}

/// `?after=&wait_ms=` as given, before the wait's range is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCursor {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u16,
}

impl TryFrom<RawCursor> for Cursor {
    type Error = String;

    fn try_from(raw: RawCursor) -> Result<Self, Self::Error> {
        if raw.wait_ms > MAX_PART_WAIT_MS {
            return Err(format!(
                "wait_ms must be 0-{MAX_PART_WAIT_MS}, not {}",
                raw.wait_ms
            ));
        }
        Ok(Cursor {
            after: raw.after,
            wait_ms: raw.wait_ms,
        })
    }
}

/// The reports stored above `after`, parsed; a row that does not parse is skipped (and
/// logged): nobody could verify it anyway.
async fn reports_after(
    state: &Shared,
    id: &str,
    after: u64,
) -> Result<Vec<NumberedPartReport>, ApiError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = state
        .storage
        .part_reports_after(id, after, i64::from(MAX_REPORTS_PER_PAGE))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, report)| {
            let seq = u64::try_from(seq).ok()?;
            match serde_json::from_str(&report) {
                Ok(report) => Some(NumberedPartReport { seq, report }),
                Err(error) => {
                    tracing::warn!(stream = id, seq, %error, "unreadable stored part report");
                    None
                }
            }
        })
        .collect())
}

/// The stream's signed part reports numbered above `after`, oldest first: what a node serving
/// LL-HLS fetches once for all its viewers (and passes on unchanged), so that no viewer asks
/// the coordinator about each part.
///
/// Each report is exactly as the origin signed it; a viewer checks the signature against the
/// stream's origin (`origin_node` of `GET /streams/{id}`), the stream, the run and the
/// timestamp itself. With `wait_ms`, a request finding nothing above `after` waits that long
/// for the next report (a long poll) and then answers with an empty list; a coordinator that
/// stops while the request waits answers at once, as at the end of the wait (the reports
/// stored by then, maybe none). At most 64 reports, the newest; `next` is the cursor to ask
/// with next. Reports are kept ten minutes and forgotten when the stream ends.
#[utoipa::path(get, path = "/streams/{id}/part-reports", tag = "streams",
    params(StreamPath, Cursor),
    responses(
        (status = 200, description = "The reports above the cursor (maybe none)",
         body = PartReportsPage),
        (status = 400, description = "invalid_query: wait_ms out of range", body = ErrorSchema),
        (status = 404, description = "not_found: no such stream", body = ErrorSchema),
    ))]
pub(crate) async fn part_reports(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(cursor): ApiQuery<Cursor>,
) -> Result<Json<PartReportsPage>, ApiError> {
    load_stream(&state, &id).await?;
    let page = |reports: Vec<NumberedPartReport>| {
        let next = reports.last().map_or(cursor.after, |last| last.seq);
        Json(PartReportsPage { reports, next })
    };
    // Subscribed before looking, so a report stored in between wakes this request.
    let mut reported = state.recent_parts.subscribe();
    let mut stopping = state.stopping.subscribe();
    let mut seen = state.recent_parts.reports_of(&id);
    let reports = reports_after(&state, &id, cursor.after).await?;
    if !reports.is_empty() || cursor.wait_ms == 0 {
        return Ok(page(reports));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(cursor.wait_ms));
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + STORAGE_RECHECK,
        STORAGE_RECHECK,
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            // The coordinator stops: answered as at the end of the wait.
            () = until_stopping(&mut stopping) => break,
            changed = reported.changed() => {
                if changed.is_err() {
                    break;
                }
                // Reports of other streams wake every waiter: storage is asked only when this
                // stream got one.
                let now = state.recent_parts.reports_of(&id);
                if now == seen {
                    continue;
                }
                seen = now;
            }
            _ = recheck.tick() => {}
        }
        let reports = reports_after(&state, &id, cursor.after).await?;
        if !reports.is_empty() {
            return Ok(page(reports));
        }
    }
    Ok(page(reports_after(&state, &id, cursor.after).await?))
}

/// Longest hold `GET /streams/{id}/part-reports/stream` accepts, in milliseconds.
pub(crate) const MAX_HOLD_MS: u32 = 60_000;

/// Hold of a streamed answer when the request names none, in milliseconds.
const DEFAULT_HOLD_MS: u32 = 30_000;

/// `?after=&hold_ms=` of a streamed part report fetch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(try_from = "RawHold")]
#[into_params(parameter_in = Query)]
pub(crate) struct Hold {
    /// Write the reports numbered above this (default 0: the newest reports held first).
    #[serde(default)]
    #[param(default = 0)]
    after: u64,
    /// Keep the answer open this many milliseconds (1000-60000, default 30000).
    #[serde(default)]
    #[param(default = 30000, minimum = 1000, maximum = 60000)]
    hold_ms: Option<u32>,
}

/// `?after=&hold_ms=` as given, before the hold's range is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHold {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    hold_ms: Option<u32>,
}

impl TryFrom<RawHold> for Hold {
    type Error = String;

    fn try_from(raw: RawHold) -> Result<Self, Self::Error> {
        if let Some(hold_ms) = raw.hold_ms {
            if !(1_000..=MAX_HOLD_MS).contains(&hold_ms) {
                return Err(format!("hold_ms must be 1000-{MAX_HOLD_MS}, not {hold_ms}"));
            }
        }
        Ok(Hold {
            after: raw.after,
            hold_ms: raw.hold_ms,
        })
    }
}

/// Where a streamed answer is: what it wrote last and what wakes it.
struct Follower {
    state: Shared,
    id: String,
    /// The newest report written (the cursor a resuming node asks with).
    after: u64,
    deadline: tokio::time::Instant,
    reported: tokio::sync::watch::Receiver<u64>,
    seen: u64,
    recheck: tokio::time::Interval,
    /// Turns true when the coordinator stops: the answer then closes early.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Saw the stop (and looked in storage once more since).
    stopped: bool,
    /// Written the closing line: the answer ends.
    done: bool,
    /// Held while the answer is open ([`crate::state::MAX_REPORT_STREAMS`]).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follower {
    /// The next line to write: a page of the reports stored above the cursor as soon as there
    /// are any, the closing line (no reports) at the deadline or once the coordinator stops
    /// (after a last page of what was stored by then), nothing after it or when storage
    /// failed (the node sees a cut answer and resumes from its cursor).
    async fn next_line(&mut self) -> Option<Line> {
        if self.done {
            return None;
        }
        loop {
            match reports_after(&self.state, &self.id, self.after).await {
                Ok(reports) if !reports.is_empty() => {
                    self.after = reports.last().map_or(self.after, |last| last.seq);
                    return Some(line(reports, self.after));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(stream = %self.id, %error, "streamed part reports cut");
                    return None;
                }
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => {
                        self.done = true;
                        return Some(line(Vec::new(), self.after));
                    }
                    () = until_stopping(&mut self.stopping) => {
                        if self.stopped {
                            self.done = true;
                            return Some(line(Vec::new(), self.after));
                        }
                        // What was stored before the stop goes out first.
                        self.stopped = true;
                        break;
                    }
                    changed = self.reported.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        // Reports of other streams wake every follower: storage is asked
                        // only when this stream got one.
                        let now = self.state.recent_parts.reports_of(&self.id);
                        if now != self.seen {
                            self.seen = now;
                            break;
                        }
                    }
                    _ = self.recheck.tick() => break,
                }
            }
        }
    }
}

/// One line of a streamed answer.
type Line = Result<String, std::convert::Infallible>;

/// A page of `reports` as one NDJSON line.
fn line(reports: Vec<NumberedPartReport>, next: u64) -> Line {
    // Serialising our own wire types cannot fail (string keys, no non-finite floats).
    let mut line = serde_json::to_string(&PartReportsPage { reports, next }).unwrap_or_default();
    line.push('\n');
    Ok(line)
}

/// The stream's signed part reports as they are stored, over one answer that stays open
/// `hold_ms` (default 30 s): what a node serving LL-HLS follows instead of a long poll per
/// report.
///
/// The answer is NDJSON (`application/x-ndjson`): one line per batch of reports, each line a
/// page as `GET /streams/{id}/part-reports` answers (reports numbered above the cursor, oldest
/// first, at most 64; `next` the newest written). The first line comes at once when reports
/// above `after` are held; each later one as soon as the origin's next report is stored (on
/// this replica at once, on another within half a second). At the hold's end a line with no
/// reports closes the answer, and so it does at once when the coordinator stops (after the
/// reports stored by then); an answer ending without it was cut, and the node asks again
/// with the last `next` it read, losing nothing. 503 `busy` when the coordinator has as many
/// such answers open as it takes (the node then uses the long poll).
#[utoipa::path(get, path = "/streams/{id}/part-reports/stream", tag = "streams",
    params(StreamPath, Hold),
    responses(
        (status = 200, description = "NDJSON: pages of reports as they are stored, then an \
         empty page", body = PartReportsPage, content_type = "application/x-ndjson"),
        (status = 400, description = "invalid_query: hold_ms out of range", body = ErrorSchema),
        (status = 404, description = "not_found: no such stream", body = ErrorSchema),
        (status = 503, description = "busy: too many streamed answers open", body = ErrorSchema),
    ))]
pub(crate) async fn stream_part_reports(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(hold): ApiQuery<Hold>,
) -> Result<Response, ApiError> {
    load_stream(&state, &id).await?;
    let permit = state
        .report_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Busy(format!(
                "{} streamed part-report answers are open; use GET /streams/{id}/part-reports",
                crate::state::MAX_REPORT_STREAMS
            ))
        })?;
    let after = hold.after;
    let hold = Duration::from_millis(u64::from(hold.hold_ms.unwrap_or(DEFAULT_HOLD_MS)));
    let now = tokio::time::Instant::now();
    // Subscribed before the first look, so a report stored in between wakes the answer.
    let reported = state.recent_parts.subscribe();
    let stopping = state.stopping.subscribe();
    let seen = state.recent_parts.reports_of(&id);
    let mut recheck = tokio::time::interval_at(now + STORAGE_RECHECK, STORAGE_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follower = Follower {
        state,
        id,
        after,
        deadline: now + hold,
        reported,
        seen,
        recheck,
        stopping,
        stopped: false,
        done: false,
        _permit: permit,
    };
    let lines = futures_util::stream::unfold(follower, |mut follower| async move {
        let line = follower.next_line().await?;
        Some((line, follower))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}
