//! Every program in `examples/` runs here, driven by in-process clients on loopback, so none
//! rots: each example is compiled into this test as a module and its entry function called.
#![allow(dead_code)] // the examples' `main`s

#[path = "../../examples/edge_relay.rs"]
mod edge_relay;
#[path = "../../examples/flv_to_hls.rs"]
mod flv_to_hls;
#[path = "../../examples/relay_auth.rs"]
mod relay_auth;
#[path = "../../examples/session_by_hand.rs"]
mod session_by_hand;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::{ClientEvent, MediaKind, RelayServer, RelayServerConfig, RtmpClient, RtmpUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv")
}

fn url(text: String) -> RtmpUrl {
    RtmpUrl::parse(&text).expect("a valid RTMP URL")
}

#[tokio::test]
async fn relay_auth_lets_only_the_key_publish_and_only_tokens_play() {
    let hooks = relay_auth::KeyAndToken {
        publish_key: "s3cret".into(),
        play_token: "t0ken".into(),
    };
    let server = relay_auth::start("127.0.0.1:0".parse().expect("address"), hooks)
        .await
        .expect("the relay starts");
    let at = |query: &str| url(format!("rtmp://{}/live/show?{query}", server.local_addr()));
    assert!(RtmpClient::publish(&at("key=guess")).await.is_err());
    let _publisher = RtmpClient::publish(&at("key=s3cret"))
        .await
        .expect("the key holder publishes");
    assert!(RtmpClient::play(&at("token=forged")).await.is_err());
    assert!(RtmpClient::play(&at("")).await.is_err());
    RtmpClient::play(&at("token=t0ken"))
        .await
        .expect("a token holder plays");
    server.shutdown().await;
}

#[tokio::test]
async fn session_by_hand_counts_what_a_publisher_sends() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        session_by_hand::serve_one(listener)
            .await
            .map_err(|e| e.to_string())
    });
    let mut publisher = RtmpClient::publish(&url(format!("rtmp://{addr}/live/demo")))
        .await
        .expect("the session accepts the publish");
    for timestamp in [0, 40, 80] {
        let keyframe = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65, 0x88]);
        publisher
            .send_media(MediaKind::Video, timestamp, keyframe)
            .await
            .expect("send a frame");
    }
    publisher.close().await.expect("close");
    let (messages, bytes) = timeout(Duration::from_secs(10), server)
        .await
        .expect("the session ends with the publish")
        .expect("the task ran")
        .expect("the session succeeded");
    assert_eq!((messages, bytes), (3, 21));
}

#[test]
fn flv_to_hls_writes_a_vod_playlist_and_its_segments() {
    let out = tempfile::tempdir().expect("temporary directory");
    let segments = flv_to_hls::remux(&sample(), out.path()).expect("the sample remuxes");
    assert!(segments >= 2, "{segments} segments");
    let playlist = std::fs::read_to_string(out.path().join("index.m3u8")).expect("a playlist");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    assert_eq!(playlist.matches("#EXTINF").count() as u64, segments);
    let files = std::fs::read_dir(out.path()).expect("list").count() as u64;
    assert_eq!(files, segments + 1);
}

/// `GET path` over HTTP/1.1; the whole response.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    if socket.write_all(request.as_bytes()).await.is_ok() {
        let _ = socket.read_to_end(&mut response).await;
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relay_pulls_the_origin_on_demand_and_checks_tokens_on_every_path() {
    let origin =
        RelayServer::start(RelayServerConfig::default().with_bind(([127, 0, 0, 1], 0).into()))
            .await
            .expect("the origin starts");
    let source = FlvSource::read(&sample()).expect("the sample");
    let stop = CancellationToken::new();
    let publish_url = url(format!("rtmp://{}/live/demo", origin.local_addr()));
    let options = PublishOptions::looped(stop.clone());
    let publisher = tokio::spawn(async move { publish_flv(&source, &publish_url, &options).await });
    let origin_url = format!("rtmp://{}", origin.local_addr());
    let (rtmp, http, puller) =
        edge_relay::start(&origin_url, "t0ken", ("127.0.0.1:0", "127.0.0.1:0"))
            .await
            .expect("the edge starts");

    // Without the token nothing is served, over HTTP or RTMP, and nothing is pulled.
    let refused = get(http.local_addr(), "/live/demo.m3u8?token=guess").await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("wrong token"), "{refused}");
    let rtmp_at = |query: &str| url(format!("rtmp://{}/live/demo{query}", rtmp.local_addr()));
    assert!(RtmpClient::play(&rtmp_at("")).await.is_err());
    assert_eq!(puller.totals().pulls, 0);

    // An HLS GET with the token starts the pull; the segments it lists carry the token.
    let deadline = Instant::now() + Duration::from_secs(20);
    let playlist = loop {
        let response = get(http.local_addr(), "/live/demo.m3u8?token=t0ken").await;
        if response.contains("#EXTINF") {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "no HLS segment on the edge: {response}"
        );
        sleep(Duration::from_millis(200)).await;
    };
    assert!(playlist.starts_with("HTTP/1.1 200"), "{playlist}");
    assert!(playlist.contains(".ts?token=t0ken"), "{playlist}");

    // An RTMP player with the token joins the same pull and gets the origin's video.
    let mut player = RtmpClient::play(&rtmp_at("?token=t0ken"))
        .await
        .expect("the edge accepts the play");
    let video = timeout(Duration::from_secs(15), async {
        loop {
            match player.next_event().await.expect("the play goes on") {
                Some(ClientEvent::Media {
                    kind: MediaKind::Video,
                    ..
                }) => return,
                Some(_) => {}
                None => panic!("the edge closed the play"),
            }
        }
    });
    video.await.expect("video within 15 s");
    assert_eq!(
        puller.totals().pulls,
        1,
        "RTMP joined the HLS viewer's pull"
    );
    stop.cancel();
    let _ = publisher.await;
    http.shutdown().await;
    rtmp.shutdown().await;
    origin.shutdown().await;
}
