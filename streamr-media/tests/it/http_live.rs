//! Live delivery end to end: ffmpeg publishes RTMP to an in-process RelayServer; ffmpeg plays
//! the node's HLS and HTTP-FLV URLs; the playlist obeys the HLS rules while live and ends with
//! EXT-X-ENDLIST after the publisher leaves.

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use streamr_media::hls::{ParsedPlaylist, PlaylistHistory};
use streamr_media::http::LiveHlsConfig;
use streamr_test_support::ffmpeg::ffmpeg_publish_with_b_frames;
use streamr_test_support::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 GET: status, lower-cased headers and body (not chunked-decoded).
async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://player.example\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, response[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn publish(rtmp: SocketAddr, seconds: u32) -> Running {
    ffmpeg_publish_with_b_frames(&format!("rtmp://{rtmp}/live/cam"), seconds, Stdio::piped())
}

async fn play(url: String, seconds: &str) -> String {
    let seconds = seconds.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("ffmpeg")
            .args([
                "-nostdin", "-v", "error", "-i", &url, "-t", &seconds, "-f", "null", "-",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ffmpeg could not play {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_plays_live_hls_and_http_flv_from_an_rtmp_publish() {
    let mirror = tempfile::tempdir().unwrap();
    let config = LiveHlsConfig::default()
        .with_segments(Duration::from_secs(1), 2)
        .with_end_timing(Duration::from_millis(500), Duration::from_secs(30))
        .with_directory(mirror.path());
    let (_hub, rtmp, http) = common::start_relay_and_http(config).await;
    let base = format!("http://{}", http.local_addr());

    // Unknown streams: JSON 404s.
    let (status, headers, body) = get(http.local_addr(), "/live/cam.m3u8").await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["stream"], "live/cam");
    assert_eq!(get(http.local_addr(), "/live/cam.flv").await.0, 404);
    assert_eq!(get(http.local_addr(), "/live/cam/0.ts").await.0, 404);

    let mut publisher = publish(rtmp.local_addr(), 14);
    let mut notices = http.hls().segment_notices();

    // The first segments appear; every version of the playlist obeys the rules.
    let mut history = PlaylistHistory::new();
    let mut parsed = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, headers, body) = get(http.local_addr(), "/live/cam.m3u8").await;
        if status != 200 {
            continue;
        }
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        let playlist = history.observe(&String::from_utf8(body).unwrap()).unwrap();
        if playlist.segments.len() >= 3 {
            parsed = Some(playlist);
            break;
        }
    }
    if parsed.is_none() {
        let _ = publisher.0.kill();
        let output = publisher.0.wait_with_output_ref();
        panic!("no live playlist with 3 segments; publisher said: {output}");
    }
    let parsed = parsed.unwrap();
    let first = &parsed.segments[0];
    let (status, headers, body) = get(http.local_addr(), &format!("/live/{}", first.uri)).await;
    assert_eq!(status, 200, "segment {}", first.uri);
    assert_eq!(header(&headers, "content-type"), Some("video/mp2t"));
    assert!(header(&headers, "cache-control")
        .unwrap()
        .contains("immutable"));
    assert_eq!(body.len() % 188, 0);
    let notice = notices.recv().await.unwrap();
    assert_eq!(notice.key.name, "cam");
    assert_eq!(notice.len % 188, 0);

    // Real players: HLS and HTTP-FLV play for a few seconds without a message.
    let (hls_errors, alias_errors, flv_errors) = tokio::join!(
        play(format!("{base}/live/cam.m3u8"), "3"),
        play(format!("{base}/live/cam/index.m3u8"), "3"),
        play(format!("{base}/live/cam.flv"), "3"),
    );
    assert_eq!(hls_errors.trim(), "", "HLS playback reported errors");
    assert_eq!(
        alias_errors.trim(),
        "",
        "HLS playback through the index.m3u8 alias reported errors"
    );
    assert_eq!(flv_errors.trim(), "", "HTTP-FLV playback reported errors");
    // The alias names its segments from its own directory.
    let (status, _, alias) = get(http.local_addr(), "/live/cam/index.m3u8").await;
    assert_eq!(status, 200);
    let alias = String::from_utf8(alias).unwrap();
    let first = alias
        .lines()
        .find(|line| !line.starts_with('#') && !line.is_empty())
        .expect("a segment");
    assert!(!first.contains('/'), "{alias}");
    let (status, _, _) = get_head_only(http.local_addr(), &format!("/live/cam/{first}")).await;
    assert_eq!(status, 200, "{first} from the alias's directory");
    let (status, headers, _) = get_head_only(http.local_addr(), "/live/cam.flv").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("video/x-flv"));

    // The publisher ends: after the grace period the playlist ends too.
    let status = tokio::task::spawn_blocking(move || publisher.0.wait().map(|s| s.success()))
        .await
        .unwrap();
    assert!(status.unwrap_or(false), "publisher failed");
    let mut ended = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, _, body) = get(http.local_addr(), "/live/cam.m3u8").await;
        assert_eq!(status, 200);
        let playlist = history.observe(&String::from_utf8(body).unwrap()).unwrap();
        if playlist.ended {
            ended = true;
            break;
        }
    }
    assert!(ended, "playlist never got EXT-X-ENDLIST");
    let last = ParsedPlaylist::parse(
        &String::from_utf8(get(http.local_addr(), "/live/cam.m3u8").await.2).unwrap(),
    )
    .unwrap();
    last.check_window().unwrap();

    // The directory mirror holds the same playlist and only the kept segments.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mirrored = std::fs::read_to_string(mirror.path().join("live/cam.m3u8")).unwrap();
    assert_eq!(ParsedPlaylist::parse(&mirrored).unwrap(), last);
    for segment in &last.segments {
        let path = mirror.path().join("live").join(&segment.uri);
        assert!(path.is_file(), "{} not mirrored", path.display());
    }
    // The TS segments kept beside the LL-HLS rendition's files (its parts and fMP4 segments
    // share the directory and have their own window).
    let files = std::fs::read_dir(mirror.path().join("live/cam"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "ts"))
        .count();
    assert!(
        files <= last.segments.len() + 3,
        "{files} TS segment files kept"
    );
    assert!(
        !mirror.path().join("live/cam/0.ts").exists(),
        "old segments are deleted"
    );
    let last_sequence = last.segments.last().unwrap().sequence;

    // Published again: a new live playlist continues the media sequence.
    let _publisher = publish(rtmp.local_addr(), 6);
    let mut resumed = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, _, body) = get(http.local_addr(), "/live/cam.m3u8").await;
        if status != 200 {
            continue;
        }
        let playlist = ParsedPlaylist::parse(&String::from_utf8(body).unwrap()).unwrap();
        if !playlist.ended {
            resumed = Some(playlist);
            break;
        }
    }
    let resumed = resumed.expect("a republished stream gets a live playlist again");
    assert!(
        resumed.media_sequence > last_sequence,
        "media sequence went back"
    );

    http.shutdown().await;
    rtmp.shutdown().await;
}

/// Reads only the response head of a streaming response.
async fn get_head_only(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, ()) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, ())
}

trait ChildOutput {
    fn wait_with_output_ref(&mut self) -> String;
}

impl ChildOutput for Child {
    fn wait_with_output_ref(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}
