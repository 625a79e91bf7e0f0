//! LL-HLS part reports (SQLite and PostgreSQL): the stream's origin reports part hashes as it
//! cuts them, viewers look a part up by hash (waiting briefly for a report not there yet), and
//! every report that is not the origin's, not well formed or in conflict with a stored one is
//! refused with a JSON error and stores nothing.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::client::{CoordinatorClient, PartReportStream, StreamedPage};
use streamr_coord::storage::{PartRecord, PartsStored};
use streamr_coord::Coordinator;
use streamr_core::{
    segment_hash, KeyPair, OriginPartReport, PartHash, Signed, StreamId, MAX_PARTS_PER_REPORT,
    MAX_PART_LEN,
};

on_both_backends!(
    multi_thread;
    origin_parts_are_stored_and_found_by_hash,
    a_viewer_waiting_for_a_part_is_answered_when_it_is_reported,
    part_reports_that_are_not_the_origins_or_malformed_are_refused,
    a_conflicting_part_report_stores_nothing,
    parts_older_than_the_retention_are_forgotten,
    the_parts_of_an_ended_stream_are_forgotten_when_it_ends,
    signed_part_reports_are_served_after_a_cursor_by_long_poll,
    part_reports_are_streamed_over_one_answer_and_resumed_after_a_cut,
    a_stop_ends_waiting_requests_at_once_and_keeps_what_was_stored
);

fn part(msn: u64, index: u32) -> PartHash {
    let bytes = format!("fmp4 part {msn}.{index}");
    PartHash {
        msn,
        index,
        hash: segment_hash(bytes.as_bytes()),
        len: bytes.len() as u64,
        cut_ms: now_ms() as u64,
    }
}

fn report(node: &KeyPair, stream: &str, run: u64, parts: Vec<PartHash>) -> Value {
    json!(signed_report(node, stream, run, parts))
}

/// `node`'s signed report of `parts` of `stream` in run `run`, stamped now.
fn signed_report(
    node: &KeyPair,
    stream: &str,
    run: u64,
    parts: Vec<PartHash>,
) -> Signed<OriginPartReport> {
    Signed::sign(
        OriginPartReport {
            node_id: node.node_id(),
            stream_id: StreamId::new(stream).expect("stream id"),
            run,
            parts,
            timestamp_ms: now_ms() as u64,
        },
        node,
    )
}

