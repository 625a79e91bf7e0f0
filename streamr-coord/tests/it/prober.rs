//! `HttpProber` against nodes served on loopback: a node serving the origin's bytes passes, one
//! serving other bytes fails the hash check once the origin reported past the probe, one that
//! is down times out, one serving a segment whose origin report arrives during the download
//! passes, and one listing only its first segment is not probed yet. While the origin's backlog
//! is still arriving after a coordinator outage, an honest relay's newer segments are never
//! failed, and a relay serving forged segments stamped in the future is still caught. The newest
//! listed segment is judged too: a relay forging only that one is caught once it lists the next
//! (or drops it from its playlist), one whose playlist stays put once the origin went on 30 s
//! past the probe, and an honest relay's segment cut short by an origin restart (never
//! reported, followed by a discontinuity) is never failed. A held probe is kept in storage: a
//! coordinator restarted between holding and judging it (a fresh prober on the same database,
//! SQLite and PostgreSQL) reaches the same verdict, and two replicas never both judge one. An
//! origin that names its run in each signed report says where its stream broke off: a relay
//! claiming a discontinuity after a forged segment where the run went on fails, and an honest
//! relay cut short where the run changed passes (SQLite and PostgreSQL).

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::storage::NodeRecord;
use streamr_coord::wire::SegmentReport;
use streamr_coord::workers::HttpProber;
use streamr_coord::{connect, grant_token, CoordConfig, Coordinator, ProbeRunner};
use streamr_core::{segment_hash, KeyPair};

use crate::common::TestDb;

const ADMIN: &str = "prober-test-admin";

on_both_backends!(
    a_held_probe_survives_a_coordinator_restart,
    a_segment_cut_short_is_spared_only_where_the_origins_run_changed,
);
const ORIGIN_SEGMENTS: [&[u8]; 3] = [b"segment zero", b"segment one", b"segment two"];

/// A node that lists segments 0-2 and serves `body(seq)` for each, only under a grant that
/// `coordinator` signed.
async fn fake_node(coordinator: streamr_core::CoordinatorKey, honest: bool) -> String {
    let check =
        move |query: &std::collections::HashMap<String, String>| granted_by(&coordinator, query);
    let app = axum::Router::new()
        .route(
            "/live/{file}",
            get(move |Query(query)| async move {
                if !check(&query) {
                    return (StatusCode::FORBIDDEN, String::new());
                }
                (
                    StatusCode::OK,
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nshow/0.ts\n#EXTINF:2.0,\nshow/1.ts\n#EXTINF:2.0,\nshow/2.ts\n"
                        .to_owned(),
                )
            }),
        )
        .route(
            "/live/{stream}/{segment}",
            get(move |Path((_, segment)): Path<(String, String)>| async move {
                let index: usize = segment.trim_end_matches(".ts").parse().unwrap_or(0);
                let bytes = ORIGIN_SEGMENTS.get(index).copied().unwrap_or_default();
                if honest {
                    bytes.to_vec()
                } else {
                    [bytes, b" altered"].concat()
                }
            }),
        );
    serve_node(app).await
}

