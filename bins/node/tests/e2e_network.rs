//! The friend-node network end to end on loopback, with real peers: an in-process coordinator
//! (SQLite, short epochs, the HTTP prober), an in-process origin, three friend nodes as
//! `streamr-node` processes (each in its own 127.0.N.0/24), ffmpeg publishing the shipped sample
//! with the stream key, viewers of the viewer library and a plain ffmpeg player on a grant URL.
//!
//! Checked: every viewer plays verified content; friend nodes serve the viewers' bytes (origin
//! offload); killing a friend mid-stream moves its viewers to another node within seconds and it
//! earns nothing after it died; settled epochs pay the nodes that served in proportion to their
//! verified bytes plus their discounted unattested bytes (viewers that handed them no receipt,
//! such as the ffmpeg player and the probes). No viewer sees a segment the origin did not report.
//! Start-up, fail-over and relay-hop figures are printed for docs/benchmarks.md and held to
//! generous bounds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::workers::HttpProber;
use streamr_coord::{CoordConfig, Coordinator, RateLimit};
use streamr_core::{EpochInputs, KeyPair, NodeId, SettlementConfig, PPM};
use streamr_media::client::RtmpClient;
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_node::viewer::{ReceiptDelivery, Viewer, ViewerConfig, ViewerStats};
use streamr_node::{CoordinatorConfig, Node, NodeConfig};
use tokio::process::{Child, Command};

const ADMIN: &str = "e2e-network-admin";
const EPOCH: Duration = Duration::from_secs(10);
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/sample.flv");
/// The friends' pull idle timeout (`--pull-idle-timeout`; 30 s by default): shorter, so that
/// the viewers' pulls have outlived it by the time the epoch the run waits for anyway is
/// settled, and the run checks the relays' content after that (with the default the run waited
/// about 15 s longer for it).
const PULL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The sample's segment duration.
const SEGMENT: Duration = Duration::from_secs(4);

/// A friend node process.
struct Friend {
    name: String,
    child: Child,
    node_id: Option<NodeId>,
}

/// Upper bound asserted on a viewer's start-up at a cold friend (measured: about 4 s).
const STARTUP_BOUND_S: f64 = 15.0;
/// Upper bound asserted on the median added latency of one relay hop (measured: about 51 ms,
/// the friend's 50 ms batch cap).
const HOP_BOUND_MS: f64 = 250.0;
/// Upper bound asserted from the kill of a friend to its viewers verifying segments elsewhere,
/// and on each moved viewer's own gap (measured: 0.4-0.6 s; 1.5-4 s on a loaded machine, the
/// more the sooner after a segment's end the kill comes: the moved viewers wait for the next).
const FAILOVER_BOUND_S: f64 = 10.0;

fn spawn_friend(
    dir: &Path,
    index: u8,
    origin: &str,
    coordinator: &str,
    coordinator_key: &str,
) -> Friend {
    let name = format!("friend-{index}");
    let ip = format!("127.0.{index}.1");
    let child = Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args(["--rtmp-listen", &format!("{ip}:0")])
        .args(["--http-listen", &format!("{ip}:0")])
        .arg("--identity")
        .arg(dir.join(format!("{name}.key")))
        .args(["--upstream", origin])
        .args(["--coordinator", coordinator])
        .args(["--coordinator-public-key", coordinator_key])
        .args(["--operator", &name])
        .args(["--payout-address", &format!("{name}-wallet")])
        .args(["--heartbeat-interval", "1s"])
        .arg("--pull-idle-timeout")
        .arg(humantime::format_duration(PULL_IDLE_TIMEOUT).to_string())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("streamr-node starts");
    Friend {
        name,
        child,
        node_id: None,
    }
}

fn ffmpeg_publish(url: &str) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            SAMPLE,
        ])
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)")
}

/// Plays `url` with ffmpeg for `seconds` into `out`; returns the video packets it recorded.
async fn ffmpeg_play(url: &str, seconds: u32, out: &Path) -> u64 {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", url])
        .args(["-t", &seconds.to_string(), "-c", "copy", "-y"])
        .arg(out)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(60), status)
        .await
        .expect("ffmpeg player finishes")
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg player failed on {url}");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(out)
        .output()
        .await
        .expect("ffprobe runs");
    String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Arrival time of each video timestamp on an RTMP player, for `duration`.
