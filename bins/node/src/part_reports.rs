//! The origin's signed part reports, fetched from the coordinator once per stream (one long
//! poll at a time, whatever the number of viewers) and served to this node's LL-HLS viewers
//! beside the playlist: `GET /{app}/{stream}/part-reports?after=&wait_ms=`, the same page as
//! the coordinator's `GET /streams/{id}/part-reports`.
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

/// Where the reports come from: the coordinator (a fake counts fetches in tests).
pub(crate) trait ReportSource: Send + Sync + 'static {
    /// The reports of `stream` numbered above `after`, waiting up to `wait` for one.
    fn fetch(
        &self,
        stream: &str,
        after: u64,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<PartReportsPage, String>> + Send>>;
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

    /// Fetches the reports of `stream` into `window` until no viewer asked for [`IDLE`].
    async fn follow(self: Arc<Self>, stream: String, window: Arc<Window>) {
        while !window.idle(self.idle) {
            let after = *window.newest.borrow();
            let fetched = tokio::select! {
                _ = self.stop.cancelled() => break,
                fetched = self.source.fetch(&stream, after, MAX_WAIT) => fetched,
            };
            match fetched {
                Ok(page) => window.add(page),
                Err(error) => {
                    debug!(%stream, %error, "part reports unavailable");
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
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
    /// above its cursor waits its whole wait, as the coordinator's long poll does.
    struct Counting {
        fetches: Arc<AtomicU64>,
        held: Arc<watch::Sender<u64>>,
    }

    fn numbered(seq: u64) -> NumberedPartReport {
        let origin = KeyPair::from_seed([7; 32]);
        let body = OriginPartReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").unwrap(),
            run: 1,
            parts: vec![],
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
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_viewers_of_a_stream_share_one_fetch_per_report() {
        let fetches = Arc::new(AtomicU64::default());
        let held = Arc::new(watch::Sender::new(0));
        let idle = Duration::from_millis(300);
        let mut relay = PartReportRelay::new(
            Arc::new(Counting {
                fetches: fetches.clone(),
                held: held.clone(),
            }),
            CancellationToken::new(),
        );
        Arc::get_mut(&mut relay).expect("not shared yet").idle = idle;
        const VIEWERS: usize = 20;
        const REPORTS: u64 = 30;
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
        // At most one long poll per report (plus the one waiting), not one per viewer.
        let fetched = fetches.load(Ordering::SeqCst);
        assert!(
            fetched <= REPORTS + 2,
            "{VIEWERS} viewers of {REPORTS} reports cost {fetched} coordinator fetches"
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
}
