//! Who may play at an origin (`--origin-play`), with real processes: an in-process coordinator
//! (SQLite), origins as `streamr-node` processes, ffmpeg publishing and playing, a relay node.
//!
//! With the default (`relays-and-granted`) an anonymous player is refused at the origin (RTMP:
//! the play fails with a status; HTTP: 403 JSON), a relay of an unregistered node is refused,
//! a registered friend node still relays, and a viewer with a coordinator grant for the origin
//! plays. `--origin-play public` serves anyone, as before.

use crate::common;

use common::{eventually, ffmpeg_plays, ffmpeg_publish, Child};

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::grant_token;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{KeyPair, NodeId, SessionGrant, SessionId, Signed, StreamId};
use streamr_media::client::{ClientError, RtmpClient};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_node::{relay_token, CoordinatorConfig, Node, NodeConfig};

const ADMIN: &str = "origin-play-admin";

fn reserve_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// An origin process and its addresses.
struct Origin {
    _child: Child,
    node_id: NodeId,
    rtmp: SocketAddr,
    http: SocketAddr,
}

fn spawn_origin(dir: &Path, name: &str, coordinator: &str, extra: &[&str]) -> Origin {
    let identity = dir.join(format!("{name}.key"));
    let node_id = streamr_node::identity::load_or_create(&identity)
        .expect("identity")
        .node_id();
    let (rtmp, http) = (reserve_port(), reserve_port());
    let child = Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args(["--rtmp-listen", &rtmp.to_string()])
        .args(["--http-listen", &http.to_string()])
        .arg("--identity")
        .arg(&identity)
        .args(["--coordinator", coordinator])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamr-node starts");
    Origin {
        _child: Child(child),
        node_id,
        rtmp,
        http,
    }
}

/// A grant for `node` to play `stream`, signed by `coordinator`.
fn grant(coordinator: &KeyPair, node: NodeId, stream: &str) -> Signed<SessionGrant> {
    let grant = SessionGrant {
        session_id: SessionId::from_bytes(rand::random()),
        viewer: KeyPair::generate(&mut rand::rngs::OsRng).viewer_key(),
        node_id: node,
        stream_id: StreamId::new(stream).expect("stream id"),
        max_bytes: 1 << 30,
        expiry_ms: unix_ms() + 60_000,
    };
    Signed::sign(grant, coordinator)
}

