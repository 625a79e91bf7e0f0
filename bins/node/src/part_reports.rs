//! The origin's signed part reports, fetched from the coordinator once per stream (one
//! streamed answer at a time, whatever the number of viewers) and served to this node's LL-HLS
//! viewers beside the playlist: `GET /{app}/{stream}/part-reports?after=&wait_ms=`, the same
//! page as the coordinator's `GET /streams/{id}/part-reports`.
//!
//! The node follows a stream's reports with `GET /streams/{id}/part-reports/stream`: one
//! request held open [`HOLD`] that carries every report as the coordinator stores it, so a
//! stream costs the coordinator about two requests a minute instead of one per part. A cut
//! answer is asked again from the newest report held (nothing is lost); a coordinator without
//! that endpoint (older) or with too many open answers gets the one-shot long poll for
//! [`FALLBACK`]. The same window tells a relay the origin's numbering of a part (its place in
//! the reports), so learning it costs no request either.
//!
//! The node passes the reports on as the origin signed them: a viewer checks the signature
//! against the stream's origin key (learned from the coordinator) itself, so a node cannot
//! forge, alter or move one; what it could do (withhold or replay reports) makes the viewer
//! wait and then fall back to asking the coordinator, or refuse a stale report.
//!
//! Each stream's window is bounded ([`WINDOW`] reports); its fetch task ends once no viewer
//! asked for [`IDLE`] and at most [`MAX_STREAMS`] streams are followed at once.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use streamr_client::client::CoordinatorClient;
use streamr_client::wire::{NumberedPartReport, PartReportsPage};
use streamr_client::StreamedPage;
use streamr_core::ContentDigest;
use streamr_media::http::{OriginNumbering, OriginPartPlace};
use streamr_media::relay::{RelayHub, StreamKey};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Reports held per stream (about 45 s of a stream whose origin reports each part as it cuts
/// it); older ones are forgotten first.
pub(crate) const WINDOW: usize = 128;

/// Most reports one page gives a viewer (the newest above its cursor).
pub(crate) const PAGE: usize = 64;

/// A stream's fetch task ends when no viewer asked for its reports this long.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Most streams whose reports are followed at once.
pub(crate) const MAX_STREAMS: usize = 256;

/// Longest wait a viewer may ask for, and the coordinator's own longest.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// How long a failed fetch waits before the next.
const RETRY: Duration = Duration::from_secs(1);

/// How long one streamed answer is held open by the coordinator.
pub(crate) const HOLD: Duration = Duration::from_secs(30);

/// How long a node uses the long poll after the coordinator refused a streamed answer.
pub(crate) const FALLBACK: Duration = Duration::from_secs(60);

/// How a streamed fetch ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Followed {
    /// At the end of its hold: ask again at once.
    Closed,
    /// Cut before its end (the pages read were kept): ask again.
    Cut,
    /// The coordinator refused it (no such endpoint, busy, no such stream).
    Refused(String),
    /// The request failed before an answer.
    Failed(String),
}

/// What a stream's fetch task does after one fetch.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Fetch again at once.
    AtOnce,
    /// Wait this long, then fetch again.
    After(Duration),
    /// The coordinator refused a streamed answer: long polls for [`FALLBACK`].
    LongPolls,
}

/// Where each page of a streamed fetch goes.
pub(crate) type Sink<'a> = &'a (dyn Fn(PartReportsPage) + Send + Sync);

/// Where the reports come from: the coordinator (a fake counts fetches in tests).
pub(crate) trait ReportSource: Send + Sync + 'static {
    /// The reports of `stream` numbered above `after`, waiting up to `wait` for one.
    fn fetch(
        &self,
        stream: &str,
        after: u64,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<PartReportsPage, String>> + Send>>;

    /// Passes the reports of `stream` numbered above `after` to `sink` as they are stored,
    /// over one answer held up to `hold`.
    fn follow<'a>(
        &'a self,
        stream: &'a str,
        after: u64,
        hold: Duration,
        sink: Sink<'a>,
    ) -> Pin<Box<dyn Future<Output = Followed> + Send + 'a>>;
}