/// Serves `app` on a free loopback port; its base URL.
async fn serve_node(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Whether the `grant` of a request's `query` is a grant that `coordinator` signed.
fn granted_by(
    coordinator: &streamr_core::CoordinatorKey,
    query: &std::collections::HashMap<String, String>,
) -> bool {
    query
        .get("grant")
        .and_then(|token| grant_token::decode(token).ok())
        .is_some_and(|grant| grant.verify(coordinator).is_ok())
}

/// A coordinator's storage in a fresh SQLite database under `dir`.
async fn sqlite_storage(dir: &std::path::Path) -> Arc<dyn streamr_coord::Storage> {
    connect(&format!("sqlite://{}", dir.join("c.db").display()))
        .await
        .unwrap()
}

fn node_record(http_url: String) -> NodeRecord {
    NodeRecord {
        id: KeyPair::generate(&mut rand::rngs::OsRng)
            .node_id()
            .to_string(),
        payout_address: "0x1".into(),
        operator: "op".into(),
        operator_key: None,
        subnet: "127.0.0.0/24".into(),
        rtmp_url: "rtmp://127.0.0.1:1/live".into(),
        http_url,
        registered_at_ms: 0,
        active: true,
        capacity_kbps: 1000,
        last_nonce: 0,
        last_heartbeat_ms: None,
        status: "live".into(),
        viewers: 0,
        bytes_served: 0,
        streams_json: r#"["show"]"#.into(),
        upstreams_json: "[]".into(),
    }
}

#[tokio::test]
async fn probes_check_content_against_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let storage = sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let admin = serve_coordinator(Arc::clone(&storage), config).await;
    admin.create_stream("show", "").await.unwrap();
    for (sequence, bytes) in (0u64..).zip(ORIGIN_SEGMENTS) {
        let report = SegmentReport {
            sequence,
            hash: segment_hash(bytes),
            published_ms: unix_ms(),
        };
        admin.report_segment("show", &report).await.unwrap();
    }

    let prober = HttpProber::new(storage, key.clone()).flv_one_in(0);
    let honest = node_record(fake_node(key.coordinator_key(), true).await);
    let result = prober.probe(&honest).await.expect("probed");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");
    assert!(result.throughput_bytes_per_s > 0);

    // Altered bytes match no report, but the origin has reported nothing cut after the probe
    // yet: the probe is held, not failed (and the node is not probed again meanwhile).
    let cheat = node_record(fake_node(key.coordinator_key(), false).await);
    assert!(prober.probe(&cheat).await.is_none(), "held");
    assert!(prober.probe(&cheat).await.is_none(), "still held");

    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = node_record(format!("http://{}", gone.local_addr().unwrap()));
    drop(gone);
    let result = prober.probe(&down).await.expect("probed");
    assert!(result.timed_out && !result.hash_ok, "{result:?}");

    assert!(
        prober.probe(&honest).await.is_none(),
        "a node is probed at most once per interval"
    );

    // A relay serves the newest segment while the origin's report of it is still on its way:
    // the report lands during the download, and the probe passes.
    let racing = node_record(racing_node(key.coordinator_key(), admin.clone()).await);
    let result = prober.probe(&racing).await.expect("probed");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");

    // The origin reports a segment cut after the cheat's probe: its segments are not the
    // origin's.
    let report = SegmentReport {
        sequence: 4,
        hash: segment_hash(b"segment four"),
        published_ms: unix_ms() + 2_500,
    };
    admin.report_segment("show", &report).await.unwrap();
    let result = prober.probe(&cheat).await.expect("judged");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");

    // A relay that just started lists only its first (partial) segment: nothing to probe yet.
    let starting = node_record(single_segment_node(key.coordinator_key()).await);
    assert!(prober.probe(&starting).await.is_none());
}

/// A node that lists only its first segment, whose bytes no origin segment equals.
async fn single_segment_node(coordinator: streamr_core::CoordinatorKey) -> String {
    let app = axum::Router::new()
        .route(
            "/live/{file}",
            get(
                move |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                    if !granted_by(&coordinator, &query) {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    (
                        StatusCode::OK,
                        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.2,\nshow/0.ts\n".to_owned(),
                    )
                },
            ),
        )
        .route(
            "/live/{stream}/{segment}",
            get(|| async { b"the second half of a segment".to_vec() }),
        );
    serve_node(app).await
}

/// A node listing segments 0 and 3 whose segment 3 is reported by the origin (through `admin`)
/// only while the node is already serving it.
async fn racing_node(
    coordinator: streamr_core::CoordinatorKey,
    admin: CoordinatorClient,
) -> String {
    let app = axum::Router::new()
        .route(
            "/live/{file}",
            get(move |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                if !granted_by(&coordinator, &query) {
                    return (StatusCode::FORBIDDEN, String::new());
                }
                (
                    StatusCode::OK,
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nshow/0.ts\n#EXTINF:2.0,\nshow/3.ts\n"
                        .to_owned(),
                )
            }),
        )
        .route(
            "/live/{stream}/{segment}",
            get(move || {
                let admin = admin.clone();
                async move {
                    let bytes = b"segment three".to_vec();
                    let report = SegmentReport {
                        sequence: 3,
                        hash: segment_hash(&bytes),
                        published_ms: unix_ms(),
                    };
                    admin.report_segment("show", &report).await.unwrap();
                    bytes
                }
            }),
        );
    serve_node(app).await
}

/// What a recording node saw: the grant tokens it was shown and the receipts posted to it.
#[derive(Default)]
struct Seen {
    grants: Vec<streamr_core::SignedGrant>,
    receipts: Vec<streamr_core::SignedReceipt>,
}