/// The RTMP play refusal of `url`, if refused.
async fn rtmp_refusal(url: &str) -> Option<String> {
    let url = RtmpUrl::parse(url).expect("URL");
    match RtmpClient::play(&url).await {
        Err(error @ ClientError::Refused { .. }) => Some(error.to_string()),
        Err(other) => panic!("unexpected RTMP error: {other}"),
        Ok(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg and curl"]
async fn an_origin_serves_only_relays_and_granted_viewers_unless_public() {
    let dir = tempfile::tempdir().unwrap();
    let storage = common::sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let coordinator_key = config.coordinator_key.clone();
    let server = common::serve_on_loopback(&Coordinator::new(config, storage)).await;
    let url = server.url();
    let admin = CoordinatorClient::new(&url)
        .unwrap()
        .with_admin_token(ADMIN);
    let show_key = admin
        .create_stream("show", "Show")
        .await
        .unwrap()
        .stream_key;
    let open_key = admin
        .create_stream("open", "Open")
        .await
        .unwrap()
        .stream_key;

    // Two origins: the default one and a public one, each publishing its own stream.
    let origin = spawn_origin(dir.path(), "origin", &url, &[]);
    let public = spawn_origin(dir.path(), "public", &url, &["--origin-play", "public"]);
    for node in [&origin, &public] {
        let rtmp = node.rtmp;
        eventually("an origin to listen", || async move {
            tokio::net::TcpStream::connect(rtmp).await.ok()
        })
        .await;
    }
    let _show = ffmpeg_publish(
        &format!("rtmp://{}/live/show?key={show_key}", origin.rtmp),
        60,
    );
    let _open = ffmpeg_publish(
        &format!("rtmp://{}/live/open?key={open_key}", public.rtmp),
        60,
    );
    for (node, stream) in [(&origin, "show"), (&public, "open")] {
        let signed = grant(&coordinator_key, node.node_id, stream);
        let granted =
            grant_token::with_grant(&format!("http://{}/live/{stream}.m3u8", node.http), &signed);
        eventually("the origin's playlist", || {
            let granted = granted.clone();
            async move {
                let response = reqwest::get(&granted).await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
    }

    // Anonymous players are refused by the default origin: HTTP with 403 JSON, RTMP with a status.
    for path in ["show.m3u8", "show.flv", "show/index.m3u8"] {
        let response = reqwest::get(format!("http://{}/live/{path}", origin.http))
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN, "{path}");
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"], "origin_play_refused", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("relays and granted viewers"),
            "{body}"
        );
    }
    let bare = format!("rtmp://{}/live/show", origin.rtmp);
    let refusal = rtmp_refusal(&bare)
        .await
        .expect("anonymous RTMP play refused");
    assert!(
        refusal.contains("NetStream.Play.StreamNotFound"),
        "{refusal}"
    );
    assert!(refusal.contains("granted viewers"), "{refusal}");
    assert!(
        !ffmpeg_plays(&bare, 5),
        "ffmpeg plays anonymously at the origin"
    );

    // A well-signed relay token from a node the coordinator does not know is refused too.
    let stranger = KeyPair::generate(&mut rand::rngs::OsRng);
    let stranger_url = format!(
        "{bare}?{}={}",
        relay_token::RELAY_PARAM,
        relay_token::make(&stranger, "show", unix_ms())
    );
    let refusal = rtmp_refusal(&stranger_url).await.expect("stranger refused");
    assert!(refusal.contains("not registered"), "{refusal}");

    // A viewer with a coordinator grant for the origin plays (RTMP and HLS); a grant for the
    // wrong node does not.
    let signed = grant(&coordinator_key, origin.node_id, "show");
    assert!(
        ffmpeg_plays(&grant_token::with_grant(&bare, &signed), 10),
        "a granted viewer plays RTMP at the origin"
    );
    let granted_hls =
        grant_token::with_grant(&format!("http://{}/live/show.m3u8", origin.http), &signed);
    assert!(ffmpeg_plays(&granted_hls, 10), "a granted viewer plays HLS");
    let elsewhere = grant(&coordinator_key, public.node_id, "show");
    let response = reqwest::get(grant_token::with_grant(
        &format!("http://{}/live/show.flv", origin.http),
        &elsewhere,
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);

    // A registered friend node still relays the stream to its routed viewers.
    let relay = Node::start(NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        identity: dir.path().join("relay.key"),
        heartbeat_interval: Duration::from_millis(500),
        upstreams: vec![format!("rtmp://{}", origin.rtmp)],
        coordinator: Some(CoordinatorConfig {
            url: url.clone(),
            key: Some(coordinator_key.coordinator_key()),
        }),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let relay_id = relay.node_id().to_string();
    eventually("the relay's heartbeat", || async {
        let node = admin.node(&relay_id).await.ok()?;
        (node.active && node.last_heartbeat_ms.is_some()).then_some(())
    })
    .await;
    let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let play = admin.play("show", &viewer.viewer_key()).await.unwrap();
    assert_eq!(play.node_id, relay.node_id());
    assert!(ffmpeg_plays(&play.rtmp_url, 25), "RTMP via the relay");

    // `--origin-play public` serves anyone, as before.
    let response = reqwest::get(format!("http://{}/live/open.m3u8", public.http))
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(
        ffmpeg_plays(&format!("rtmp://{}/live/open", public.rtmp), 10),
        "anyone plays at a public origin"
    );

    relay.shutdown().await;
    let _ = server.shutdown().await;
}