impl ReportSource for CoordinatorClient {
    fn fetch(
        &self,
        stream: &str,
        after: u64,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<PartReportsPage, String>> + Send>> {
        let client = self.clone();
        let stream = stream.to_owned();
        Box::pin(async move {
            client
                .part_reports(&stream, after, wait)
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn follow<'a>(
        &'a self,
        stream: &'a str,
        after: u64,
        hold: Duration,
        sink: Sink<'a>,
    ) -> Pin<Box<dyn Future<Output = Followed> + Send + 'a>> {
        Box::pin(async move {
            let mut answer = match self.part_report_stream(stream, after, hold).await {
                Ok(answer) => answer,
                Err(error) if error.status().is_some() => {
                    return Followed::Refused(error.to_string())
                }
                Err(error) => return Followed::Failed(error.to_string()),
            };
            loop {
                match answer.next_page().await {
                    Ok(StreamedPage::Page(page)) => sink(page),
                    Ok(StreamedPage::Closed) => return Followed::Closed,
                    Ok(StreamedPage::Cut) => return Followed::Cut,
                    Err(error) => {
                        debug!(%stream, %error, "streamed part reports unreadable");
                        return Followed::Cut;
                    }
                }
            }
        })
    }
}

/// One stream's window of reports.
struct Window {
    reports: Mutex<VecDeque<NumberedPartReport>>,
    /// The newest report's number (0: none yet).
    newest: watch::Sender<u64>,
    /// When a viewer last asked.
    asked: Mutex<Instant>,
}

impl Window {
    fn new() -> Self {
        Window {
            reports: Mutex::default(),
            newest: watch::Sender::new(0),
            asked: Mutex::new(Instant::now()),
        }
    }

    /// Adds fetched reports (numbered above the newest held), forgetting the oldest beyond
    /// [`WINDOW`]. A page numbered below what is held means the coordinator started the
    /// stream's numbering over: the window starts over too.
    fn add(&self, page: PartReportsPage) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = *self.newest.borrow();
        if page.next < newest {
            reports.clear();
        }
        let floor = if page.next < newest { 0 } else { newest };
        for report in page.reports {
            if report.seq > floor && reports.back().is_none_or(|last| report.seq > last.seq) {
                reports.push_back(report);
            }
        }
        while reports.len() > WINDOW {
            reports.pop_front();
        }
        let now = reports.back().map_or(0, |last| last.seq);
        drop(reports);
        self.newest.send_replace(now);
    }

    /// The held reports above `after`, at most [`PAGE`] of the newest.
    fn after(&self, after: u64) -> PartReportsPage {
        let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        let above: Vec<NumberedPartReport> = reports
            .iter()
            .filter(|report| report.seq > after)
            .cloned()
            .collect();
        let skip = above.len().saturating_sub(PAGE);
        let reports: Vec<NumberedPartReport> = above.into_iter().skip(skip).collect();
        let next = reports.last().map_or(after, |last| last.seq);
        PartReportsPage { reports, next }
    }

    /// The origin's place of the part whose bytes hash to `hash`, when a held report has it.
    fn place(&self, hash: &ContentDigest) -> Option<OriginPartPlace> {
        let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        reports.iter().rev().find_map(|report| {
            report
                .report
                .body
                .parts
                .iter()
                .find(|part| part.hash == *hash)
                .map(|part| OriginPartPlace {
                    msn: part.msn,
                    index: part.index,
                    run: Some(report.report.body.run),
                })
        })
    }

    /// The origin's run in the newest report held.
    fn newest_run(&self) -> Option<u64> {
        let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        reports.back().map(|report| report.report.body.run)
    }

    fn touch(&self) {
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle(&self, after: Duration) -> bool {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            >= after
    }
}

/// The reports of every stream this node's viewers ask about, one fetch task per stream.
pub(crate) struct PartReportRelay {
    source: Arc<dyn ReportSource>,
    /// [`IDLE`], shorter in tests.
    idle: Duration,
    /// [`HOLD`], shorter in tests.
    hold: Duration,
    streams: Mutex<HashMap<String, Arc<Window>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for PartReportRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartReportRelay").finish_non_exhaustive()
    }
}

/// Why a viewer's request got no reports.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unserved {
    /// The node follows [`MAX_STREAMS`] streams already.
    Busy,
}

