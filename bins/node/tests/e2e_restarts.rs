//! Restarts and outages end to end on loopback, with real peers: `streamr-node` processes (an
//! origin and a friend relay), ffmpeg publishing, the viewer library watching through the
//! relay, and a coordinator (SQLite file, the HTTP prober, 5 s epochs) served over HTTP that
//! the tests stop and start again on the same address and database, as a restarted
//! coordinator process would be.
//!
//! - The origin is killed (SIGKILL) mid-stream and started again with the same identity, and
//!   the streamer publishes again: the stream's segment chain continues without a gap or a
//!   refused report (the restarted origin's reports under a new run), the viewer keeps
//!   verifying and crediting, the relay is never penalised.
//! - The coordinator is away while the origin cuts segments (until at least three reports
//!   wait in its journal, the viewer holds segments it could not check yet and every node's
//!   heartbeat has lapsed): the origin queues its reports on disk and delivers them in order
//!   when it is back; the chain has no gap, nobody is penalised (the prober probes the relay
//!   while the backlog is still arriving and waits for it), the viewer verifies the segments
//!   it received meanwhile, and no receipt the relay kept through the outage is refused as
//!   late (the epochs it covered wait for them).
//! - A relay started before its coordinator keeps running and joins when it appears.

mod common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Child};
use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::storage::SegmentRecord;
use streamr_coord::workers::{HttpProber, Workers};
use streamr_coord::{connect, CoordConfig, Coordinator, RateLimit, ServeHandle, Storage};
use streamr_core::{KeyPair, NodeId};
use streamr_node::viewer::{Viewer, ViewerConfig, ViewerStats};
use streamr_test_support::ffmpeg::ffmpeg_publish_from;

const ADMIN: &str = "e2e-restarts-admin";
const STREAM: &str = "show";
/// The coordinator's node liveness: a node whose last heartbeat is older is offline.
const NODE_LIVENESS_MS: i64 = 6_000;
/// The coordinator's epoch length. The tests check settlement outcomes, not epoch timing: a
/// short epoch only shortens the wait for an epoch that settles after an outage.
const EPOCH_MS: u64 = 5_000;
/// How long a stopping coordinator gives open requests to finish.
const SHUTDOWN_GRACE_MS: u64 = 200;
/// A coordinator that can be stopped and started again on the same address and database.
struct Coord {
    storage: Arc<dyn Storage>,
    key: KeyPair,
    addr: SocketAddr,
    running: Option<(ServeHandle, Workers)>,
}