/// A node like `fake_node(.., true)` that records the grants it is shown and accepts receipts
/// on `POST /receipts` as a real node does; its `.flv` answers with an FLV stream.
async fn recording_node(
    coordinator: streamr_core::CoordinatorKey,
    seen: Arc<std::sync::Mutex<Seen>>,
) -> String {
    let grants = seen.clone();
    let app = axum::Router::new()
        .route(
            "/live/{file}",
            get(
                move |Path(file): Path<String>,
                      Query(query): Query<std::collections::HashMap<String, String>>| {
                    let grants = grants.clone();
                    async move {
                        let Some(grant) = query
                            .get("grant")
                            .and_then(|token| grant_token::decode(token).ok())
                            .filter(|grant| grant.verify(&coordinator).is_ok())
                        else {
                            return (StatusCode::FORBIDDEN, Vec::new());
                        };
                        grants.lock().unwrap().grants.push(grant);
                        if file.ends_with(".flv") {
                            let mut flv = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
                            flv.extend_from_slice(&[0u8; 4096]);
                            return (StatusCode::OK, flv);
                        }
                        (
                            StatusCode::OK,
                            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nshow/0.ts\n#EXTINF:2.0,\nshow/1.ts\n#EXTINF:2.0,\nshow/2.ts\n"
                                .to_vec(),
                        )
                    }
                },
            ),
        )
        .route(
            "/live/{stream}/{segment}",
            get(move |Path((_, segment)): Path<(String, String)>| async move {
                let index: usize = segment.trim_end_matches(".ts").parse().unwrap_or(0);
                ORIGIN_SEGMENTS.get(index).copied().unwrap_or_default().to_vec()
            }),
        )
        .route(
            "/receipts",
            axum::routing::post(
                move |axum::Json(request): axum::Json<streamr_coord::wire::ReceiptsRequest>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().receipts.extend(request.receipts);
                        StatusCode::OK
                    }
                },
            ),
        );
    serve_node(app).await
}

/// A probe looks like a viewer to the node (a fresh key each time, a grant shaped like a
/// viewer's, several segments, a receipt for each verified segment that the coordinator
/// accepts), while the coordinator's own records mark its session as a probe.
#[tokio::test]
async fn probes_look_like_viewers_and_are_marked_as_probes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        grant_ttl: std::time::Duration::from_secs(1_800),
        grant_bytes_per_second: 750_000,
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let admin = serve_coordinator(Arc::clone(&storage), config.clone()).await;
    admin.create_stream("show", "").await.unwrap();
    for (sequence, bytes) in (0u64..).zip(ORIGIN_SEGMENTS) {
        let report = SegmentReport {
            sequence,
            hash: segment_hash(bytes),
            published_ms: unix_ms(),
        };
        admin.report_segment("show", &report).await.unwrap();
    }

    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let node = node_record(recording_node(key.coordinator_key(), seen.clone()).await);
    let prober = HttpProber::new(Arc::clone(&storage), key.clone())
        .grants_like(&config)
        .flv_one_in(0)
        .every(std::time::Duration::ZERO);
    let before = unix_ms();
    for _ in 0..2 {
        let result = prober.probe(&node).await.expect("probed");
        assert!(result.hash_ok && !result.timed_out, "{result:?}");
    }
    let (grants, receipts) = {
        let seen = seen.lock().unwrap();
        (seen.grants.clone(), seen.receipts.clone())
    };
    // Every segment was acknowledged; the two playlists were not: the node reports them as
    // unattested, and the prober hands them over for settlement to net out.
    let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nshow/0.ts\n#EXTINF:2.0,\nshow/1.ts\n#EXTINF:2.0,\nshow/2.ts\n";
    assert_eq!(
        prober.take_unreceipted(),
        [(node.id.clone(), 2 * playlist.len() as u64)]
    );
    assert!(prober.take_unreceipted().is_empty(), "handed over once");
    // Two probes, two fresh viewer keys and sessions.
    let mut viewers: Vec<_> = grants.iter().map(|g| g.body.viewer).collect();
    viewers.dedup();
    assert_eq!(viewers.len(), 2, "{viewers:?}");
    for grant in &grants {
        // The shape of a viewer's grant under this configuration.
        assert_eq!(grant.body.max_bytes, 750_000 * 1_800);
        let lifetime = grant.body.expiry_ms - before;
        assert!(
            (1_800_000..1_800_000 + 60_000).contains(&lifetime),
            "{lifetime}"
        );
    }
    // One playlist each, then at least two segments, each acknowledged by a cumulative receipt.
    assert_eq!(grants.len(), 2, "playlist requests");
    assert!(receipts.len() >= 4, "{} receipts", receipts.len());
    for grant in &grants {
        let mut totals: Vec<u64> = receipts
            .iter()
            .filter(|r| r.body.session_id == grant.body.session_id)
            .map(|r| r.body.bytes_total)
            .collect();
        assert!(totals.len() >= 2, "{totals:?}");
        let sorted = totals.clone();
        totals.sort_unstable();
        assert_eq!(totals, sorted, "cumulative");
    }
    // The node forwards them like any viewer's: the coordinator accepts them all.
    let outcome = admin.post_receipts(receipts.clone()).await.unwrap();
    assert_eq!(outcome.accepted as usize, receipts.len(), "{outcome:?}");
    // Its own records say which sessions were probes.
    for receipt in &receipts {
        let session = storage
            .get_session(&receipt.body.session_id.to_string())
            .await
            .unwrap()
            .expect("probe session recorded");
        assert!(session.probe);
        assert_eq!(session.node_id, node.id);
    }

    // An HTTP-FLV probe reads the stream and records nothing when it plays.
    let flv = HttpProber::new(Arc::clone(&storage), key.clone())
        .flv_one_in(1)
        .every(std::time::Duration::ZERO);
    assert!(flv.probe(&node).await.is_none());
    // No receipt acknowledges what it read: all of it is probe traffic to net out.
    assert_eq!(flv.take_unreceipted(), [(node.id.clone(), 13 + 4096)]);
    assert!(seen
        .lock()
        .unwrap()
        .grants
        .last()
        .is_some_and(|g| !viewers.contains(&g.body.viewer)));
    // A node whose `.flv` is not an FLV stream fails it.
    let hls_only = node_record(fake_node(key.coordinator_key(), true).await);
    let result = flv.probe(&hls_only).await.expect("a failure is recorded");
    assert!(result.timed_out && !result.hash_ok, "{result:?}");
}