impl PartReportRelay {
    /// A relay fetching from `source` until `stop`.
    pub(crate) fn new(source: Arc<dyn ReportSource>, stop: CancellationToken) -> Arc<Self> {
        Arc::new(PartReportRelay {
            source,
            idle: IDLE,
            hold: HOLD,
            streams: Mutex::default(),
            stop,
        })
    }

    /// The window of `stream`, its fetch task started when there is none.
    fn window(self: &Arc<Self>, stream: &str) -> Result<Arc<Window>, Unserved> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = streams.get(stream) {
            window.touch();
            return Ok(window.clone());
        }
        if streams.len() >= MAX_STREAMS {
            return Err(Unserved::Busy);
        }
        let window = Arc::new(Window::new());
        streams.insert(stream.to_owned(), window.clone());
        tokio::spawn(self.clone().follow(stream.to_owned(), window.clone()));
        Ok(window)
    }

    /// Fetches the reports of `stream` into `window` until no viewer asked for [`IDLE`]:
    /// streamed answers one after the other, long polls for [`FALLBACK`] after the coordinator
    /// refused one.
    async fn follow(self: Arc<Self>, stream: String, window: Arc<Window>) {
        let mut long_poll_until: Option<Instant> = None;
        while !window.idle(self.idle) {
            let after = *window.newest.borrow();
            let streamed = long_poll_until.is_none_or(|until| Instant::now() >= until);
            if streamed {
                long_poll_until = None;
            }
            let fetch = async {
                if streamed {
                    self.fetch_streamed(&stream, &window, after).await
                } else {
                    self.fetch_long_poll(&stream, &window, after).await
                }
            };
            let next = tokio::select! {
                _ = self.stop.cancelled() => break,
                next = fetch => next,
            };
            let pause = match next {
                Next::AtOnce => None,
                Next::After(pause) => Some(pause),
                Next::LongPolls => {
                    long_poll_until = Some(Instant::now() + FALLBACK);
                    None
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if streams
            .get(&stream)
            .is_some_and(|held| Arc::ptr_eq(held, &window))
        {
            streams.remove(&stream);
        }
    }

    /// One streamed answer of the reports of `stream` above `after`, its pages added to
    /// `window` as they come.
    async fn fetch_streamed(&self, stream: &str, window: &Window, after: u64) -> Next {
        let started = Instant::now();
        let sink = |page: PartReportsPage| window.add(page);
        match self.source.follow(stream, after, self.hold, &sink).await {
            Followed::Closed => Next::AtOnce,
            // A cut answer that brought reports or lasted: ask again at once; one cut at once
            // without any: not a busy loop.
            Followed::Cut => {
                let progressed = *window.newest.borrow() != after;
                if !progressed && started.elapsed() < RETRY {
                    Next::After(RETRY)
                } else {
                    Next::AtOnce
                }
            }
            Followed::Refused(error) => {
                debug!(%stream, %error, "streamed part reports refused: long polls");
                Next::LongPolls
            }
            Followed::Failed(error) => {
                debug!(%stream, %error, "part reports unavailable");
                Next::After(RETRY)
            }
        }
    }

    /// One long poll of the reports of `stream` above `after`, added to `window`.
    async fn fetch_long_poll(&self, stream: &str, window: &Window, after: u64) -> Next {
        match self.source.fetch(stream, after, MAX_WAIT).await {
            Ok(page) => {
                window.add(page);
                Next::AtOnce
            }
            Err(error) => {
                debug!(%stream, %error, "part reports unavailable");
                Next::After(RETRY)
            }
        }
    }

    /// The origin's place of the part of `stream` whose bytes hash to `hash`, from the
    /// followed reports (following them from now on), waiting up to `wait` for its report;
    /// `None` when it did not come, or when this node follows too many streams.
    pub(crate) async fn place(
        self: &Arc<Self>,
        stream: &str,
        hash: &ContentDigest,
        wait: Duration,
    ) -> Option<OriginPartPlace> {
        let window = self.window(stream).ok()?;
        let mut newest = window.newest.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            newest.borrow_and_update();
            if let Some(place) = window.place(hash) {
                return Some(place);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.stop.cancelled() => return None,
                changed = newest.changed() => if changed.is_err() { return None },
            }
        }
    }

    /// The origin's run in the newest report of `stream` held, following its reports from now
    /// on (so a relay that learned the origin's numbers sees a new run); `None` before one came
    /// or when this node follows too many streams.
    pub(crate) fn newest_run(self: &Arc<Self>, stream: &str) -> Option<u64> {
        self.window(stream).ok()?.newest_run()
    }

    /// Whether any report of `stream` is held.
    fn holds_reports(&self, stream: &str) -> bool {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .is_some_and(|window| *window.newest.borrow() > 0)
    }

    /// The reports of `stream` above `after`; with none held yet, waits up to `wait` for the
    /// fetch task to bring one.
    pub(crate) async fn page(
        self: &Arc<Self>,
        stream: &str,
        after: u64,
        wait: Duration,
    ) -> Result<PartReportsPage, Unserved> {
        let window = self.window(stream)?;
        let mut newest = window.newest.subscribe();
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            if *newest.borrow_and_update() > after {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = self.stop.cancelled() => break,
                changed = newest.changed() => if changed.is_err() { break },
            }
        }
        window.touch();
        Ok(window.after(after))
    }
}