async fn arrivals(url: &RtmpUrl, duration: Duration) -> BTreeMap<u32, Instant> {
    let mut player = RtmpClient::play(url).await.expect("RTMP play starts");
    let mut seen = BTreeMap::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_secs(5), player.next_event()).await
        else {
            break;
        };
        if let ClientEvent::Media {
            kind: MediaKind::Video,
            timestamp,
            ..
        } = event
        {
            seen.entry(timestamp).or_insert_with(Instant::now);
        }
    }
    seen
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn viewers_play_through_friends_survive_a_node_death_and_earnings_follow_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let mut settlement = SettlementConfig::default();
    settlement.rewards.operator_cap_ppm = 1_000_000;
    settlement.rewards.subnet_cap_ppm = 1_000_000;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        epoch_length: EPOCH,
        settlement_grace: Duration::from_secs(1),
        node_liveness: Duration::from_secs(4),
        settlement,
        rate_limit: Some(RateLimit {
            per_second: 10_000,
            burst: 10_000,
        }),
        ..CoordConfig::default()
    };
    let coordinator_key = config.coordinator_key.clone();
    let prober =
        HttpProber::new(storage.clone(), coordinator_key.clone()).every(Duration::from_secs(2));
    let coordinator = Coordinator::new(config, storage.clone()).with_probe_runner(Arc::new(prober));
    let workers = coordinator.spawn_workers();
    let server = common::serve_on_loopback(&coordinator).await;
    let coord_url = server.url();
    let admin = CoordinatorClient::new(&coord_url)
        .expect("client")
        .with_admin_token(ADMIN);
    let created = admin
        .create_stream("show", "end to end")
        .await
        .expect("stream created");

    let origin = Node::start(NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().expect("address"),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        identity: dir.path().join("origin.key"),
        coordinator: Some(CoordinatorConfig {
            url: coord_url.clone(),
            key: Some(coordinator_key.coordinator_key()),
        }),
        ..NodeConfig::default()
    })
    .await
    .expect("origin starts");
    let origin_rtmp = format!("rtmp://{}", origin.rtmp_addr());
    let key_hex = coordinator_key.coordinator_key().to_string();
    let mut friends: Vec<Friend> = (1..=3)
        .map(|i| spawn_friend(dir.path(), i, &origin_rtmp, &coord_url, &key_hex))
        .collect();
    let _publisher = ffmpeg_publish(&format!(
        "{origin_rtmp}/live/show?key={}",
        created.stream_key
    ));

    // Friends registered; the origin reports segment hashes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = admin.nodes().await.expect("nodes");
        for friend in &mut friends {
            friend.node_id = nodes
                .iter()
                .find(|n| n.operator == friend.name && n.active)
                .and_then(|n| n.id.parse().ok());
        }
        let segments = admin.segments("show", 5).await.expect("segments");
        if friends.iter().all(|f| f.node_id.is_some()) && !segments.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "network did not come up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let friend_ids: Vec<NodeId> = friends.iter().filter_map(|f| f.node_id).collect();
    // The origin holds no admin token: its signed publish check bound it as the stream's
    // origin, and the segments above are its signed reports.
    assert_eq!(
        admin.stream("show").await.expect("stream").origin_node,
        Some(origin.node_id().to_string()),
    );

    // Viewers: four of the viewer library (two hand receipts to their node), one ffmpeg.
    let viewers: Vec<Viewer> = (0..4)
        .map(|i| {
            let delivery = if i % 2 == 0 {
                ReceiptDelivery::Coordinator
            } else {
                ReceiptDelivery::Node
            };
            let mut config = ViewerConfig::new(&coord_url, "show").with_receipts(delivery);
            config.stall_timeout = Duration::from_secs(6);
            Viewer::start(config, None).expect("viewer starts")
        })
        .collect();
    let ffmpeg_viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let play = admin
        .play("show", &ffmpeg_viewer.viewer_key())
        .await
        .expect("routed");
    assert!(
        friend_ids.contains(&play.node_id),
        "routed to a friend node"
    );
    let recording = dir.path().join("ffmpeg.flv");

    // Added latency of one relay hop: the same frames on the origin and on a friend.
    let hop_viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let hop_play = admin
        .play("show", &hop_viewer.viewer_key())
        .await
        .expect("routed");
    // The origin serves only relays and granted viewers: the measuring player holds a grant.
    let origin_grant = streamr_core::Signed::sign(
        streamr_core::SessionGrant {
            node_id: origin.node_id(),
            ..hop_play.grant.body.clone()
        },
        &coordinator_key,
    );
    let origin_url = RtmpUrl::parse(&streamr_coord::grant_token::with_grant(
        &format!("{origin_rtmp}/live/show"),
        &origin_grant,
    ))
    .expect("URL");
    let friend_url = RtmpUrl::parse(&hop_play.rtmp_url).expect("URL");

    // By when every friend that serves a viewer pulls the stream.
    let pulls_started = std::sync::OnceLock::new();
    let viewers_verified = |segments: u64| {
        let viewers = &viewers;
        wait_for(
            "every viewer to verify segments",
            Duration::from_secs(40),
            move || {
                let stats: Vec<ViewerStats> = viewers.iter().map(Viewer::stats).collect();
                stats
                    .iter()
                    .all(|s| s.verified_segments >= segments)
                    .then_some(stats)
            },
        )
    };
    // The ffmpeg player, the viewers and the hop measurement run side by side: each only
    // waits on the live stream, so none of them waits out another's seconds. The hop is
    // measured once every viewer plays (so the friends pull the stream), while the viewers
    // verify their next segments.
    let (ffmpeg_frames, ((at_origin, at_friend), stats)) =
        tokio::join!(ffmpeg_play(&play.http_flv_url, 8, &recording), async {
            viewers_verified(1).await;
            pulls_started.get_or_init(Instant::now);
            tokio::join!(
                async {
                    tokio::join!(
                        arrivals(&origin_url, Duration::from_secs(6)),
                        arrivals(&friend_url, Duration::from_secs(6))
                    )
                },
                // Every viewer plays verified content.
                viewers_verified(3)
            )
        });
    assert!(
        ffmpeg_frames >= 150,
        "ffmpeg recorded {ffmpeg_frames} frames of 8 s"
    );
    for s in &stats {
        assert!(s.receipts_accepted > 0, "receipts accepted: {s:?}");
        assert_eq!(s.unverified_segments, 0, "unverified content: {s:?}");
    }
    let startups: Vec<f64> = stats
        .iter()
        .filter_map(|s| s.startup.map(|d| d.as_secs_f64()))
        .collect();
    eprintln!("viewer start-up (s): {startups:?}");
    // Bounds generous enough for a loaded machine; the figures docs/benchmarks.md quotes are
    // what the runs printed. A cold friend must cut one 4 s segment after pulling the stream.
    assert_eq!(startups.len(), stats.len(), "every viewer started");
    assert!(
        startups.iter().all(|s| *s <= STARTUP_BOUND_S),
        "viewer start-up within {STARTUP_BOUND_S} s: {startups:?}"
    );

    // Origin offload: the viewers' bytes came from friend nodes.
    let (friend_bytes, all_bytes) = stats.iter().fold((0u64, 0u64), |(f, a), s| {
        let friends: u64 = s
            .verified_bytes_by_node
            .iter()
            .filter(|(node, _)| friend_ids.contains(node))
            .map(|(_, b)| *b)
            .sum();
        (f + friends, a + s.bytes)
    });
    let offload = friend_bytes as f64 / all_bytes.max(1) as f64;
    eprintln!(
        "origin offload: {:.1}% of {all_bytes} viewer bytes",
        offload * 100.0
    );
    assert!(offload >= 0.9, "offload {offload}");

    // The relay hop's added latency, from the measurement above.
    let hop_ms: Vec<f64> = at_friend
        .iter()
        .filter_map(|(ts, friend_at)| {
            let origin_at = at_origin.get(ts)?;
            Some(friend_at.duration_since(*origin_at).as_secs_f64() * 1000.0)
        })
        .collect();
    assert!(hop_ms.len() > 50, "{} frames seen on both", hop_ms.len());
    let hop_median = median(hop_ms.clone());
    eprintln!(
        "relay hop: median {hop_median:.1} ms over {} frames",
        hop_ms.len()
    );
    assert!(
        hop_median <= HOP_BOUND_MS,
        "relay hop median {hop_median:.1} ms within {HOP_BOUND_MS} ms"
    );

    // Kill the friend serving the most viewers.
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for s in viewers.iter().map(Viewer::stats) {
        if let Some(node) = s.node {
            *load.entry(node).or_default() += 1;
        }
    }
    let (victim_id, _) = load
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, n)| (*id, *n))
        .expect("viewers have nodes");
    let victim = friends
        .iter_mut()
        .find(|f| f.node_id == Some(victim_id))
        .expect("the victim is a friend");
    let before: Vec<(bool, u64)> = viewers
        .iter()
        .map(Viewer::stats)
        .map(|s| (s.node == Some(victim_id), s.verified_segments))
        .collect();
    victim.child.kill().await.expect("kill the node");
    let killed_ms = unix_ms();
    let killed_at = Instant::now();
    eprintln!("killed {} ({victim_id})", victim.name);
    let moved = wait_for(
        "viewers of the dead node to continue elsewhere",
        Duration::from_secs(30),
        || {
            let now: Vec<ViewerStats> = viewers.iter().map(Viewer::stats).collect();
            now.iter()
                .zip(&before)
                .all(|(s, (was_on_victim, segments))| {
                    !was_on_victim
                        || (s.node.is_some_and(|n| n != victim_id)
                            && s.verified_segments > *segments)
                })
                .then_some(now)
        },
    )
    .await;
    let recovered = killed_at.elapsed();
    let gaps: Vec<f64> = moved
        .iter()
        .zip(&before)
        .filter(|(_, (was_on_victim, _))| *was_on_victim)
        .filter_map(|(s, _)| s.last_failover_gap.map(|d| d.as_secs_f64()))
        .collect();
    eprintln!(
        "fail-over: all moved viewers verified new segments {:.1} s after the kill; gaps {gaps:?}",
        recovered.as_secs_f64()
    );
    assert!(
        recovered.as_secs_f64() <= FAILOVER_BOUND_S,
        "moved viewers verified new segments within {FAILOVER_BOUND_S} s of the kill: {recovered:?}"
    );
    assert!(
        !gaps.is_empty(),
        "the moved viewers report their fail-over gap"
    );
    assert!(
        gaps.iter().all(|g| *g <= FAILOVER_BOUND_S),
        "fail-over gaps within {FAILOVER_BOUND_S} s: {gaps:?}"
    );

    // Settle epochs until one that starts after the death (plus the liveness window) is done.
    let epoch_ms = EPOCH.as_millis() as u64;
    let after_death = (killed_ms + 4_000) / epoch_ms + 1;
    // And until the viewers' relay pulls have run for longer than their idle timeout, with
    // three segments to play after it.
    let pulls_started = *pulls_started.get().expect("the viewers played");
    tokio::time::sleep_until((pulls_started + PULL_IDLE_TIMEOUT + 3 * SEGMENT).into()).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while storage
        .get_settlement(after_death as i64)
        .await
        .expect("storage")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "epoch {after_death} never settled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Viewers kept verifying the origin's content all along (relays' segments stay the
    // origin's, also after their pull has run for longer than its idle timeout).
    for ((viewer, earlier), (was_on_victim, _)) in viewers.iter().zip(&moved).zip(&before) {
        let now = viewer.stats();
        assert!(
            now.verified_segments >= earlier.verified_segments + 3,
            "a viewer stopped verifying after the fail-over: {earlier:?} then {now:?}"
        );
        assert_eq!(
            now.unverified_segments, 0,
            "a viewer got content the origin never published: {now:?}"
        );
        // Across the fail-over the media goes on where it stopped: no segment played twice
        // (which a player shows as timestamps jumping back), none left out.
        assert_eq!(
            now.repeated_segments, 0,
            "a viewer played segments twice: {now:?}"
        );
        assert_eq!(now.skipped_segments, 0, "a viewer missed segments: {now:?}");
        if *was_on_victim {
            assert!(
                now.resumes_matched >= 1 && now.resumes_unmatched == 0,
                "a moved viewer resumed right after its last segment: {now:?}"
            );
        }
    }
    for viewer in viewers {
        viewer.stop().await.expect("viewer stops cleanly");
    }

    let victim_text = victim_id.to_string();
    let settlements = storage.list_settlements(100).await.expect("settlements");
    let mut proportional_epochs = 0;
    for settlement in &settlements {
        let epoch = settlement.epoch;
        let rewards: BTreeMap<String, i64> = storage
            .ledger_for_epoch(epoch)
            .await
            .expect("ledger")
            .into_iter()
            .filter(|e| e.kind == "reward")
            .filter_map(|e| Some((e.node_id?, e.amount)))
            .fold(BTreeMap::new(), |mut acc, (node, amount)| {
                *acc.entry(node).or_default() += amount;
                acc
            });
        let usage: BTreeMap<String, i64> = storage
            .usage_for_epoch(epoch)
            .await
            .expect("usage")
            .into_iter()
            .map(|u| (u.node_id, u.bytes))
            .collect();
        // Each node's unattested bytes (sessions that handed it no receipt) as the rewards
        // count them: within its probe capacity, at the discount.
        let inputs: EpochInputs =
            serde_json::from_str(&settlement.inputs_json).expect("settlement inputs");
        let discount = u128::from(inputs.config.rewards.unattested_discount_ppm);
        let unattested: BTreeMap<String, i64> = inputs
            .nodes
            .iter()
            .map(|n| {
                let counted = u128::from(n.unattested_bytes.min(n.probe_capacity_bytes));
                let credit = counted * discount / u128::from(PPM);
                (
                    n.node_id.to_string(),
                    i64::try_from(credit).unwrap_or(i64::MAX),
                )
            })
            .filter(|(_, credit)| *credit > 0)
            .collect();
        // Only nodes that served verified or unattested bytes are paid.
        for (node, amount) in &rewards {
            assert!(
                *amount == 0
                    || usage.get(node).copied().unwrap_or(0) > 0
                    || unattested.contains_key(node),
                "epoch {epoch}: {node} paid {amount} without serving"
            );
        }
        if epoch as u64 >= after_death {
            assert_eq!(
                rewards.get(&victim_text).copied().unwrap_or(0),
                0,
                "epoch {epoch}: the dead node earned"
            );
            assert_eq!(usage.get(&victim_text).copied().unwrap_or(0), 0);
        }
        // Where no node was penalized or had bytes dropped, rewards follow verified bytes plus
        // discounted unattested bytes, each scaled by the node's availability (the share of its
        // probes it passed) and probation weight, as the formula scales them. Requiring every
        // probe to pass instead made the check depend on the machine's load: on a loaded
        // machine some probes time out in nearly every epoch.
        let mut credited = usage.clone();
        for (node, credit) in &unattested {
            *credited.entry(node.clone()).or_default() += credit;
        }
        let evidence = storage.evidence_for_epoch(epoch).await.expect("evidence");
        let probes = storage.probes_for_epoch(epoch).await.expect("probes");
        let clean = credited.keys().all(|node| {
            evidence.iter().filter(|e| &e.node_id == node).all(|e| {
                ["probation", "whitewashing", "unattested_ratio"].contains(&e.rule.as_str())
            })
        });
        let weighted: BTreeMap<String, f64> = credited
            .iter()
            .map(|(node, bytes)| {
                let scale = inputs
                    .nodes
                    .iter()
                    .find(|n| &n.node_id.to_string() == node)
                    .map_or(0.0, |n| {
                        n.availability_ppm as f64 / PPM as f64 * n.probation_ppm as f64 / PPM as f64
                    });
                (node.clone(), *bytes as f64 * scale)
            })
            .collect();
        let paid: i64 = rewards.values().sum();
        let weight: f64 = weighted.values().sum();
        if clean && paid > 0 && weight > 0.0 && weighted.values().filter(|w| **w > 0.0).count() >= 2
        {
            for (node, served) in &weighted {
                let weight_share = served / weight;
                let reward_share = rewards.get(node).copied().unwrap_or(0) as f64 / paid as f64;
                assert!(
                    (weight_share - reward_share).abs() < 0.15,
                    "epoch {epoch}: {node} served {weight_share:.2} of the availability-weighted bytes, got {reward_share:.2} of the rewards"
                );
            }
            proportional_epochs += 1;
        }
        let failed = probes.iter().filter(|p| !p.hash_ok || p.timed_out).count();
        eprintln!(
            "epoch {epoch}: rewards {rewards:?} usage {usage:?} unattested credit {unattested:?}; {} probes, {failed} failed; evidence {:?}",
            probes.len(),
            evidence.iter().map(|e| (&e.node_id[..8], &e.rule)).collect::<Vec<_>>()
        );
    }
    assert!(
        proportional_epochs >= 1,
        "no settled epoch paid several unflagged nodes"
    );

    for friend in &mut friends {
        let _ = friend.child.kill().await;
    }
    origin.shutdown().await;
    let _ = server.shutdown().await;
    workers.shutdown().await;
}