/// A node serving `playlist` and, at `/live/show/<name>`, the bytes `segments` holds for
/// `<name>`, only under a grant that `coordinator` signed.
async fn serving_node(
    coordinator: streamr_core::CoordinatorKey,
    playlist: String,
    segments: Vec<(&'static str, Vec<u8>)>,
) -> String {
    changing_node(
        coordinator,
        Arc::new(std::sync::Mutex::new(playlist)),
        segments,
    )
    .await
}

/// After a coordinator outage the origin's reports so far stop 12 s back and its journal's
/// backlog arrives later. An honest relay already serving the segments cut meanwhile is held,
/// never failed, and passes once the backlog is in; a relay serving forged segments stamped in
/// the future (`EXT-X-PROGRAM-DATE-TIME` a minute ahead, media sequences far past the origin's)
/// is held as long, and fails as soon as the origin reports a segment cut after its probe.
#[tokio::test]
async fn a_backlog_never_fails_an_honest_relay_and_hides_no_liar() {
    let dir = tempfile::tempdir().unwrap();
    let storage = sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let admin = serve_coordinator(Arc::clone(&storage), config).await;
    admin.create_stream("show", "").await.unwrap();
    let bytes = |sequence: u64| format!("origin segment {sequence}").into_bytes();
    let report = |sequence: u64, published_ms: u64| SegmentReport {
        sequence,
        hash: segment_hash(&bytes(sequence)),
        published_ms,
    };
    let start = unix_ms();
    // Reports of segments 0-2 (cut 18, 16 and 14 s ago) were in before the outage; 3-8 were cut
    // during it, 2 s apart, and wait in the origin's journal.
    for sequence in 0..3 {
        let published = start - 18_000 + sequence * 2_000;
        admin
            .report_segment("show", &report(sequence, published))
            .await
            .unwrap();
    }
    let honest_playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n\
                           #EXTINF:2.0,\nshow/5.ts\n#EXTINF:2.0,\nshow/6.ts\n\
                           #EXTINF:2.0,\nshow/7.ts\n#EXTINF:2.0,\nshow/8.ts\n"
        .to_owned();
    let honest = node_record(
        serving_node(
            key.coordinator_key(),
            honest_playlist,
            vec![
                ("5.ts", bytes(5)),
                ("6.ts", bytes(6)),
                ("7.ts", bytes(7)),
                ("8.ts", bytes(8)),
            ],
        )
        .await,
    );
    let future = chrono_like_pdt(start + 60_000);
    let liar_playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:9000\n\
         #EXT-X-PROGRAM-DATE-TIME:{future}\n#EXTINF:2.0,\nshow/a.ts\n#EXTINF:2.0,\nshow/b.ts\n\
         #EXTINF:2.0,\nshow/c.ts\n#EXTINF:2.0,\nshow/d.ts\n"
    );
    let liar = node_record(
        serving_node(
            key.coordinator_key(),
            liar_playlist,
            vec![
                ("a.ts", b"forged a".to_vec()),
                ("b.ts", b"forged b".to_vec()),
                ("c.ts", b"forged c".to_vec()),
                ("d.ts", b"forged d".to_vec()),
            ],
        )
        .await,
    );
    let prober = HttpProber::new(storage, key.clone()).flv_one_in(0);
    // The coordinator is back, the backlog not yet in: both probes are held.
    assert!(prober.probe(&honest).await.is_none(), "honest relay held");
    assert!(prober.probe(&liar).await.is_none(), "lying relay held");
    // Part of the backlog arrives (segments 3-6, all cut before the probes): the honest relay is
    // still held (7 and 8 are not in yet), never failed; so is the liar.
    for sequence in 3..7 {
        let published = start - 12_000 + (sequence - 3) * 2_000;
        admin
            .report_segment("show", &report(sequence, published))
            .await
            .unwrap();
    }
    assert!(
        prober.probe(&honest).await.is_none(),
        "honest relay still held"
    );
    assert!(
        prober.probe(&liar).await.is_none(),
        "lying relay still held"
    );
    // The rest of the backlog: every segment the honest relay served is the origin's.
    for sequence in 7..9 {
        let published = start - 4_000 + (sequence - 7) * 2_000;
        admin
            .report_segment("show", &report(sequence, published))
            .await
            .unwrap();
    }
    let result = prober.probe(&honest).await.expect("judged");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");
    // The origin cannot have reported past the liar's probe yet: still held.
    assert!(
        prober.probe(&liar).await.is_none(),
        "lying relay still held"
    );
    // Live again: the origin reports a segment cut after the probes. The liar's segments are
    // not the origin's, whatever time and place it stamped them with.
    admin
        .report_segment("show", &report(9, unix_ms() + 2_500))
        .await
        .unwrap();
    let result = prober.probe(&liar).await.expect("judged");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");
}