/// A relay's numbering from the reports this node follows anyway (see
/// [`PartReportRelay::place`]); asked at the coordinator only when no report of the stream
/// came at all (a coordinator that does not serve them).
#[derive(Debug, Clone)]
pub(crate) struct ReportNumbering {
    pub(crate) relay: Arc<PartReportRelay>,
    pub(crate) fallback: Arc<dyn OriginNumbering>,
}

impl OriginNumbering for ReportNumbering {
    fn origin_place(
        &self,
        key: &StreamKey,
        part_hash: [u8; 32],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<OriginPartPlace>> + Send + 'static>> {
        let relay = self.relay.clone();
        let fallback = self.fallback.clone();
        let key = key.clone();
        Box::pin(async move {
            let stream = key.name.as_str();
            let hash = ContentDigest::from_bytes(part_hash);
            if let Some(place) = relay.place(stream, &hash, wait).await {
                return Some(place);
            }
            if relay.holds_reports(stream) {
                return None;
            }
            fallback.origin_place(&key, part_hash, Duration::ZERO).await
        })
    }

    fn origin_run(&self, key: &StreamKey) -> Option<u64> {
        self.relay.newest_run(key.name.as_str())
    }
}

/// What the part-report route needs.
#[derive(Clone, Debug)]
pub(crate) struct ReportRoute {
    pub(crate) relay: Arc<PartReportRelay>,
    pub(crate) hub: RelayHub,
}

/// `?after=&wait_ms=` of a viewer's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cursor {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    /// The grant a player appends to every URL it was given (not needed here).
    #[serde(default)]
    #[allow(dead_code)]
    grant: Option<String>,
}

