//! The friend-node network end to end on loopback: an in-process coordinator (SQLite), an
//! origin node and a relay node (the `streamr_node` library), ffmpeg publishing with the
//! coordinator's stream key, and ffmpeg playing through the relay (whose first upstream is
//! dead) with the grant URL the coordinator routed it to.

use crate::common;

use common::{eventually, ffmpeg_plays, ffmpeg_publish};

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::grant_token;
use streamr_coord::wire::ReceiptsRequest;
use streamr_coord::workers::HttpProber;
use streamr_coord::{CoordConfig, Coordinator, ServeHandle, Storage};
use streamr_core::{segment_hash, KeyPair, SessionGrant, Signed, ViewerReceipt};
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};

const ADMIN: &str = "node-network-admin";

struct Network {
    url: String,
    storage: Arc<dyn Storage>,
    coordinator_key: KeyPair,
    config: CoordConfig,
    workers: Option<streamr_coord::Workers>,
    dir: tempfile::TempDir,
    server: Option<ServeHandle>,
}

impl Network {
    async fn start() -> Network {
        let dir = tempfile::tempdir().unwrap();
        let storage = common::sqlite_storage(dir.path()).await;
        let config = CoordConfig {
            admin_token: Some(ADMIN.into()),
            ..CoordConfig::default()
        };
        let coordinator_key = config.coordinator_key.clone();
        let prober =
            HttpProber::new(storage.clone(), coordinator_key.clone()).every(Duration::from_secs(1));
        let coordinator =
            Coordinator::new(config.clone(), storage.clone()).with_probe_runner(Arc::new(prober));
        let server = common::serve_on_loopback(&coordinator).await;
        let url = server.url();
        Network {
            url,
            storage,
            coordinator_key,
            config,
            workers: Some(coordinator.spawn_workers()),
            dir,
            server: Some(server),
        }
    }

    fn node_config(&self, name: &str) -> NodeConfig {
        NodeConfig {
            rtmp_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            identity: self.dir.path().join(format!("{name}.key")),
            heartbeat_interval: Duration::from_millis(500),
            operator: name.into(),
            payout_address: format!("0x{name}"),
            ..NodeConfig::default()
        }
    }

    async fn origin(&self) -> RunningNode {
        Node::start(NodeConfig {
            coordinator: Some(CoordinatorConfig {
                url: self.url.clone(),
                key: None,
            }),
            ..self.node_config("origin")
        })
        .await
        .unwrap()
    }

    async fn relay(&self, origin: &RunningNode) -> RunningNode {
        Node::start(NodeConfig {
            // The first upstream is dead: pulls fail over to the live origin.
            upstreams: vec![
                format!("rtmp://{}", dead_upstream()),
                format!("rtmp://{}", origin.rtmp_addr()),
            ],
            coordinator: Some(CoordinatorConfig {
                url: self.url.clone(),
                key: Some(self.coordinator_key.coordinator_key()),
            }),
            ..self.node_config("relay")
        })
        .await
        .unwrap()
    }

    async fn stop(mut self) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown().await;
        }
        if let Some(server) = self.server.take() {
            let _ = server.shutdown().await;
        }
    }
}