/// `unix_ms` as an `EXT-X-PROGRAM-DATE-TIME` value (UTC, to the millisecond).
fn chrono_like_pdt(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// A coordinator on loopback with a stream "show" whose origin reported the segments
/// `origin_bytes(0..reported)` just now; its admin client, its storage and its key.
async fn coordinator_with_reports(
    dir: &std::path::Path,
    reported: u64,
) -> (
    CoordinatorClient,
    Arc<dyn streamr_coord::Storage>,
    streamr_core::KeyPair,
) {
    let storage = sqlite_storage(dir).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let admin = serve_coordinator(Arc::clone(&storage), config).await;
    admin.create_stream("show", "").await.unwrap();
    for sequence in 0..reported {
        admin
            .report_segment("show", &origin_report(sequence, unix_ms()))
            .await
            .unwrap();
    }
    (admin, storage, key)
}

/// The bytes of the origin's segment `sequence`.
fn origin_bytes(sequence: u64) -> Vec<u8> {
    format!("origin segment {sequence}").into_bytes()
}

/// The origin's report of its segment `sequence`, cut at `published_ms`.
fn origin_report(sequence: u64, published_ms: u64) -> SegmentReport {
    SegmentReport {
        sequence,
        hash: segment_hash(&origin_bytes(sequence)),
        published_ms,
    }
}

/// A media playlist listing `entries` (URI under `show/`, duration; a `None` URI is an
/// `EXT-X-DISCONTINUITY`).
fn playlist_of(entries: &[(Option<&str>, f64)]) -> String {
    let mut text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n".to_owned();
    for (uri, duration) in entries {
        match uri {
            Some(uri) => text.push_str(&format!("#EXTINF:{duration:.3},\nshow/{uri}\n")),
            None => text.push_str("#EXT-X-DISCONTINUITY\n"),
        }
    }
    text
}

/// A node serving whatever `playlist` holds when asked, and at `/live/show/<name>` the bytes
/// `segments` holds for `<name>`, only under a grant that `coordinator` signed.
async fn changing_node(
    coordinator: streamr_core::CoordinatorKey,
    playlist: Arc<std::sync::Mutex<String>>,
    segments: Vec<(&'static str, Vec<u8>)>,
) -> String {
    let segments = Arc::new(segments);
    let app = axum::Router::new()
        .route(
            "/live/{file}",
            get(
                move |Query(query): Query<std::collections::HashMap<String, String>>| {
                    let playlist = playlist.lock().unwrap().clone();
                    async move {
                        if !granted_by(&coordinator, &query) {
                            return (StatusCode::FORBIDDEN, String::new());
                        }
                        (StatusCode::OK, playlist)
                    }
                },
            ),
        )
        .route(
            "/live/{stream}/{segment}",
            get(move |Path((_, segment)): Path<(String, String)>| {
                let segments = segments.clone();
                async move {
                    segments
                        .iter()
                        .find(|(name, _)| *name == segment)
                        .map(|(_, bytes)| bytes.clone())
                        .unwrap_or_default()
                }
            }),
        );
    serve_node(app).await
}

/// A relay forging only the newest segment it lists is held while that segment is its
/// playlist's open end, and fails as soon as it lists the next one plainly (no discontinuity);
/// one that renames its segments so the forged one is no longer listed gets no verdict (an
/// honest relay's segment can leave its window while a slow probe round goes round), so it
/// never passes.
#[tokio::test]
async fn a_relay_forging_only_its_newest_segment_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, storage, key) = coordinator_with_reports(dir.path(), 3).await;
    let playlist = Arc::new(std::sync::Mutex::new(playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
    ])));
    let liar = node_record(
        changing_node(
            key.coordinator_key(),
            playlist.clone(),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("2.ts", b"forged newest".to_vec()),
                ("3.ts", origin_bytes(3)),
            ],
        )
        .await,
    );
    let renamed_playlist = Arc::new(std::sync::Mutex::new(playlist.lock().unwrap().clone()));
    let renaming = node_record(
        changing_node(
            key.coordinator_key(),
            renamed_playlist.clone(),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("2.ts", b"forged newest".to_vec()),
            ],
        )
        .await,
    );
    let prober = HttpProber::new(storage, key.clone()).flv_one_in(0);
    assert!(prober.probe(&liar).await.is_none(), "held");
    assert!(prober.probe(&renaming).await.is_none(), "held");
    // The origin goes on past the probes; the liar's forged segment is still its open end.
    admin
        .report_segment("show", &origin_report(3, unix_ms() + 2_500))
        .await
        .unwrap();
    assert!(prober.probe(&liar).await.is_none(), "held at its open end");
    // It lists the next segment, no discontinuity between: the forged one was cut where the
    // origin cuts, and is not the origin's.
    *playlist.lock().unwrap() = playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
        (Some("3.ts"), 4.0),
    ]);
    let result = prober.probe(&liar).await.expect("judged");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");
    // A segment that left the playlist before anything was seen following it: the probe is
    // dropped without a verdict, neither failed nor passed.
    *renamed_playlist.lock().unwrap() = playlist_of(&[
        (Some("a.ts"), 4.0),
        (Some("b.ts"), 4.0),
        (Some("c.ts"), 4.0),
    ]);
    assert!(prober.probe(&renaming).await.is_none(), "dropped unjudged");
}

