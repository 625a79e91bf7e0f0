//! The load tool's RTMP publisher and players (our sans-IO client session over tokio) against a
//! real peer: nginx with the RTMP module.

mod common;

use std::process::Stdio;

use common::*;

#[test]
#[ignore = "interop: needs nginx with the RTMP module and ffmpeg"]
fn publishes_to_and_plays_from_nginx_rtmp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _nginx = start_nginx_rtmp(dir.path(), port);
    let source = make_flv(dir.path(), 4);
    let url = format!("rtmp://127.0.0.1:{port}/live/interop");

    let _publisher = Running(
        load_tool()
            .arg("publish")
            .arg(&source)
            .arg(&url)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting streamr-load publish"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let report = play(&url, 4, 5, dir.path());

    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["max_playing"], 4, "{report}");
    assert_eq!(
        report["never_started"], 0,
        "every player saw a keyframe: {report}"
    );
    assert!(
        report["total_bytes"].as_u64().unwrap_or(0) > 50_000,
        "{report}"
    );
    // The publisher announces its clock in onMetaData; nginx copies it, so players measure the
    // hop latency on loopback: well under a second.
    let latency = report["latency_ms"]["p50"]
        .as_f64()
        .expect("latency measured");
    assert!((0.0..1000.0).contains(&latency), "{report}");
}