/// An address nothing listens on.
fn dead_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn a_routed_viewer_plays_through_a_relay_node_with_its_grant() {
    let network = Network::start().await;
    let admin = CoordinatorClient::new(&network.url)
        .unwrap()
        .with_admin_token(ADMIN);
    let api = CoordinatorClient::new(&network.url).unwrap();
    let stream_key = admin
        .create_stream("show", "Show")
        .await
        .unwrap()
        .stream_key;

    let origin = network.origin().await;
    let relay = network.relay(&origin).await;

    // The relay's heartbeats make it live on the coordinator.
    let relay_id = relay.node_id().to_string();
    eventually("the relay's heartbeat", || async {
        let node = api.node(&relay_id).await.ok()?;
        (node.active && node.last_heartbeat_ms.is_some()).then_some(())
    })
    .await;

    // A publisher with a wrong key is refused by the origin; the right key publishes.
    let wrong = format!("rtmp://{}/live/show?key=wrong", origin.rtmp_addr());
    let refused = Command::new("timeout")
        .args(["20", "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .args(["testsrc2=size=160x90:rate=10", "-t", "3", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-f", "flv", &wrong])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!refused.success(), "a wrong stream key must not publish");
    let _publisher = ffmpeg_publish(
        &format!("rtmp://{}/live/show?key={stream_key}", origin.rtmp_addr()),
        40,
    );

    // The origin's segment hashes reach the coordinator and match what the origin serves.
    let segments = eventually("origin segment reports", || async {
        let segments = api.segments("show", 10).await.ok()?;
        (!segments.is_empty()).then_some(segments)
    })
    .await;
    let first = &segments[segments.len() - 1];
    // The origin serves only relays and granted viewers: a grant for the origin itself.
    let origin_grant = Signed::sign(
        SessionGrant {
            session_id: streamr_core::SessionId::from_bytes([9; 16]),
            viewer: KeyPair::generate(&mut rand::rngs::OsRng).viewer_key(),
            node_id: origin.node_id(),
            stream_id: streamr_core::StreamId::new("show").unwrap(),
            max_bytes: 1 << 30,
            expiry_ms: unix_ms() + 60_000,
        },
        &network.coordinator_key,
    );
    let served = reqwest::get(grant_token::with_grant(
        &format!(
            "http://{}/live/show/{}.ts",
            origin.http_addr(),
            first.sequence
        ),
        &origin_grant,
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(segment_hash(&served).to_string(), first.hash);
    // The LL-HLS rendition of the newest segment (the origin lists parts of recent segments
    // only): its fMP4 segment and each part hash as reported.
    let newest = &segments[0];
    let ll = newest
        .ll
        .as_ref()
        .expect("the origin reports the LL-HLS rendition");
    let fetch = |path: String| {
        let url = grant_token::with_grant(
            &format!("http://{}/live/show/{path}", origin.http_addr()),
            &origin_grant,
        );
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap()
        }
    };
    let whole = fetch(format!("{}.m4s", newest.sequence)).await;
    assert_eq!(segment_hash(&whole).to_string(), ll.hash);
    assert_eq!(i64::try_from(whole.len()).unwrap(), ll.len);
    let mut joined = Vec::new();
    for (index, part_hash) in ll.part_hashes.iter().enumerate() {
        let part = fetch(format!("{}.{index}.m4s", newest.sequence)).await;
        assert_eq!(&segment_hash(&part).to_string(), part_hash, "part {index}");
        joined.extend_from_slice(&part);
    }
    assert_eq!(joined, whole, "the parts make the segment");

    // The coordinator routes a viewer to the relay with grant-carrying URLs that play.
    let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let play = api.play("show", &viewer.viewer_key()).await.unwrap();
    assert_eq!(play.node_id, relay.node_id());
    assert!(
        ffmpeg_plays(&play.http_flv_url, 25),
        "HTTP-FLV via the relay"
    );
    assert!(ffmpeg_plays(&play.rtmp_url, 25), "RTMP via the relay");

    // Without a grant, or with one the coordinator did not sign, the relay refuses.
    let bare_flv = format!("http://{}/live/show.flv", relay.http_addr());
    let response = reqwest::get(&bare_flv).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "grant_refused");
    let forged = Signed::sign(
        SessionGrant {
            node_id: relay.node_id(),
            ..play.grant.body.clone()
        },
        &KeyPair::generate(&mut rand::rngs::OsRng),
    );
    let forged_flv = grant_token::with_grant(&bare_flv, &forged);
    let response = reqwest::get(&forged_flv).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    let bare_rtmp = format!("rtmp://{}/live/show", relay.rtmp_addr());
    assert!(!ffmpeg_plays(&bare_rtmp, 5), "RTMP without a grant");
    assert!(
        !ffmpeg_plays(&grant_token::with_grant(&bare_rtmp, &forged), 5),
        "RTMP with a forged grant"
    );

    // HLS through the relay: the playlist's segments carry the grant too.
    let playlist = reqwest::get(&play.hls_url).await.unwrap();
    assert!(playlist.status().is_success(), "{}", playlist.status());
    let playlist = playlist.text().await.unwrap();
    let segment = playlist
        .lines()
        .find(|line| line.ends_with(".ts") || line.contains(".ts?"))
        .expect("a segment in the relay's playlist");
    assert!(segment.contains("grant="), "{segment}");

    // LL-HLS through the relay, which started pulling the stream for this viewer: every part of
    // every complete segment it lists is a part the origin reported (the segment the relay
    // opened at the keyframe it joined at is not listed), so a viewer verifies all it fetches.
    let ll_url = play
        .hls_url
        .replacen("/live/show.m3u8", "/live/show/ll.m3u8", 1);
    let ll_playlist = reqwest::get(&ll_url).await.unwrap();
    assert!(
        ll_playlist.status().is_success(),
        "{}",
        ll_playlist.status()
    );
    let ll_playlist = ll_playlist.text().await.unwrap();
    let mut pending_parts = Vec::new();
    let mut complete_parts = Vec::new();
    for line in ll_playlist.lines() {
        if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
            let uri = attributes
                .split("URI=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a part URI");
            pending_parts.push(uri.to_string());
        } else if line.starts_with("#EXTINF:") {
            complete_parts.append(&mut pending_parts);
        }
    }
    assert!(!complete_parts.is_empty(), "{ll_playlist}");
    let mut relay_part_hashes = Vec::new();
    for uri in &complete_parts {
        assert!(uri.contains("grant="), "{uri}");
        let url = match uri.strip_prefix('/') {
            Some(path) => format!("http://{}/{path}", relay.http_addr()),
            None => format!("http://{}/live/show/{uri}", relay.http_addr()),
        };
        let response = reqwest::get(&url).await.unwrap();
        assert!(
            response.status().is_success(),
            "{uri}: {}",
            response.status()
        );
        relay_part_hashes.push(segment_hash(&response.bytes().await.unwrap()).to_string());
    }
    eventually("the relay's parts among the origin's reports", || async {
        let reported: Vec<String> = api
            .segments("show", 100)
            .await
            .ok()?
            .into_iter()
            .filter_map(|segment| segment.ll)
            .flat_map(|ll| ll.part_hashes)
            .collect();
        relay_part_hashes
            .iter()
            .all(|hash| reported.contains(hash))
            .then_some(())
    })
    .await;

    // A viewer's receipt handed to the relay reaches the coordinator with the next heartbeat.
    let latest = &api.segments("show", 1).await.unwrap()[0];
    let receipt = Signed::sign(
        ViewerReceipt {
            session_id: play.grant.body.session_id,
            seq: 1,
            bytes_total: 100_000,
            last_segment_seq: u64::try_from(latest.sequence).unwrap(),
            segments_digest: latest.digest.parse().unwrap(),
            t_ms: unix_ms(),
        },
        &viewer,
    );
    let answer = reqwest::Client::new()
        .post(format!("http://{}/receipts", relay.http_addr()))
        .body(
            serde_json::to_vec(&ReceiptsRequest {
                receipts: vec![receipt],
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    eventually("the receipt at the coordinator", || async {
        let totals = network.storage.totals().await.ok()?;
        (totals.receipts >= 1).then_some(())
    })
    .await;

    // The coordinator's prober fetched a segment from the honest relay and it passed.
    let epoch = network.config.epoch_of(i64::try_from(unix_ms()).unwrap());
    let probe = eventually("a passing probe of the relay", || async {
        let probes = network.storage.probes_for_epoch(epoch).await.ok()?;
        probes
            .into_iter()
            .find(|p| p.node_id == relay_id && p.hash_ok && !p.timed_out)
    })
    .await;
    assert!(probe.hash_ok);

    // Shutting down deregisters the relay.
    relay.shutdown().await;
    assert!(!api.node(&relay_id).await.unwrap().active);
    origin.shutdown().await;
    network.stop().await;
}