/// A relay whose playlist never lists anything past its forged newest segment is held only
/// until the origin has gone on well past the probe (30 s of its stream), then fails.
#[tokio::test]
async fn a_stuck_playlist_cannot_shelter_a_forged_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, storage, key) = coordinator_with_reports(dir.path(), 3).await;
    let stuck = node_record(
        serving_node(
            key.coordinator_key(),
            playlist_of(&[
                (Some("0.ts"), 4.0),
                (Some("1.ts"), 4.0),
                (Some("2.ts"), 4.0),
            ]),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("2.ts", b"forged newest".to_vec()),
            ],
        )
        .await,
    );
    let prober = HttpProber::new(storage, key.clone()).flv_one_in(0);
    let probed = unix_ms();
    assert!(prober.probe(&stuck).await.is_none(), "held");
    // The origin goes on; 28 s past the probe an honest relay may still be waiting for the
    // segment that follows one cut short.
    for (sequence, ahead) in [(3, 2_500), (4, 15_000), (5, 28_000)] {
        admin
            .report_segment("show", &origin_report(sequence, probed + ahead))
            .await
            .unwrap();
        assert!(prober.probe(&stuck).await.is_none(), "held {ahead} ms past");
    }
    admin
        .report_segment("show", &origin_report(6, unix_ms() + 33_000))
        .await
        .unwrap();
    let result = prober.probe(&stuck).await.expect("judged");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");
}

/// The origin is killed and restarted: the honest relay lists a 0.12 s segment cut short
/// where the old run stopped, which the origin never reports, and marks it with
/// `EXT-X-DISCONTINUITY` only once the restarted origin's first segment is in. Probed while
/// that segment is its newest, the relay is held through the origin going on, and passes.
#[tokio::test]
async fn an_honest_relay_cut_short_by_an_origin_restart_is_never_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, storage, key) = coordinator_with_reports(dir.path(), 2).await;
    let playlist = Arc::new(std::sync::Mutex::new(playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("short.ts"), 0.12),
    ])));
    let relay = node_record(
        changing_node(
            key.coordinator_key(),
            playlist.clone(),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("short.ts", b"the old run's last 0.12 s".to_vec()),
                ("2.ts", origin_bytes(2)),
            ],
        )
        .await,
    );
    let prober = HttpProber::new(storage, key.clone()).flv_one_in(0);
    assert!(prober.probe(&relay).await.is_none(), "held");
    // The restarted origin reports its first segment, cut after the probe; the relay's
    // playlist has not caught up yet.
    admin
        .report_segment("show", &origin_report(2, unix_ms() + 2_500))
        .await
        .unwrap();
    assert!(prober.probe(&relay).await.is_none(), "held, not failed");
    *playlist.lock().unwrap() = playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("short.ts"), 0.12),
        (None, 0.0),
        (Some("2.ts"), 4.0),
    ]);
    let result = prober.probe(&relay).await.expect("judged");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");
}

