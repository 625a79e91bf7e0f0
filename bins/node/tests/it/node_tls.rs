//! The `streamr-node` binary over TLS with real clients: ffmpeg publishes and plays over
//! `rtmps://` and plays HLS over `https://`, verifying the node's certificate against a test CA;
//! curl fetches the playlist; a renewed certificate is served without a restart, after the
//! reload interval or at once on SIGHUP.

use crate::common;

use common::{eventually, Child};

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;

use streamr_tls::testing::{served_leaf, TestPki};
use tokio::process::Command;

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

struct TlsNode {
    _process: Child,
    rtmps: SocketAddr,
    https: SocketAddr,
    pid: u32,
}

fn start_node(dir: &Path, pki: &TestPki, reload_interval: &str) -> TlsNode {
    let (rtmp, rtmps, http, https) = (free_addr(), free_addr(), free_addr(), free_addr());
    let files = pki.files();
    let process = std::process::Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args(["--rtmp-listen", &rtmp.to_string()])
        .args(["--rtmps-listen", &rtmps.to_string()])
        .args(["--http-listen", &http.to_string()])
        .args(["--https-listen", &https.to_string()])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .args(["--tls-reload-interval", reload_interval])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .expect("start streamr-node");
    let pid = process.id();
    TlsNode {
        _process: Child(process),
        rtmps,
        https,
        pid,
    }
}

/// ffmpeg reads `frames` video frames from `url`, verifying the server against `ca`.
async fn ffmpeg_reads(url: &str, ca: &Path, frames: u32) -> bool {
    Command::new("timeout")
        .args([
            "30",
            "ffmpeg",
            "-v",
            "error",
            "-tls_verify",
            "1",
            "-ca_file",
        ])
        .arg(ca)
        .args([
            "-i",
            url,
            "-frames:v",
            &frames.to_string(),
            "-f",
            "null",
            "-",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// ffmpeg publishing a test pattern to `url` for `seconds`, verifying the server against `ca`.
fn ffmpeg_publishes(url: &str, ca: &Path, seconds: u32) -> Child {
    Child(
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x180:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=440"])
            .args(["-t", &seconds.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .args(["-c:a", "aac", "-f", "flv", "-tls_verify", "1", "-ca_file"])
            .arg(ca)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg is required (Debian package ffmpeg)"),
    )
}

/// curl fetches `url` verifying the server against `ca`; the body on HTTP 200.
async fn curl(url: &str, ca: &Path) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg and curl"]
async fn ffmpeg_publishes_and_plays_over_rtmps_and_https_and_renewals_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    let ca = pki.ca_file();
    let node = start_node(dir.path(), &pki, "200ms");
    let served = eventually("the node to answer TLS on RTMPS", || {
        served_leaf(node.rtmps, pki.ca_der())
    })
    .await;
    assert_eq!(
        served, first,
        "RTMPS presents the certificate from --tls-cert"
    );

    let rtmps_url = format!("rtmps://127.0.0.1:{}/live/show", node.rtmps.port());
    let _publisher = ffmpeg_publishes(&rtmps_url, &ca, 120);
    eventually("ffmpeg to play the stream over RTMPS", || async {
        ffmpeg_reads(&rtmps_url, &ca, 25).await.then_some(())
    })
    .await;

    let playlist_url = format!("https://127.0.0.1:{}/live/show.m3u8", node.https.port());
    let playlist = eventually(
        "curl to fetch a playlist with segments over HTTPS",
        || async {
            curl(&playlist_url, &ca)
                .await
                .filter(|body| body.contains("#EXTINF"))
        },
    )
    .await;
    assert!(playlist.starts_with("#EXTM3U"), "playlist: {playlist}");
    assert!(
        ffmpeg_reads(&playlist_url, &ca, 25).await,
        "ffmpeg plays the HLS stream over HTTPS"
    );
    // HTTP-FLV over TLS: the handler takes the TLS connection over and writes it itself.
    let flv_url = format!("https://127.0.0.1:{}/live/show.flv", node.https.port());
    assert!(
        ffmpeg_reads(&flv_url, &ca, 25).await,
        "ffmpeg plays the HTTP-FLV stream over HTTPS"
    );

    let renewed = pki.issue().unwrap();
    assert_ne!(renewed, first);
    eventually("the renewed certificate on HTTPS", || async {
        (served_leaf(node.https, pki.ca_der()).await? == renewed).then_some(())
    })
    .await;
    eventually("the renewed certificate on RTMPS", || async {
        (served_leaf(node.rtmps, pki.ca_der()).await? == renewed).then_some(())
    })
    .await;
    assert!(
        ffmpeg_reads(&rtmps_url, &ca, 25).await,
        "players connect over RTMPS after the renewal, without a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_a_renewed_certificate_in_service_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    // Far longer than the test: only SIGHUP can make the node notice the new files.
    let node = start_node(dir.path(), &pki, "1h");
    let served = eventually("the node to answer HTTPS", || {
        served_leaf(node.https, pki.ca_der())
    })
    .await;
    assert_eq!(served, first);

    let renewed = pki.issue().unwrap();
    let hangup = Command::new("kill")
        .args(["-HUP", &node.pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(hangup.success());
    eventually("the renewed certificate after SIGHUP", || async {
        (served_leaf(node.https, pki.ca_der()).await? == renewed).then_some(())
    })
    .await;
    assert_eq!(
        served_leaf(node.rtmps, pki.ca_der()).await,
        Some(renewed),
        "RTMPS shares the renewed certificate"
    );
}