impl Coord {
    /// A coordinator on `database` (a storage URL).
    async fn open(database: &str, addr: SocketAddr) -> Coord {
        let storage = connect(database).await.expect("the database opens");
        Coord {
            storage,
            key: KeyPair::generate(&mut rand::rngs::OsRng),
            addr,
            running: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn admin(&self) -> CoordinatorClient {
        CoordinatorClient::new(&self.url())
            .expect("client")
            .with_admin_token(ADMIN)
    }

    async fn start(&mut self) {
        let mut config = CoordConfig {
            admin_token: Some(ADMIN.into()),
            coordinator_key: self.key.clone(),
            epoch_length: Duration::from_millis(EPOCH_MS),
            settlement_grace: Duration::from_secs(1),
            // The epochs an outage covered wait this long after it for receipts held back.
            outage_grace: Duration::from_secs(3),
            // One clock on loopback. Shorter than the outage, so a receipt held through it is
            // not taken as one in flight (booked on arrival) but judged by its epoch's deadline.
            max_clock_skew: Duration::from_secs(3),
            node_liveness: Duration::from_millis(NODE_LIVENESS_MS as u64),
            rate_limit: Some(RateLimit {
                per_second: 10_000,
                burst: 10_000,
            }),
            ..CoordConfig::default()
        };
        // The nodes hold streamed part-report answers open, which a stop waits out for the
        // whole grace (5 s by default) on every stop: a short one cuts them as a crash would,
        // and the nodes ask again when the coordinator is back.
        config.http.shutdown_grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        let prober =
            HttpProber::new(self.storage.clone(), self.key.clone()).every(Duration::from_secs(2));
        let coordinator =
            Coordinator::new(config, self.storage.clone()).with_probe_runner(Arc::new(prober));
        // The address was just given up by the stopped coordinator (or reserved by the test).
        let listener = eventually("the coordinator's address to be free", || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        let workers = coordinator.spawn_workers();
        let server = coordinator.spawn_serve(listener).expect("serve");
        self.running = Some((server, workers));
    }

    async fn stop(&mut self) {
        if let Some((server, workers)) = self.running.take() {
            server.shutdown().await.expect("served");
            workers.shutdown().await;
        }
    }

    /// The stream's chain, oldest first.
    async fn chain(&self) -> Vec<SegmentRecord> {
        let mut chain = self
            .storage
            .list_segments(STREAM, 1000)
            .await
            .expect("segments");
        chain.reverse();
        chain
    }

    /// Fails when a probe found a wrong segment on `node` or a rule other than the new-node
    /// probation fired against it, in any epoch so far.
    async fn assert_not_penalised(&self, node: NodeId) {
        let node = node.to_string();
        let now_epoch = i64::try_from(unix_ms() / EPOCH_MS).expect("epoch");
        for epoch in now_epoch.saturating_sub(60)..=now_epoch {
            let probes = self.storage.probes_for_epoch(epoch).await.expect("probes");
            let bad: Vec<_> = probes
                .iter()
                .filter(|p| p.node_id == node && !p.hash_ok)
                .collect();
            assert!(bad.is_empty(), "epoch {epoch}: failed probes {bad:?}");
            let evidence = self
                .storage
                .evidence_for_epoch(epoch)
                .await
                .expect("evidence");
            // Probation (a new node's reduced weight) is no penalty, nor are the caps on
            // unattested claims (they leave unpaid claimed bytes no receipt backs beyond what the
            // node's grants could carry or the network-wide ratio allows; with 5 s epochs a
            // viewer catching up after an outage is bursty enough to reach them); anything else is.
            let against: Vec<_> = evidence
                .iter()
                .filter(|e| {
                    e.node_id == node
                        && e.rule != "probation"
                        && !(e.rule.starts_with("unattested_")
                            && e.detail.contains("\"verdict\":\"drop_bytes\""))
                })
                .collect();
            assert!(against.is_empty(), "epoch {epoch}: evidence {against:?}");
        }
    }
}

/// Fails unless the chain's sequence numbers follow on without a gap.
fn assert_contiguous(chain: &[SegmentRecord]) {
    let sequences: Vec<i64> = chain.iter().map(|s| s.sequence).collect();
    for pair in sequences.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap in the chain: {sequences:?}");
    }
}

fn reserve_port(ip: &str) -> SocketAddr {
    let listener = StdListener::bind(format!("{ip}:0")).expect("bind");
    listener.local_addr().expect("address")
}

/// A `streamr-node` process; its log goes to `<dir>/<name>.log`.
fn spawn_node(dir: &Path, name: &str, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args(args)
        .arg("--identity")
        .arg(dir.join(format!("{name}.key")))
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("streamr-node starts");
    Child(child)
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

struct Network {
    dir: tempfile::TempDir,
    coord: Coord,
    stream_key: String,
    origin_rtmp: SocketAddr,
    origin_http: SocketAddr,
    origin: Option<Child>,
    relay: Child,
    publisher: Option<Child>,
}

impl Network {
    fn origin_args(&self) -> Vec<String> {
        vec![
            "--rtmp-listen".into(),
            self.origin_rtmp.to_string(),
            "--http-listen".into(),
            self.origin_http.to_string(),
            "--coordinator".into(),
            self.coord.url(),
            "--coordinator-public-key".into(),
            self.coord.key.coordinator_key().to_string(),
        ]
    }

    /// Starts the origin and ffmpeg publishing to it, its timestamps starting at
    /// `start_seconds`.
    async fn start_origin(&mut self, start_seconds: u32) {
        self.origin = Some(spawn_node(self.dir.path(), "origin", &self.origin_args()));
        let rtmp = self.origin_rtmp;
        eventually("the origin to listen", || async {
            tokio::net::TcpStream::connect(rtmp).await.ok()
        })
        .await;
        self.publisher = Some(ffmpeg_publish_from(
            &format!(
                "rtmp://{}/live/{STREAM}?key={}",
                self.origin_rtmp, self.stream_key
            ),
            600,
            start_seconds,
        ));
    }

    /// Kills the origin (SIGKILL, a crash) and its publisher.
    fn kill_origin(&mut self) {
        self.publisher = None;
        if let Some(mut origin) = self.origin.take() {
            let _ = origin.0.kill();
            let _ = origin.0.wait();
        }
    }

    /// A coordinator on `127.0.{octet}.1` (on SQLite), a stream, an origin with ffmpeg
    /// publishing (timestamps from `start_seconds`) and one relay.
    async fn start(octet: u8, relay_first: bool, start_seconds: u32) -> Network {
        Network::start_on(None, octet, relay_first, start_seconds).await
    }

    /// [`Network::start`] with the coordinator on `database` (a storage URL; `None`: a SQLite
    /// file in the network's directory).
    async fn start_on(
        database: Option<&str>,
        octet: u8,
        relay_first: bool,
        start_seconds: u32,
    ) -> Network {
        let dir = tempfile::tempdir().expect("temp dir");
        let coord_addr = reserve_port(&format!("127.0.{octet}.1"));
        let sqlite = format!("sqlite://{}", dir.path().join("coordinator.db").display());
        let mut coord = Coord::open(database.unwrap_or(&sqlite), coord_addr).await;
        let relay_args = vec![
            "--rtmp-listen".to_string(),
            format!("127.0.{}.1:0", octet + 2),
            "--http-listen".to_string(),
            format!("127.0.{}.1:0", octet + 2),
            "--upstream".to_string(),
            String::new(),
            "--coordinator".to_string(),
            coord.url(),
            "--heartbeat-interval".to_string(),
            "1s".to_string(),
            "--operator".to_string(),
            "friend".to_string(),
        ];
        let origin_rtmp = reserve_port(&format!("127.0.{}.1", octet + 1));
        let origin_http = reserve_port(&format!("127.0.{}.1", octet + 1));
        let mut relay_args = relay_args;
        relay_args[5] = format!("rtmp://{origin_rtmp}");
        let mut early_relay = None;
        if relay_first {
            early_relay = Some(spawn_node(dir.path(), "relay", &relay_args));
            // The relay keeps running without its coordinator, and says so.
            eventually("the relay to say it waits for its coordinator", || async {
                log_of(dir.path(), "relay")
                    .contains("not joined to the coordinator yet")
                    .then_some(())
            })
            .await;
            let relay = early_relay.as_mut().expect("relay");
            assert!(
                relay.0.try_wait().expect("status").is_none(),
                "the relay exited without its coordinator:\n{}",
                log_of(dir.path(), "relay")
            );
        }
        coord.start().await;
        let created = coord
            .admin()
            .create_stream(STREAM, "restarts")
            .await
            .expect("stream created");
        let relay = match early_relay {
            Some(relay) => relay,
            None => spawn_node(dir.path(), "relay", &relay_args),
        };
        let mut network = Network {
            dir,
            coord,
            stream_key: created.stream_key,
            origin_rtmp,
            origin_http,
            origin: None,
            relay,
            publisher: None,
        };
        network.start_origin(start_seconds).await;
        network
    }

    async fn relay_id(&self) -> NodeId {
        let admin = self.coord.admin();
        eventually("the relay to join", || async {
            let nodes = admin.nodes().await.ok()?;
            nodes
                .iter()
                .find(|n| n.operator == "friend" && n.active)
                .and_then(|n| n.id.parse().ok())
        })
        .await
    }

    fn logs(&self) -> String {
        format!(
            "origin log:\n{}\nrelay log:\n{}",
            tail(&log_of(self.dir.path(), "origin")),
            tail(&log_of(self.dir.path(), "relay"))
        )
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn start_viewer(coord: &Coord) -> Viewer {
    let mut config = ViewerConfig::new(coord.url(), STREAM);
    // The relay has nothing new while its origin restarts; the viewer waits for it.
    config.stall_timeout = Duration::from_secs(60);
    Viewer::start(config, None).expect("viewer starts")
}

async fn until_viewer(viewer: &Viewer, what: &str, check: impl Fn(&ViewerStats) -> bool) {
    eventually(what, || async {
        let stats = viewer.stats();
        check(&stats).then_some(())
    })
    .await;
}

/// Segment reports the origin has queued in its journal so far (every report is queued there
/// before it is sent).
fn queued_reports(network: &Network) -> usize {
    let text =
        std::fs::read_to_string(network.dir.path().join("origin.reports")).unwrap_or_default();
    text.lines().filter(|l| l.contains("\"queued\"")).count()
}

/// While the coordinator cannot take them: waits until the origin has queued `count` more
/// segment reports in its journal and `viewer` has received `count` more segments than
/// `before`, which it cannot check yet. Returns the reports queued before.
async fn until_held_back(
    network: &Network,
    viewer: &Viewer,
    before: &ViewerStats,
    count: usize,
) -> usize {
    let queued_before = queued_reports(network);
    eventually("segment reports to queue on disk", || async {
        (queued_reports(network) >= queued_before + count).then_some(())
    })
    .await;
    until_viewer(
        viewer,
        "the viewer to receive segments during the outage",
        |s| s.segments >= before.segments + count as u64,
    )
    .await;
    queued_before
}

/// After an outage: waits until `viewer` has verified every segment it received during it
/// (`received_away` in all, and at least three more than `before`), its receipts credit again,
/// and the prober and a settlement have run on the recovered network (an epoch that started
/// after `recovered_ms`, when the backlog was in, is settled).
async fn until_recovered(
    network: &Network,
    viewer: &Viewer,
    before: &ViewerStats,
    received_away: u64,
    recovered_ms: u64,
) {
    until_viewer(
        viewer,
        "the viewer to verify what it received during the outage",
        |s| s.verified_segments >= received_away.max(before.verified_segments + 3),
    )
    .await;
    until_viewer(viewer, "receipts to keep crediting", |s| {
        s.receipts_accepted > before.receipts_accepted + 1
    })
    .await;
    eventually("an epoch after the outage to settle", || async {
        let last = network.coord.storage.last_settled_epoch().await.ok()??;
        (u64::try_from(last).ok()? * EPOCH_MS > recovered_ms).then_some(())
    })
    .await;
}

/// Waits up to `limit` (a generous multiple of real time, the machine is loaded).
async fn until_chain_reaches(coord: &Coord, sequence: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let chain = coord.chain().await;
        if chain.last().is_some_and(|s| s.sequence >= sequence) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chain did not reach {sequence}: {:?}",
            chain.last().map(|s| s.sequence)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn an_origin_restart_continues_the_chain_and_viewers_keep_verifying() {
    // The first run's timestamps start a minute in, as from an encoder that has published for
    // that long: past the relay's replay window (30 s) from the restarted origin's timeline,
    // which starts at zero, so that one is a new timeline to the relay.
    let mut network = Network::start(70, false, 60).await;
    let relay = network.relay_id().await;
    let viewer = start_viewer(&network.coord);
    until_viewer(&viewer, "the viewer to verify segments", |s| {
        s.verified_segments >= 2
    })
    .await;
    let before = viewer.stats();
    let head = network
        .coord
        .chain()
        .await
        .last()
        .expect("segments")
        .sequence;

    network.kill_origin();
    let killed = tokio::time::Instant::now();
    network.start_origin(0).await;
    until_chain_reaches(&network.coord, head + 1, Duration::from_secs(120)).await;
    let first_report = killed.elapsed();
    until_viewer(
        &viewer,
        "the viewer to verify a segment of the new run",
        |s| {
            s.last_verified_sequence
                .is_some_and(|sequence| i64::try_from(sequence).is_ok_and(|s| s > head))
        },
    )
    .await;
    eprintln!(
        "origin restart: first report of the new run {:.1} s after the kill, first verified \
         segment of it at the viewer {:.1} s after",
        first_report.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );

    until_chain_reaches(&network.coord, head + 6, Duration::from_secs(120)).await;
    let chain = network.coord.chain().await;
    assert_contiguous(&chain);
    // Every report names the origin's run, and the restarted origin's is another: the run
    // changes once along the chain (reports the killed origin left in its journal are
    // delivered under its old run first), after the old head, so the chain says where the
    // stream broke off.
    assert!(chain.iter().all(|s| s.run.is_some()), "{chain:?}");
    let breaks: Vec<i64> = chain
        .windows(2)
        .filter(|pair| pair[0].run != pair[1].run)
        .map(|pair| pair[1].sequence)
        .collect();
    assert!(
        breaks.len() == 1 && breaks[0] > head,
        "head {head}, runs change at {breaks:?}"
    );
    let origin_log = log_of(network.dir.path(), "origin");
    assert!(
        !origin_log.contains("refused a segment report"),
        "{}",
        network.logs()
    );
    until_viewer(
        &viewer,
        "the viewer to verify segments of the restarted origin",
        |s| s.verified_segments >= before.verified_segments + 4,
    )
    .await;
    until_viewer(&viewer, "receipts to keep crediting", |s| {
        s.receipts_accepted > before.receipts_accepted + 1
    })
    .await;
    let stats = viewer.stop().await.expect("viewer stops");
    eprintln!(
        "origin restart: chain {}..={}, viewer {stats:?}",
        chain.first().map_or(-1, |s| s.sequence),
        chain.last().map_or(-1, |s| s.sequence)
    );
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    // The relay lists only segments it cuts as the origin does: when the origin's timeline
    // starts over, the relay cannot know that the first keyframe it gets is the new run's
    // first (where the origin cut), so it may leave that one segment out.
    assert!(stats.skipped_segments <= 1, "{stats:?}");
    // At most the relay's partial segment cut when its origin died is not the origin's.
    assert!(stats.unverified_segments <= 1, "{stats:?}");
    network.coord.assert_not_penalised(relay).await;
    network.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn a_coordinator_outage_loses_no_report_and_penalises_nobody() {
    let mut network = Network::start(80, false, 0).await;
    let relay = network.relay_id().await;
    let viewer = start_viewer(&network.coord);
    // A second viewer acknowledges everything it verified only when it leaves, during the
    // outage: the coordinator does not answer, so that receipt waits at the relay.
    let leaving = {
        let mut config = ViewerConfig::new(network.coord.url(), STREAM);
        config.stall_timeout = Duration::from_secs(60);
        config.receipt_interval = Duration::from_secs(3_600);
        Viewer::start(config, None).expect("viewer starts")
    };
    for viewer in [&viewer, &leaving] {
        until_viewer(viewer, "the viewers to verify segments", |s| {
            s.verified_segments >= 2
        })
        .await;
    }
    let head = network
        .coord
        .chain()
        .await
        .last()
        .expect("segments")
        .sequence;

    network.coord.stop().await;
    let before = viewer.stats();
    let away = tokio::time::Instant::now();
    let left = leaving.stop().await.expect("the leaving viewer stops");
    let left_at = unix_ms();
    eprintln!("coordinator outage: a viewer left {left:?}");
    let queued_before = until_held_back(&network, &viewer, &before, 3).await;
    // Away for longer than the coordinator's node liveness: when it is back, every node's
    // last heartbeat is too old and it must come back by heartbeats alone.
    eventually(
        "every node's last heartbeat to be older than the liveness",
        || async {
            let nodes = network.coord.storage.list_nodes().await.ok()?;
            let stale_before = i64::try_from(unix_ms()).ok()? - NODE_LIVENESS_MS;
            nodes
                .iter()
                .all(|n| n.last_heartbeat_ms.is_none_or(|t| t < stale_before))
                .then_some(())
        },
    )
    .await;
    // And past the deadline of the epoch the leaving viewer signed its last receipt in.
    let left_deadline = (left_at / EPOCH_MS + 1) * EPOCH_MS + 1_000;
    tokio::time::sleep(Duration::from_millis(
        (left_deadline + 500).saturating_sub(unix_ms()),
    ))
    .await;
    eprintln!(
        "coordinator outage: away {:.1} s",
        away.elapsed().as_secs_f64()
    );
    let cut_away = i64::try_from(queued_reports(&network) - queued_before).expect("count");
    let received_away = viewer.stats().segments;
    network.coord.start().await;
    let back = tokio::time::Instant::now();
    eventually("the backlog to be delivered", || async {
        let newest = network.coord.chain().await.last()?.published_ms;
        let age = i64::try_from(unix_ms()).ok()? - newest;
        (age < 6_000).then_some(())
    })
    .await;
    let caught_up = back.elapsed();
    let recovered_ms = unix_ms();
    let delivered = network.coord.chain().await.last().map_or(0, |s| s.sequence) - head;
    eprintln!(
        "coordinator outage: {delivered} reports from the journal, caught up {:.1} s after the \
         coordinator came back",
        caught_up.as_secs_f64()
    );

    // Everything cut during the outage arrives, in order, without a gap, and the origin's
    // reports go on after it.
    until_chain_reaches(
        &network.coord,
        head + cut_away + 3,
        Duration::from_secs(120),
    )
    .await;
    let chain = network.coord.chain().await;
    assert_contiguous(&chain);
    until_recovered(&network, &viewer, &before, received_away, recovered_ms).await;
    // The receipts the relay kept through the outage (the leaving viewer's only one, signed
    // in an epoch whose fixed deadline passed during it) count where they were signed: none
    // was refused as late, and the leaving viewer's bytes are on record.
    let left_epoch = i64::try_from(left_at / EPOCH_MS).expect("epoch");
    let mut booked = Vec::new();
    for epoch in [left_epoch - 1, left_epoch] {
        booked.extend(
            network
                .coord
                .storage
                .receipts_for_epoch(epoch)
                .await
                .expect("receipts"),
        );
    }
    assert!(
        booked
            .iter()
            .any(|r| u64::try_from(r.bytes_total).ok() == Some(left.verified_bytes)),
        "the leaving viewer's receipt ({} bytes) is not booked where it was signed: {:?}",
        left.verified_bytes,
        booked
            .iter()
            .map(|r| (r.epoch, r.bytes_total))
            .collect::<Vec<_>>()
    );
    let metrics = metrics_of(&network.coord).await;
    assert!(
        metrics.contains("streamr_receipts_late_total 0\n"),
        "receipts refused as late:\n{}\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("streamr_receipts"))
            .collect::<Vec<_>>()
            .join("\n"),
        network.logs()
    );
    let stats = viewer.stop().await.expect("viewer stops");
    eprintln!("coordinator outage: viewer {stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert_eq!(stats.skipped_segments, 0, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    network.coord.assert_not_penalised(relay).await;
    let origin_exit = network
        .origin
        .as_mut()
        .and_then(|origin| origin.0.try_wait().ok().flatten());
    assert!(
        origin_exit.is_none(),
        "the origin exited: {}",
        network.logs()
    );
    network.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn a_relay_started_before_its_coordinator_joins_when_it_appears() {
    let mut network = Network::start(90, true, 0).await;
    let relay = network.relay_id().await;
    assert!(network.relay.0.try_wait().expect("status").is_none());
    let viewer = start_viewer(&network.coord);
    until_viewer(
        &viewer,
        "the viewer to verify segments through the relay",
        |s| s.verified_segments >= 2 && s.nodes_used.contains(&relay),
    )
    .await;
    viewer.stop().await.expect("viewer stops");
    network.kill_origin();
    network.coord.stop().await;
}

/// The coordinator's `/metrics` text.
async fn metrics_of(coord: &Coord) -> String {
    reqwest::get(format!("{}/metrics", coord.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The coordinator's `/readyz` status.
async fn readiness(coord: &Coord) -> Option<reqwest::StatusCode> {
    Some(
        reqwest::get(format!("{}/readyz", coord.url()))
            .await
            .ok()?
            .status(),
    )
}

/// The coordinator process keeps running while its PostgreSQL database is away (every
/// connection ended, none let in, as in a server restart or a network fault) for longer than
/// the node liveness and past an epoch's receipt deadline. It says it is not ready meanwhile,
/// comes back by itself when the database does, and loses nothing: the origin's journal fills
/// the chain without a gap, the silence is recorded as an outage so that no receipt the relay
/// kept through it is refused as late, the viewer verifies what it received, nobody is
/// penalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg and PostgreSQL"]
async fn a_database_outage_under_a_running_coordinator_loses_nothing() {
    let database = streamr_test_support::postgres::PgDatabase::create().await;
    let mut network = Network::start_on(Some(&database.url), 100, false, 0).await;
    let relay = network.relay_id().await;
    let viewer = start_viewer(&network.coord);
    until_viewer(&viewer, "the viewer to verify segments", |s| {
        s.verified_segments >= 2 && s.receipts_accepted >= 1
    })
    .await;
    let head = network
        .coord
        .chain()
        .await
        .last()
        .expect("segments")
        .sequence;
    let before = viewer.stats();

    database.cut_off().await;
    let cut_at = unix_ms();
    eventually("the coordinator to say it is not ready", || async {
        (readiness(&network.coord).await? == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    // Requests that need the database are told to come back, not that the server broke.
    let refused = reqwest::get(format!("{}/streams/{STREAM}", network.coord.url()))
        .await
        .expect("the coordinator answers");
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value =
        serde_json::from_str(&refused.text().await.expect("a body")).expect("a JSON error");
    assert_eq!(body["error"], "storage_unavailable", "{body}");
    until_held_back(&network, &viewer, &before, 2).await;
    // Away past the node liveness and past the receipt deadline of the epoch the cut began in.
    let deadline = (cut_at / EPOCH_MS + 1) * EPOCH_MS + 1_000;
    let until = deadline.max(cut_at + NODE_LIVENESS_MS as u64) + 1_000;
    tokio::time::sleep(Duration::from_millis(until.saturating_sub(unix_ms()))).await;
    let received_away = viewer.stats().segments;
    assert!(
        network
            .origin
            .as_mut()
            .is_some_and(|origin| origin.0.try_wait().ok().flatten().is_none()),
        "the origin exited: {}",
        network.logs()
    );
    database.restore().await;
    let back = tokio::time::Instant::now();
    eprintln!(
        "database outage: away {:.1} s",
        (unix_ms() - cut_at) as f64 / 1000.0
    );

    eventually("the coordinator to be ready again", || async {
        (readiness(&network.coord).await? == reqwest::StatusCode::OK).then_some(())
    })
    .await;
    eventually("the backlog to be delivered", || async {
        let newest = network.coord.chain().await.last()?.published_ms;
        let age = i64::try_from(unix_ms()).ok()? - newest;
        (age < 6_000).then_some(())
    })
    .await;
    let recovered_ms = unix_ms();
    eprintln!(
        "database outage: ready and caught up {:.1} s after the database came back",
        back.elapsed().as_secs_f64()
    );
    until_chain_reaches(&network.coord, head + 4, Duration::from_secs(120)).await;
    assert_contiguous(&network.coord.chain().await);
    until_recovered(&network, &viewer, &before, received_away, recovered_ms).await;
    let metrics = metrics_of(&network.coord).await;
    let counters = metrics
        .lines()
        .filter(|l| l.starts_with("streamr_receipts") || l.starts_with("streamr_coordinator"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        metrics.contains("streamr_coordinator_outages_total 1\n"),
        "the silence was not recorded as one outage:\n{counters}"
    );
    assert!(
        metrics.contains("streamr_receipts_late_total 0\n"),
        "receipts refused as late:\n{counters}\n{}",
        network.logs()
    );
    let stats = viewer.stop().await.expect("viewer stops");
    eprintln!("database outage: viewer {stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert_eq!(stats.skipped_segments, 0, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    network.coord.assert_not_penalised(relay).await;
    network.coord.stop().await;
}