/// A coordinator serving `storage` on loopback, with the stream "show"; its admin client.
async fn serve_coordinator(
    storage: Arc<dyn streamr_coord::Storage>,
    config: CoordConfig,
) -> CoordinatorClient {
    let coordinator = Coordinator::new(config, storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = coordinator.serve(listener, std::future::pending()).await;
    });
    CoordinatorClient::new(&url)
        .unwrap()
        .with_admin_token(ADMIN)
}

/// Probes of an honest relay and of one forging its newest segment are held (the origin's
/// report of the newest is not in yet); the coordinator is then restarted (a fresh prober and
/// storage on the same database, nothing kept in memory). The restarted one judges both as the
/// first would have: the honest relay passes, the liar fails. While one replica holds a probe's
/// lease another neither judges it nor probes the node again.
async fn a_held_probe_survives_a_coordinator_restart(db: &TestDb) {
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let admin = serve_coordinator(db.storage().await, config.clone()).await;
    admin.create_stream("show", "").await.unwrap();
    for sequence in 0..2 {
        admin
            .report_segment("show", &origin_report(sequence, unix_ms()))
            .await
            .unwrap();
    }
    let listing = playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
    ]);
    let honest_playlist = Arc::new(std::sync::Mutex::new(listing.clone()));
    let honest = node_record(
        changing_node(
            key.coordinator_key(),
            honest_playlist.clone(),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("2.ts", origin_bytes(2)),
            ],
        )
        .await,
    );
    let liar_playlist = Arc::new(std::sync::Mutex::new(listing));
    let liar = node_record(
        changing_node(
            key.coordinator_key(),
            liar_playlist.clone(),
            vec![
                ("0.ts", origin_bytes(0)),
                ("1.ts", origin_bytes(1)),
                ("2.ts", b"forged newest".to_vec()),
            ],
        )
        .await,
    );
    {
        let first = HttpProber::new(db.storage().await, key.clone()).flv_one_in(0);
        assert!(first.probe(&honest).await.is_none(), "honest relay held");
        assert!(first.probe(&liar).await.is_none(), "lying relay held");
        // Held, so not probed again.
        assert!(first.probe(&honest).await.is_none(), "still held");
    }
    // The coordinator restarts; meanwhile the origin reported segment 2 and one cut after the
    // probes, and both relays listed the next segment plainly.
    admin
        .report_segment("show", &origin_report(2, unix_ms()))
        .await
        .unwrap();
    admin
        .report_segment("show", &origin_report(3, unix_ms() + 2_500))
        .await
        .unwrap();
    let next = playlist_of(&[
        (Some("0.ts"), 4.0),
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
        (Some("3.ts"), 4.0),
    ]);
    *honest_playlist.lock().unwrap() = next.clone();
    *liar_playlist.lock().unwrap() = next;
    let storage = db.storage().await;
    // Another replica holds the liar's probe's lease: this one neither judges nor re-probes it.
    let leased = storage
        .claim_held_probe(&liar.id, now_i64(), now_i64() + 60_000)
        .await
        .unwrap()
        .expect("the liar's probe is stored");
    let restarted = HttpProber::new(Arc::clone(&storage), key.clone()).flv_one_in(0);
    assert!(
        restarted.probe(&liar).await.is_none(),
        "leased by another replica"
    );
    let result = restarted
        .probe(&honest)
        .await
        .expect("judged after the restart");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");
    // The other replica gives the lease up unjudged; the restarted one judges the liar.
    assert!(storage
        .release_held_probe(&leased.probe_id, leased.lease_until_ms, &leased.state_json)
        .await
        .unwrap());
    let result = restarted
        .probe(&liar)
        .await
        .expect("judged after the restart");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");
    // Judged once: nothing is held any more, and the lease holder cannot finish it again.
    assert!(!storage.has_held_probe(&liar.id).await.unwrap());
    assert!(!storage
        .finish_held_probe(&leased.probe_id, leased.lease_until_ms)
        .await
        .unwrap());
}

fn now_i64() -> i64 {
    i64::try_from(unix_ms()).unwrap()
}