/// A coordinator with stream `show` bound to `origin`, driven in-process.
async fn setup(db: &TestDb, origin: &KeyPair) -> Client {
    let storage = streamr_coord::connect(db.url()).await.expect("storage");
    let client = Client::new(Coordinator::new(test_config(), storage));
    let (status, _) = client
        .post_admin("/streams", &json!({"id": "show", "title": "Show"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = client
        .post_admin(
            "/streams/show/origin",
            &json!({"origin_node": origin.node_id().to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    client
}

fn lookup(hash: &impl std::fmt::Display, wait_ms: u32) -> String {
    format!("/streams/show/parts/{hash}?wait_ms={wait_ms}")
}

async fn origin_parts_are_stored_and_found_by_hash(db: &TestDb) {
    let origin = KeyPair::from_seed([31; 32]);
    let client = setup(db, &origin).await;
    let parts = vec![part(7, 0), part(7, 1), part(7, 2)];
    let (status, body) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 5, parts.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"parts": 3, "created": 3}));
    // The same parts again: stored already.
    let (status, body) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 5, parts[1..].to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], 0);
    for wanted in &parts {
        let (status, body) = client.get(&lookup(&wanted.hash, 0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["msn"], 7);
        assert_eq!(body["index"], wanted.index);
        assert_eq!(body["hash"], wanted.hash.to_string());
        assert_eq!(body["len"], wanted.len);
        assert_eq!(body["cut_ms"], wanted.cut_ms);
        assert_eq!(body["run"], "0000000000000005");
    }
    // Found after a restart too (not only in the process's memory).
    let storage = streamr_coord::connect(db.url()).await.expect("storage");
    let restarted = Client::new(Coordinator::new(test_config(), storage));
    let (status, body) = restarted.get(&lookup(&parts[2].hash, 0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["index"], 2);
    // A part never reported.
    let (status, body) = client.get(&lookup(&part(8, 0).hash, 0)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
}

async fn a_viewer_waiting_for_a_part_is_answered_when_it_is_reported(db: &TestDb) {
    let origin = KeyPair::from_seed([32; 32]);
    let client = setup(db, &origin).await;
    let next = part(9, 0);
    let path = lookup(&next.hash, 5_000);
    let started = Instant::now();
    let (waited, reported) = tokio::join!(client.get(&path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reported_at = Instant::now();
        let answer = client
            .post(
                "/streams/show/parts",
                &report(&origin, "show", 1, vec![next]),
            )
            .await;
        (answer, reported_at)
    });
    let answered = started.elapsed();
    let ((status, _), reported_at) = reported;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(waited.0, StatusCode::OK, "{}", waited.1);
    assert_eq!(waited.1["hash"], next.hash.to_string());
    assert!(
        answered < Duration::from_millis(4_000),
        "answered after {answered:?}, not when the part was reported"
    );
    println!(
        "waiting lookup answered {:?} after the report was sent",
        answered.saturating_sub(reported_at - started)
    );
    // A part never reported is answered 404 once the wait is over.
    let started = Instant::now();
    let (status, body) = client.get(&lookup(&part(9, 1).hash, 200)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

async fn part_reports_that_are_not_the_origins_or_malformed_are_refused(db: &TestDb) {
    let origin = KeyPair::from_seed([33; 32]);
    let client = setup(db, &origin).await;
    let refused = |status: StatusCode, body: &Value, code: &str, what: &str| {
        assert_eq!(body["error"], code, "{what}: {status} {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    };
    let mut cases: Vec<(&str, Value, StatusCode, &str)> = Vec::new();
    let stranger = KeyPair::from_seed([34; 32]);
    cases.push((
        "another node",
        report(&stranger, "show", 1, vec![part(1, 0)]),
        StatusCode::FORBIDDEN,
        "not_origin",
    ));
    let mut forged = report(&origin, "show", 1, vec![part(1, 0)]);
    forged["body"]["parts"][0]["msn"] = json!(2);
    cases.push((
        "altered after signing",
        forged,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    ));
    let stale = json!(Signed::sign(
        OriginPartReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            run: 1,
            parts: vec![part(1, 0)],
            timestamp_ms: now_ms() as u64 - 3_600_000,
        },
        &origin,
    ));
    cases.push(("an hour old", stale, StatusCode::UNAUTHORIZED, "clock_skew"));
    cases.push((
        "no parts",
        report(&origin, "show", 1, Vec::new()),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    ));
    let too_many = (0..=MAX_PARTS_PER_REPORT as u32)
        .map(|i| part(1, i))
        .collect();
    cases.push((
        "too many parts",
        report(&origin, "show", 1, too_many),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    ));
    let mut huge = part(1, 0);
    huge.len = MAX_PART_LEN + 1;
    cases.push((
        "a part too large",
        report(&origin, "show", 1, vec![huge]),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    ));
    let mut far = part(1, 0);
    far.msn = u64::MAX;
    cases.push((
        "msn out of range",
        report(&origin, "show", 1, vec![far]),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    ));
    cases.push((
        "not JSON of a report",
        json!({"body": {"parts": []}, "signature": "00"}),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    ));
    for (what, body, status, code) in &cases {
        let (got, answer) = client.post("/streams/show/parts", body).await;
        assert_eq!(got, *status, "{what}: {answer}");
        refused(got, &answer, code, what);
    }
    // Signed for another stream, sent to this one.
    let (status, _) = client
        .post_admin("/streams", &json!({"id": "other", "title": "Other"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (got, answer) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "other", 1, vec![part(1, 0)]),
        )
        .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{answer}");
    refused(got, &answer, "not_origin", "another stream's report");
    // A stream with no origin bound takes no part reports; an unknown stream is 404.
    let (got, answer) = client
        .post(
            "/streams/other/parts",
            &report(&origin, "other", 1, vec![part(1, 0)]),
        )
        .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{answer}");
    refused(got, &answer, "not_origin", "no origin bound");
    let (got, answer) = client
        .post(
            "/streams/gone/parts",
            &report(&origin, "gone", 1, vec![part(1, 0)]),
        )
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND, "{answer}");
    refused(got, &answer, "not_found", "unknown stream");
    // Lookups out of bounds.
    for (path, code) in [
        (lookup(&part(1, 0).hash, 5_001), "invalid_query"),
        (
            "/streams/show/parts/xyz?wait_ms=0".to_owned(),
            "invalid_field",
        ),
        (
            format!("{}&extra=1", lookup(&part(1, 0).hash, 0)),
            "invalid_query",
        ),
    ] {
        let (got, answer) = client.get(&path).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{path}: {answer}");
        refused(got, &answer, code, &path);
    }
    // Nothing refused was stored.
    for (what, body, _, _) in &cases {
        if let Some(hash) = body["body"]["parts"][0]["hash"].as_str() {
            let (status, _) = client.get(&lookup(&hash, 0)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{what} stored a part");
        }
    }
}

async fn a_conflicting_part_report_stores_nothing(db: &TestDb) {
    let origin = KeyPair::from_seed([35; 32]);
    let client = setup(db, &origin).await;
    let (status, _) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 3, vec![part(4, 0)]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Part 4.0 again with other bytes, together with a new part.
    let mut other = part(4, 0);
    other.hash = segment_hash(b"other bytes");
    let fresh = part(4, 1);
    let (status, body) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 3, vec![fresh, other]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    for hash in [fresh.hash, other.hash] {
        let (status, _) = client.get(&lookup(&hash, 0)).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "part {hash} of a refused report stored"
        );
    }
    // In a new run (the origin's numbering started over) the place is free again.
    let (status, body) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 4, vec![other]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn parts_older_than_the_retention_are_forgotten(db: &TestDb) {
    let origin = KeyPair::from_seed([36; 32]);
    let _client = setup(db, &origin).await;
    let storage = db.storage().await;
    let record = |msn: i64, reported_at_ms: i64| PartRecord {
        stream_id: "show".into(),
        run: "0000000000000001".into(),
        msn,
        part_index: 0,
        hash: segment_hash(format!("part {msn}").as_bytes()).to_string(),
        len: 6,
        cut_ms: reported_at_ms,
        reported_at_ms,
    };
    let (old, new) = (record(1, 1_000), record(2, 700_000));
    assert_eq!(
        storage
            .insert_parts(std::slice::from_ref(&old), None, 0)
            .await
            .expect("stored"),
        PartsStored::Stored { created: 1 }
    );
    // Reported ten minutes later: what was reported before 100 s is forgotten.
    assert_eq!(
        storage
            .insert_parts(std::slice::from_ref(&new), None, 100_000)
            .await
            .expect("stored"),
        PartsStored::Stored { created: 1 }
    );
    assert_eq!(
        storage.find_part("show", &old.hash).await.expect("query"),
        None
    );
    assert_eq!(
        storage.find_part("show", &new.hash).await.expect("query"),
        Some(new)
    );
}

async fn the_parts_of_an_ended_stream_are_forgotten_when_it_ends(db: &TestDb) {
    let origin = KeyPair::from_seed([37; 32]);
    let client = setup(db, &origin).await;
    let parts = vec![part(3, 0), part(3, 1)];
    let (status, body) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 9, parts.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = client.get(&lookup(&parts[0].hash, 0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = client.post_admin("/streams/show/end", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Neither this process's memory nor storage knows them any more, at once.
    for wanted in &parts {
        let (status, body) = client.get(&lookup(&wanted.hash, 0)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let storage = db.storage().await;
    assert_eq!(
        storage
            .find_part("show", &parts[1].hash.to_string())
            .await
            .expect("query"),
        None
    );
}

/// `GET /streams/show/part-reports?after=&wait_ms=`.
fn reports_after(after: u64, wait_ms: u32) -> String {
    format!("/streams/show/part-reports?after={after}&wait_ms={wait_ms}")
}

/// The signed reports of a page, checked as a viewer checks them, with their numbers.
fn verified(page: &Value, origin: &KeyPair) -> Vec<(u64, Vec<PartHash>)> {
    let page: streamr_coord::wire::PartReportsPage =
        serde_json::from_value(page.clone()).expect("a page of reports");
    let show = StreamId::new("show").expect("stream id");
    page.reports
        .iter()
        .map(|numbered| {
            let body = numbered
                .report
                .verify_from_origin(&origin.node_id(), &show, now_ms() as u64, 60_000)
                .expect("the origin's report, unaltered");
            (numbered.seq, body.parts.clone())
        })
        .collect()
}

async fn signed_part_reports_are_served_after_a_cursor_by_long_poll(db: &TestDb) {
    let origin = KeyPair::from_seed([38; 32]);
    let client = setup(db, &origin).await;
    let (first, second) = (vec![part(1, 0), part(1, 1)], vec![part(1, 2)]);
    for parts in [&first, &second] {
        let (status, body) = client
            .post(
                "/streams/show/parts",
                &report(&origin, "show", 4, parts.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Every report, as signed, numbered in order.
    let (status, page) = client.get(&reports_after(0, 0)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        verified(&page, &origin),
        vec![(1, first.clone()), (2, second.clone())]
    );
    assert_eq!(page["next"], 2);
    // A report whose parts were all stored already is not numbered again.
    let (status, _) = client
        .post(
            "/streams/show/parts",
            &report(&origin, "show", 4, first.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = client.get(&reports_after(1, 0)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(verified(&page, &origin), vec![(2, second)]);
    let (_, page) = client.get(&reports_after(2, 0)).await;
    assert_eq!(page, json!({"reports": [], "next": 2}));

    // A long poll is answered when the next report is stored.
    let third = vec![part(2, 0)];
    let started = Instant::now();
    let path = reports_after(2, 5_000);
    let (waited, status) = tokio::join!(client.get(&path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .post(
                "/streams/show/parts",
                &report(&origin, "show", 4, third.clone()),
            )
            .await
            .0
    });
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(waited.0, StatusCode::OK, "{}", waited.1);
    assert_eq!(verified(&waited.1, &origin), vec![(3, third)]);
    assert!(
        started.elapsed() < Duration::from_millis(4_000),
        "answered after {:?}, not when the report was stored",
        started.elapsed()
    );

    // A replica sharing the storage answers its long poll with a report stored by another
    // (it looks in storage while it waits).
    let storage = streamr_coord::connect(db.url()).await.expect("storage");
    let replica = Client::new(Coordinator::new(test_config(), storage));
    let fourth = vec![part(2, 1)];
    let started = Instant::now();
    let path = reports_after(3, 5_000);
    let (waited, status) = tokio::join!(replica.get(&path), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .post(
                "/streams/show/parts",
                &report(&origin, "show", 4, fourth.clone()),
            )
            .await
            .0
    });
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(verified(&waited.1, &origin), vec![(4, fourth)]);
    assert!(started.elapsed() < Duration::from_millis(4_000));

    // Nothing new: an empty page once the wait is over.
    let started = Instant::now();
    let (status, page) = client.get(&reports_after(4, 200)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page, json!({"reports": [], "next": 4}));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Bad queries and unknown streams.
    let (status, body) = client.get(&reports_after(0, 5_001)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_query");
    let (status, body) = client.get("/streams/show/part-reports?cursor=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = client.get("/streams/nope/part-reports").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Ending the stream forgets its reports.
    let (status, body) = client.post_admin("/streams/show/end", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, page) = client.get(&reports_after(0, 0)).await;
    assert_eq!(page, json!({"reports": [], "next": 0}));
}

/// The value of the coordinator's unlabelled metric `name`, read from its `/metrics`.
async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// The coordinator's `streamr_http_requests_total` (this request included).
async fn requests_total(base: &str) -> u64 {
    metric(base, "streamr_http_requests_total").await
}

/// The reports of the next page of `answer`, checked as a viewer checks them.
async fn next_reports(
    answer: &mut PartReportStream,
    origin: &KeyPair,
) -> Vec<(u64, Vec<PartHash>)> {
    let page = tokio::time::timeout(Duration::from_secs(5), answer.next_page())
        .await
        .expect("a page in time")
        .expect("a readable page");
    match page {
        StreamedPage::Page(page) => verified(&json!(page), origin),
        other => panic!("a page of reports, not {other:?}"),
    }
}

/// A coordinator on `db` served on a loopback port, with a stream `show` whose origin (the key
/// pair of `[seed; 32]`) passed its publish check.
struct ServedShow {
    /// Kept for the test's length, as the server serves it.
    _coordinator: Coordinator,
    server: streamr_coord::ServeHandle,
    base: String,
    public: CoordinatorClient,
    origin: KeyPair,
}

impl ServedShow {
    async fn start(db: &TestDb, seed: u8) -> ServedShow {
        let coordinator = Coordinator::new(
            test_config(),
            streamr_coord::connect(db.url()).await.expect("storage"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = coordinator.spawn_serve(listener).expect("serve");
        let base = server.url();
        let admin = CoordinatorClient::new(&base)
            .expect("client")
            .with_admin_token(ADMIN);
        let public = CoordinatorClient::new(&base).expect("client");
        let created = admin.create_stream("show", "Show").await.expect("stream");
        let origin = KeyPair::from_seed([seed; 32]);
        assert!(public
            .publish_check_as_origin("show", &created.stream_key, &origin)
            .await
            .expect("publish check"));
        ServedShow {
            _coordinator: coordinator,
            server,
            base,
            public,
            origin,
        }
    }
}

async fn part_reports_are_streamed_over_one_answer_and_resumed_after_a_cut(db: &TestDb) {
    let show = ServedShow::start(db, 39).await;
    let (_server, base, public, origin) = (show.server, show.base, show.public, show.origin);
    let signed = |parts: Vec<PartHash>| signed_report(&origin, "show", 9, parts);

    // Ten reports stored one by one reach the node over one request, each as it is stored.
    const REPORTS: u64 = 10;
    let before = requests_total(&base).await;
    let mut answer = public
        .part_report_stream("show", 0, Duration::from_secs(20))
        .await
        .expect("a streamed answer");
    let mut seen = vec![];
    for seq in 1..=REPORTS {
        let parts = vec![part(seq, 0)];
        public
            .report_parts_signed(&signed(parts.clone()))
            .await
            .expect("stored");
        let reports = next_reports(&mut answer, &origin).await;
        assert_eq!(reports, vec![(seq, parts)], "report {seq} as it is stored");
        seen.extend(reports.into_iter().map(|(seq, _)| seq));
    }
    let after = requests_total(&base).await;
    // The streamed answer, the reports and the second metrics read: no fetch per report.
    assert_eq!(
        after - before,
        1 + REPORTS + 1,
        "one request for {REPORTS} reports"
    );

    // The connection is cut; reports stored meanwhile come on the next answer, asked from
    // the last report read.
    drop(answer);
    let missed = vec![part(20, 0), part(20, 1)];
    public
        .report_parts_signed(&signed(missed.clone()))
        .await
        .expect("stored");
    let mut answer = public
        .part_report_stream("show", REPORTS, Duration::from_secs(1))
        .await
        .expect("a streamed answer");
    assert_eq!(
        next_reports(&mut answer, &origin).await,
        vec![(REPORTS + 1, missed)],
        "nothing lost across the cut"
    );
    // At the end of its hold the answer closes with a line of no reports.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), answer.next_page())
        .await
        .expect("closed in time")
        .expect("readable");
    assert_eq!(closed, StreamedPage::Closed);
    assert!(started.elapsed() < Duration::from_secs(3));

    // A replica sharing the storage writes a report another replica stored (it looks in
    // storage while it holds the answer).
    let replica = Coordinator::new(
        test_config(),
        streamr_coord::connect(db.url()).await.expect("storage"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let replica_server = replica.spawn_serve(listener).expect("serve");
    let from_replica = CoordinatorClient::new(&replica_server.url()).expect("client");
    let mut answer = from_replica
        .part_report_stream("show", REPORTS + 1, Duration::from_secs(10))
        .await
        .expect("a streamed answer");
    let elsewhere = vec![part(21, 0)];
    public
        .report_parts_signed(&signed(elsewhere.clone()))
        .await
        .expect("stored");
    assert_eq!(
        next_reports(&mut answer, &origin).await,
        vec![(REPORTS + 2, elsewhere)]
    );

    // The one-shot long poll still answers (older nodes).
    let page = public
        .part_reports("show", REPORTS, Duration::ZERO)
        .await
        .expect("a page");
    assert_eq!(page.next, REPORTS + 2);
    assert_eq!(page.reports.len(), 2);

    // Bad holds and unknown streams.
    for query in ["hold_ms=999", "hold_ms=60001", "wait_ms=5"] {
        let response = reqwest::get(format!("{base}/streams/show/part-reports/stream?{query}"))
            .await
            .expect("answer");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::BAD_REQUEST,
            "{query}"
        );
    }
    let refused = public
        .part_report_stream("nope", 0, Duration::from_secs(1))
        .await
        .expect_err("no such stream");
    assert_eq!(refused.status(), Some(reqwest::StatusCode::NOT_FOUND));
}

/// The coordinator's `streamr_part_report_waiters` gauge.
async fn part_report_waiters(base: &str) -> u64 {
    metric(base, "streamr_part_report_waiters").await
}

async fn a_stop_ends_waiting_requests_at_once_and_keeps_what_was_stored(db: &TestDb) {
    let show = ServedShow::start(db, 40).await;
    let (server, base, public, origin) = (show.server, show.base, show.public, show.origin);
    let signed = |parts: Vec<PartHash>| signed_report(&origin, "show", 4, parts);

    // A node follows the reports over a streamed answer held a minute.
    let mut answer = public
        .part_report_stream("show", 0, Duration::from_secs(60))
        .await
        .expect("a streamed answer");
    let first = vec![part(1, 0)];
    public
        .report_parts_signed(&signed(first.clone()))
        .await
        .expect("stored");
    assert_eq!(
        next_reports(&mut answer, &origin).await,
        vec![(1, first.clone())]
    );
    // A viewer waits for a part nobody reported.
    let unknown = part(99, 0).hash;
    let lookup = tokio::spawn(reqwest::get(format!("{base}{}", lookup(&unknown, 5_000))));
    streamr_test_support::eventually("the lookup waiting", || async {
        (part_report_waiters(&base).await >= 2).then_some(())
    })
    .await;
    // A report stored just before the stop, then a long poll waiting above it.
    let last = vec![part(2, 0), part(2, 1)];
    let stored = public
        .report_parts_signed(&signed(last.clone()))
        .await
        .expect("stored");
    assert_eq!(stored.created, 2);
    let long_poll = {
        let public = public.clone();
        tokio::spawn(async move { public.part_reports("show", 2, Duration::from_secs(5)).await })
    };
    streamr_test_support::eventually("the long poll waiting", || async {
        (part_report_waiters(&base).await >= 3).then_some(())
    })
    .await;

    // The stop: no waiting request holds it up for the 5 s grace.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("the server stops")
        .expect("served cleanly");
    let stopped_in = started.elapsed();
    assert!(
        stopped_in < Duration::from_secs(2),
        "the stop took {stopped_in:?}"
    );

    // Each waiting request got a clean answer: the streamed one the report stored before the
    // stop and its closing line, the long poll an empty page, the lookup a 503.
    assert_eq!(
        next_reports(&mut answer, &origin).await,
        vec![(2, last.clone())]
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), answer.next_page())
        .await
        .expect("closed at once")
        .expect("readable");
    assert_eq!(closed, StreamedPage::Closed);
    let page = tokio::time::timeout(Duration::from_secs(2), long_poll)
        .await
        .expect("the long poll answered at once")
        .expect("long poll task")
        .expect("a page");
    assert!(page.reports.is_empty(), "{page:?}");
    assert_eq!(page.next, 2);
    let refused = tokio::time::timeout(Duration::from_secs(2), lookup)
        .await
        .expect("the lookup answered at once")
        .expect("lookup task")
        .expect("an answer");
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: Value =
        serde_json::from_str(&refused.text().await.expect("a body")).expect("a JSON error");
    assert_eq!(body["error"], "shutting_down", "{body}");

    // What was stored before the stop is there after it.
    let restarted = Coordinator::new(
        test_config(),
        streamr_coord::connect(db.url()).await.expect("storage"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = restarted.spawn_serve(listener).expect("serve");
    let public = CoordinatorClient::new(&server.url()).expect("client");
    let page = public
        .part_reports("show", 0, Duration::ZERO)
        .await
        .expect("a page");
    assert_eq!(
        verified(&json!(page), &origin),
        vec![(1, first), (2, last)],
        "the reports stored before the stop"
    );
    server.shutdown().await.expect("served cleanly");
}
