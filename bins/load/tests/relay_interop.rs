//! The load tool against our own node: RTMP, HTTP-FLV and HLS players on one relayed stream.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::*;
use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::server::{RelayServer, RelayServerConfig};

#[test]
#[ignore = "interop: needs ffmpeg (makes the input)"]
fn rtmp_http_flv_and_hls_players_all_receive_the_stream() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (rtmp, http) = runtime.block_on(async {
        let rtmp = RelayServer::start(RelayServerConfig::default().with_bind(loopback))
            .await
            .expect("RTMP relay starts");
        let http = HttpServer::start(loopback, rtmp.hub().clone(), LiveHlsConfig::default())
            .await
            .expect("HTTP server starts");
        (rtmp, http)
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let source = make_flv(dir.path(), 4);
    let publish_url = format!("rtmp://{}/live/load", rtmp.local_addr());
    let _publisher = Running(
        load_tool()
            .arg("publish")
            .arg(&source)
            .arg(&publish_url)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting streamr-load publish"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let rtmp_report = play(&publish_url, 8, 4, dir.path());
    assert_eq!(rtmp_report["failed"], 0, "{rtmp_report}");
    assert_eq!(rtmp_report["never_started"], 0, "{rtmp_report}");
    let latency = rtmp_report["latency_ms"]["p50"].as_f64().expect("latency");
    assert!((0.0..1000.0).contains(&latency), "{rtmp_report}");

    let flv_url = format!("http://{}/live/load.flv", http.local_addr());
    let flv_report = play(&flv_url, 8, 4, dir.path());
    assert_eq!(flv_report["failed"], 0, "{flv_report}");
    assert_eq!(flv_report["never_started"], 0, "{flv_report}");
    assert!(
        flv_report["total_bytes"].as_u64().unwrap_or(0) > 8 * 20_000,
        "{flv_report}"
    );
    // HTTP-FLV hop latency, read from the stamps the publisher puts in the video frames.
    let latency = flv_report["latency_ms"]["p50"]
        .as_f64()
        .expect("HTTP-FLV latency");
    assert!((0.0..1000.0).contains(&latency), "{flv_report}");

    let hls_url = format!("http://{}/live/load.m3u8", http.local_addr());
    let hls_report = play(&hls_url, 4, 8, dir.path());
    assert_eq!(hls_report["failed"], 0, "{hls_report}");
    assert_eq!(hls_report["never_started"], 0, "{hls_report}");

    runtime.block_on(async {
        http.shutdown().await;
        rtmp.shutdown().await;
    });
}