/// The origin's signed report of `origin_bytes(sequence)`, cut at `published_ms` in `run`.
fn signed_origin_report(
    origin: &KeyPair,
    sequence: u64,
    published_ms: u64,
    run: u64,
) -> streamr_core::SignedSegmentReport {
    streamr_core::Signed::sign(
        streamr_core::OriginSegmentReport {
            node_id: origin.node_id(),
            stream_id: streamr_core::StreamId::new("show").unwrap(),
            sequence,
            hash: segment_hash(&origin_bytes(sequence)),
            published_ms,
            timestamp_ms: unix_ms(),
            ll: None,
            run: Some(run),
        },
        origin,
    )
}

/// The origin signs its reports with its run. A relay forging a segment and claiming the stream
/// broke off right after it (`EXT-X-DISCONTINUITY`) where the origin's run went on fails; an
/// honest relay whose newest segment was cut short where the origin restarted (a new run on
/// the chain right after) passes. The runs are stored with the segments.
async fn a_segment_cut_short_is_spared_only_where_the_origins_run_changed(db: &TestDb) {
    const RUN_A: u64 = 0xa11ce;
    const RUN_B: u64 = 0xb0b;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let key = config.coordinator_key.clone();
    let storage = db.storage().await;
    let admin = serve_coordinator(Arc::clone(&storage), config).await;
    admin.create_stream("show", "").await.unwrap();
    let origin = KeyPair::generate(&mut rand::rngs::OsRng);
    storage
        .bind_origin("show", &origin.node_id().to_string())
        .await
        .unwrap();
    for sequence in 0..3 {
        admin
            .report_segment_signed(&signed_origin_report(&origin, sequence, unix_ms(), RUN_A))
            .await
            .unwrap();
    }
    let prober = HttpProber::new(Arc::clone(&storage), key.clone()).flv_one_in(0);

    // The liar: its newest segment forged, then a discontinuity claimed after it.
    let liar_playlist = Arc::new(std::sync::Mutex::new(playlist_of(&[
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
        (Some("3x.ts"), 4.0),
    ])));
    let liar = node_record(
        changing_node(
            key.coordinator_key(),
            liar_playlist.clone(),
            vec![
                ("1.ts", origin_bytes(1)),
                ("2.ts", origin_bytes(2)),
                ("3x.ts", b"forged".to_vec()),
            ],
        )
        .await,
    );
    assert!(prober.probe(&liar).await.is_none(), "held");
    // The origin's run goes on past the probe.
    admin
        .report_segment_signed(&signed_origin_report(&origin, 3, unix_ms() + 2_500, RUN_A))
        .await
        .unwrap();
    *liar_playlist.lock().unwrap() = playlist_of(&[
        (Some("1.ts"), 4.0),
        (Some("2.ts"), 4.0),
        (Some("3x.ts"), 4.0),
        (None, 0.0),
        (Some("4.ts"), 4.0),
    ]);
    let result = prober.probe(&liar).await.expect("judged");
    assert!(!result.hash_ok && !result.timed_out, "{result:?}");

    // The honest relay: the origin is killed with a segment open (after cutting segment 3,
    // stamped 2.5 s ahead above: the relay lists its copy cut short later than that, less the
    // clock slack), the relay's copy of it cut short; the restarted origin's first report is of
    // a new run.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let honest_playlist = Arc::new(std::sync::Mutex::new(playlist_of(&[
        (Some("2.ts"), 4.0),
        (Some("3.ts"), 4.0),
        (Some("short.ts"), 0.12),
    ])));
    let honest = node_record(
        changing_node(
            key.coordinator_key(),
            honest_playlist.clone(),
            vec![
                ("2.ts", origin_bytes(2)),
                ("3.ts", origin_bytes(3)),
                ("short.ts", b"the old run's last 0.12 s".to_vec()),
            ],
        )
        .await,
    );
    assert!(prober.probe(&honest).await.is_none(), "held");
    admin
        .report_segment_signed(&signed_origin_report(&origin, 4, unix_ms() + 2_500, RUN_B))
        .await
        .unwrap();
    *honest_playlist.lock().unwrap() = playlist_of(&[
        (Some("2.ts"), 4.0),
        (Some("3.ts"), 4.0),
        (Some("short.ts"), 0.12),
        (None, 0.0),
        (Some("4.ts"), 4.0),
    ]);
    let result = prober.probe(&honest).await.expect("judged");
    assert!(result.hash_ok && !result.timed_out, "{result:?}");

    let runs: Vec<(i64, Option<String>)> = storage
        .list_segments("show", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|segment| (segment.sequence, segment.run))
        .collect();
    let run = |run: u64| Some(format!("{run:016x}"));
    assert_eq!(
        runs,
        vec![
            (4, run(RUN_B)),
            (3, run(RUN_A)),
            (2, run(RUN_A)),
            (1, run(RUN_A)),
            (0, run(RUN_A))
        ]
    );
}