/// Headers of every answer: never cached, readable by a page of any origin (a simple GET, no
/// preflight), as the media routes are.
const HEADERS: [(header::HeaderName, HeaderValue); 2] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    (
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    ),
];

fn json_error(status: StatusCode, error: &str, message: String) -> Response {
    (
        status,
        HEADERS,
        Json(serde_json::json!({ "error": error, "message": message })),
    )
        .into_response()
}

/// `GET /{app}/{stream}/part-reports?after=&wait_ms=`: the origin's signed part reports of a
/// stream this node carries, numbered above `after` (a long poll of up to 5 s when there is
/// none yet). 404 `stream_not_here` for a stream not here (yet), 400 for a bad name or query,
/// 503 when the node follows too many streams.
pub(crate) async fn serve(
    State(route): State<ReportRoute>,
    Path((app, stream)): Path<(String, String)>,
    query: Result<Query<Cursor>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(cursor) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                rejection.body_text(),
            )
        }
    };
    let key = match StreamKey::parse(&app, &stream) {
        Ok(key) => key,
        Err(error) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_name", error.to_string())
        }
    };
    if !route.hub.is_publishing(&key) {
        // A relay starts pulling when a viewer asks for a playlist: the viewer asks again.
        return json_error(
            StatusCode::NOT_FOUND,
            "stream_not_here",
            format!("stream {app}/{stream} is not here (yet)"),
        );
    }
    let wait = Duration::from_millis(cursor.wait_ms);
    match route
        .relay
        .page(key.name.as_str(), cursor.after, wait)
        .await
    {
        Ok(page) => (HEADERS, Json(page)).into_response(),
        Err(Unserved::Busy) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("this node follows {MAX_STREAMS} streams' part reports already"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use streamr_core::{KeyPair, OriginPartReport, Signed, StreamId};

    use super::*;

    /// A coordinator holding reports 1..=`held`, counting fetches; a fetch finding nothing
    /// above its cursor waits its whole wait, as the coordinator's long poll does. It streams
    /// reports (cutting each answer after `cut_after` pages when set) or, like an older
    /// coordinator, refuses to.
    struct Counting {
        fetches: Arc<AtomicU64>,
        follows: Arc<AtomicU64>,
        held: Arc<watch::Sender<u64>>,
        streams: bool,
        cut_after: Option<usize>,
    }

    impl Counting {
        fn new(streams: bool, cut_after: Option<usize>) -> Self {
            Counting {
                fetches: Arc::default(),
                follows: Arc::default(),
                held: Arc::new(watch::Sender::new(0)),
                streams,
                cut_after,
            }
        }
    }

    /// What a test keeps of a source it hands to a relay.
    struct Handles {
        fetches: Arc<AtomicU64>,
        follows: Arc<AtomicU64>,
        held: Arc<watch::Sender<u64>>,
    }

    impl Counting {
        fn handles(&self) -> Handles {
            Handles {
                fetches: self.fetches.clone(),
                follows: self.follows.clone(),
                held: self.held.clone(),
            }
        }
    }

    fn numbered(seq: u64) -> NumberedPartReport {
        numbered_in(seq, 1)
    }

    /// Report `seq` of the origin's run `run`, of one part at msn `seq`, index 1.
    fn numbered_in(seq: u64, run: u64) -> NumberedPartReport {
        let origin = KeyPair::from_seed([7; 32]);
        let body = OriginPartReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").unwrap(),
            run,
            parts: vec![streamr_core::PartHash {
                msn: seq,
                index: 1,
                hash: ContentDigest::from_bytes([u8::try_from(seq % 256).unwrap(); 32]),
                len: 100,
                cut_ms: seq,
            }],
            timestamp_ms: seq,
        };
        NumberedPartReport {
            seq,
            report: Signed::sign(body, &origin),
        }
    }

    impl ReportSource for Counting {
        fn fetch(
            &self,
            _stream: &str,
            after: u64,
            wait: Duration,
        ) -> Pin<Box<dyn Future<Output = Result<PartReportsPage, String>> + Send>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.subscribe();
            Box::pin(async move {
                let _ = tokio::time::timeout(wait, held.wait_for(|held| *held > after)).await;
                let newest = *held.borrow();
                let reports: Vec<_> = (after + 1..=newest).map(numbered).collect();
                Ok(PartReportsPage {
                    next: newest.max(after),
                    reports,
                })
            })
        }

        fn follow<'a>(
            &'a self,
            _stream: &'a str,
            mut after: u64,
            hold: Duration,
            sink: Sink<'a>,
        ) -> Pin<Box<dyn Future<Output = Followed> + Send + 'a>> {
            self.follows.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.subscribe();
            Box::pin(async move {
                if !self.streams {
                    return Followed::Refused("HTTP 404".into());
                }
                let deadline = Instant::now() + hold;
                let mut pages = 0;
                loop {
                    let newer =
                        tokio::time::timeout_at(deadline, held.wait_for(|held| *held > after));
                    if newer.await.is_err() {
                        return Followed::Closed;
                    }
                    let newest = *held.borrow();
                    sink(PartReportsPage {
                        reports: (after + 1..=newest).map(numbered).collect(),
                        next: newest,
                    });
                    after = newest;
                    pages += 1;
                    if self.cut_after.is_some_and(|cut| pages >= cut) {
                        return Followed::Cut;
                    }
                }
            })
        }
    }

    /// Viewers of one stream reading its reports through `relay` while `REPORTS` are stored
    /// one by one: each viewer sees every report, in order.
    async fn viewers_read_every_report(relay: &Arc<PartReportRelay>, held: &watch::Sender<u64>) {
        const VIEWERS: usize = 20;
        let mut viewers = vec![];
        for _ in 0..VIEWERS {
            let relay = relay.clone();
            viewers.push(tokio::spawn(async move {
                let mut after = 0;
                let mut seen = vec![];
                while after < REPORTS {
                    let page = relay.page("show", after, MAX_WAIT).await.unwrap();
                    seen.extend(page.reports.iter().map(|r| r.seq));
                    after = page.next;
                }
                seen
            }));
        }
        for seq in 1..=REPORTS {
            tokio::time::sleep(Duration::from_millis(20)).await;
            held.send_replace(seq);
        }
        for viewer in viewers {
            let seen = tokio::time::timeout(Duration::from_secs(10), viewer)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                seen,
                (1..=REPORTS).collect::<Vec<_>>(),
                "every report, in order"
            );
        }
    }

    const REPORTS: u64 = 30;

    fn relay_of(source: Counting, idle: Duration, hold: Duration) -> Arc<PartReportRelay> {
        let mut relay = PartReportRelay::new(Arc::new(source), CancellationToken::new());
        let inner = Arc::get_mut(&mut relay).expect("not shared yet");
        inner.idle = idle;
        inner.hold = hold;
        relay
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_s_reports_come_over_one_streamed_answer() {
        let source = Counting::new(true, None);
        let Handles {
            fetches,
            follows,
            held,
        } = source.handles();
        let relay = relay_of(source, Duration::from_secs(30), Duration::from_secs(30));
        viewers_read_every_report(&relay, &held).await;
        assert_eq!(follows.load(Ordering::SeqCst), 1, "one streamed answer");
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "no long poll");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_answer_is_resumed_without_losing_a_report() {
        // Every answer is cut after two pages: the node asks again from the newest report it
        // holds, and the viewers still read every report.
        let source = Counting::new(true, Some(2));
        let Handles {
            fetches,
            follows,
            held,
        } = source.handles();
        let relay = relay_of(source, Duration::from_secs(30), Duration::from_secs(30));
        viewers_read_every_report(&relay, &held).await;
        let follows = follows.load(Ordering::SeqCst);
        assert!(
            (2..=REPORTS / 2 + 1).contains(&follows),
            "{follows} answers for {REPORTS} reports cut every two pages"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "no long poll");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relay_learns_the_origin_s_numbering_from_the_reports() {
        let source = Counting::new(true, None);
        let Handles { fetches, held, .. } = source.handles();
        let relay = relay_of(source, Duration::from_secs(30), Duration::from_secs(30));
        let hash = ContentDigest::from_bytes([3; 32]);
        let asking = {
            let relay = relay.clone();
            tokio::spawn(async move { relay.place("show", &hash, MAX_WAIT).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.send_replace(3);
        let place = asking.await.unwrap().expect("found in the reports");
        assert_eq!((place.msn, place.index), (3, 1));
        // A part not reported: not found once the wait is over.
        let other = ContentDigest::from_bytes([99; 32]);
        assert!(relay
            .place("show", &other, Duration::from_millis(50))
            .await
            .is_none());
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "no coordinator lookup");
    }

    #[test]
    fn a_window_tells_the_run_of_a_place_and_of_its_newest_report() {
        let window = Window::new();
        assert_eq!(window.newest_run(), None);
        window.add(PartReportsPage {
            reports: vec![numbered_in(1, 7), numbered_in(2, 7)],
            next: 2,
        });
        assert_eq!(window.newest_run(), Some(7));
        // The origin restarted: its next reports are of another run.
        window.add(PartReportsPage {
            reports: vec![numbered_in(3, 9)],
            next: 3,
        });
        assert_eq!(window.newest_run(), Some(9));
        let place = |seq: u8| window.place(&ContentDigest::from_bytes([seq; 32]));
        assert_eq!(
            place(2),
            Some(OriginPartPlace {
                msn: 2,
                index: 1,
                run: Some(7)
            })
        );
        assert_eq!(place(3).and_then(|place| place.run), Some(9));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_coordinator_gets_one_long_poll_per_report() {
        // The coordinator has no streamed answer: the node long-polls, still one fetch per
        // report for all its viewers, and asks for a streamed answer again after FALLBACK.
        let source = Counting::new(false, None);
        let Handles {
            fetches,
            follows,
            held,
        } = source.handles();
        let idle = Duration::from_millis(300);
        let relay = relay_of(source, idle, Duration::from_secs(30));
        viewers_read_every_report(&relay, &held).await;
        assert_eq!(follows.load(Ordering::SeqCst), 1, "refused once");
        // At most one long poll per report (plus the one waiting), not one per viewer.
        let fetched = fetches.load(Ordering::SeqCst);
        assert!(
            fetched <= REPORTS + 2,
            "20 viewers of {REPORTS} reports cost {fetched} coordinator fetches"
        );
        // Nobody asks any more: the fetch task ends (after its pending long poll) and the
        // stream is forgotten.
        let deadline = Instant::now() + MAX_WAIT * 3;
        while !relay.streams.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the idle stream is still followed"
            );
            let next = *held.borrow() + 1;
            held.send_replace(next);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after_idle = fetches.load(Ordering::SeqCst);
        let next = *held.borrow() + 1;
        held.send_replace(next);
        tokio::time::sleep(idle * 2).await;
        assert_eq!(fetches.load(Ordering::SeqCst), after_idle);
    }

    #[test]
    fn the_window_is_bounded_and_starts_over_with_the_numbering() {
        let window = Window::new();
        window.add(PartReportsPage {
            reports: (1..=200).map(numbered).collect(),
            next: 200,
        });
        let page = window.after(0);
        assert_eq!(page.reports.len(), PAGE);
        assert_eq!(page.next, 200);
        assert_eq!(
            page.reports.first().map(|r| r.seq),
            Some(200 - PAGE as u64 + 1)
        );
        assert_eq!(window.reports.lock().unwrap().len(), WINDOW);
        assert_eq!(window.after(200).reports.len(), 0);
        assert_eq!(window.after(200).next, 200);
        // The coordinator's numbering started over (the stream ended and came back).
        window.add(PartReportsPage {
            reports: vec![numbered(1), numbered(2)],
            next: 2,
        });
        assert_eq!(*window.newest.borrow(), 2);
        assert_eq!(window.after(0).reports.len(), 2);
    }

    /// Made-up stream names a hostile viewer could ask for: distinct, valid names.
    fn made_up_names(count: usize) -> impl Iterator<Item = String> {
        (0..count).map(|n| format!("made-up-{n}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_made_up_names_follow_at_most_the_cap_of_streams() {
        // Asked for 10 000 streams, the relay follows MAX_STREAMS of them and answers the
        // rest "busy" at once: no fetch task, no window, no wait for them.
        const ASKED: usize = 10_000;
        let source = Counting::new(true, None);
        let Handles { follows, .. } = source.handles();
        let relay = relay_of(source, Duration::from_secs(2), Duration::from_millis(100));
        let started = Instant::now();
        let mut served = 0;
        for name in made_up_names(ASKED) {
            match relay.page(&name, 0, Duration::ZERO).await {
                Ok(page) => {
                    assert!(page.reports.is_empty(), "{name} has no reports");
                    served += 1;
                }
                Err(Unserved::Busy) => {}
            }
            assert!(relay.streams.lock().unwrap().len() <= MAX_STREAMS);
        }
        assert_eq!(
            served, MAX_STREAMS,
            "the first {MAX_STREAMS} names are served"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the refused names were not waited for: {:?}",
            started.elapsed()
        );
        // One fetch task per followed stream, none for the refused ones.
        let deadline = Instant::now() + Duration::from_secs(5);
        while follows.load(Ordering::SeqCst) < MAX_STREAMS as u64 {
            assert!(Instant::now() < deadline, "the fetch tasks did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(relay.streams.lock().unwrap().len(), MAX_STREAMS);
        // Nobody asks for them again: they are forgotten, and a real stream is followed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !relay.streams.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the made-up streams are still followed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(relay.page("show", 0, Duration::ZERO).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn names_from_viewers_are_checked_before_any_report_is_followed() {
        // The route answers a bad name 400 and a valid name of a stream not here 404, both
        // without following anything at the coordinator.
        let source = Counting::new(true, None);
        let Handles {
            fetches, follows, ..
        } = source.handles();
        let relay = relay_of(source, Duration::from_secs(30), Duration::from_secs(30));
        let route = ReportRoute {
            relay: relay.clone(),
            hub: RelayHub::new(streamr_media::relay::RelayConfig::default()),
        };
        let ask = |stream: String| {
            let route = route.clone();
            async move {
                let cursor = Cursor {
                    after: 0,
                    wait_ms: 5_000,
                    grant: None,
                };
                serve(
                    State(route),
                    Path(("live".to_owned(), stream)),
                    Ok(Query(cursor)),
                )
                .await
                .status()
            }
        };
        let hostile = [
            "..".to_owned(),
            "../../etc/passwd".to_owned(),
            ".hidden".to_owned(),
            "a/b".to_owned(),
            "nul\0byte".to_owned(),
            "é".to_owned(),
            String::new(),
            "x".repeat(streamr_media::name::MAX_NAME_LEN + 1),
        ];
        for name in hostile {
            assert_eq!(ask(name.clone()).await, StatusCode::BAD_REQUEST, "{name:?}");
        }
        let started = Instant::now();
        for name in made_up_names(10_000) {
            assert_eq!(ask(name.clone()).await, StatusCode::NOT_FOUND, "{name}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a stream not here is not waited for: {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(relay.streams.lock().unwrap().is_empty(), "nothing followed");
        assert_eq!(follows.load(Ordering::SeqCst), 0);
        assert_eq!(fetches.load(Ordering::SeqCst), 0);
    }
}
