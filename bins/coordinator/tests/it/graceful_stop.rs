//! The real coordinator stopped with SIGTERM while a node holds part-report requests open (a
//! streamed answer held a minute, a long poll): the process exits at once instead of waiting
//! out its 5 s shutdown grace, each request gets a clean end, and the report stored before the
//! stop is there after a restart. SQLite and PostgreSQL.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use streamr_coord::client::{CoordinatorClient, StreamedPage};
use streamr_core::{segment_hash, KeyPair, OriginPartReport, PartHash, Signed, StreamId};

async fn a_stop_ends_open_part_report_requests_at_once(database: &str) {
    let mut process = Process::start(database, free_port(), &[]).await;
    let base = format!("http://{}", process.addr);
    let admin = CoordinatorClient::new(&base)
        .expect("client")
        .with_admin_token(ADMIN);
    let public = CoordinatorClient::new(&base).expect("client");
    let created = admin.create_stream("show", "Show").await.expect("stream");
    let origin = KeyPair::from_seed([41; 32]);
    assert!(public
        .publish_check_as_origin("show", &created.stream_key, &origin)
        .await
        .expect("publish check"));

    // The node follows the stream's reports; the origin reports a part.
    let mut answer = public
        .part_report_stream("show", 0, Duration::from_secs(60))
        .await
        .expect("a streamed answer");
    let parts = vec![PartHash {
        msn: 1,
        index: 0,
        hash: segment_hash(b"part 1.0"),
        len: 8,
        cut_ms: now_ms(),
    }];
    let report = Signed::sign(
        OriginPartReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            run: 1,
            parts: parts.clone(),
            timestamp_ms: now_ms(),
        },
        &origin,
    );
    public.report_parts_signed(&report).await.expect("stored");
    let page = tokio::time::timeout(Duration::from_secs(5), answer.next_page())
        .await
        .expect("a page in time")
        .expect("a readable page");
    assert!(
        matches!(&page, StreamedPage::Page(page) if page.reports.len() == 1),
        "{page:?}"
    );
    // A long poll waits above it.
    let long_poll = {
        let public = public.clone();
        tokio::spawn(async move { public.part_reports("show", 1, Duration::from_secs(5)).await })
    };
    streamr_test_support::eventually("both requests waiting", || async {
        (process.metric("streamr_part_report_waiters").await >= 2).then_some(())
    })
    .await;

    let started = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&process.child),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let status = loop {
        if let Some(status) = process.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the coordinator did not exit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let exited_in = started.elapsed();
    assert!(status.success(), "{status}");
    // Well under the 5 s grace (bounded generously for a loaded machine).
    assert!(
        exited_in < Duration::from_secs(2),
        "exited after {exited_in:?}"
    );

    // Clean ends: the streamed answer's closing line, the long poll's empty page.
    let closed = tokio::time::timeout(Duration::from_secs(2), answer.next_page())
        .await
        .expect("ended in time")
        .expect("readable");
    assert_eq!(closed, StreamedPage::Closed);
    let page = tokio::time::timeout(Duration::from_secs(2), long_poll)
        .await
        .expect("answered in time")
        .expect("long poll task")
        .expect("a page");
    assert!(page.reports.is_empty(), "{page:?}");
    assert_eq!(page.next, 1);

    // The report stored before the stop is there after a restart.
    let restarted = Process::start(database, free_port(), &[]).await;
    let public = CoordinatorClient::new(&format!("http://{}", restarted.addr)).expect("client");
    let page = public
        .part_reports("show", 0, Duration::ZERO)
        .await
        .expect("a page");
    assert_eq!(page.reports.len(), 1, "{page:?}");
    assert_eq!(page.reports[0].report.body.parts, parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_stop_ends_open_part_report_requests_at_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}", dir.path().join("coordinator.db").display());
    a_stop_ends_open_part_report_requests_at_once(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs PostgreSQL (STREAMR_TEST_POSTGRES_URL)"]
async fn postgres_a_stop_ends_open_part_report_requests_at_once() {
    let database = PgDatabase::create().await;
    a_stop_ends_open_part_report_requests_at_once(&database.url).await;
}
