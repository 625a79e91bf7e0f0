//! Captions end to end with real peers: ffmpeg publishes a stream with a text subtitle track
//! (its FLV muxer writes each caption as an `onTextData` data message) to an origin, an edge
//! relay pulls it, and ffprobe plays it from both over RTMP and HTTP-FLV: every player gets the
//! captions, with their text, in order and in time with the media; the relay's players get the
//! origin's packets, and its HLS segments (which leave the captions out) have the origin's
//! hashes.

use crate::common;
use common::{loopback, PullOnPlay};

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{HttpServer, LiveHlsConfig, SegmentNotice};
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::server::{RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use tokio::process::{Child, Command};

/// Seconds of stream published.
const SECONDS: u32 = 5;
/// One caption every this many milliseconds, the first at this time too.
const CAPTION_EVERY_MS: u32 = 200;

/// An SRT file with a caption `caption N` every [`CAPTION_EVERY_MS`], each shown 100 ms.
fn write_captions(path: &std::path::Path) {
    let timestamp = |ms: u32| format!("00:00:{:02},{:03}", ms / 1_000, ms % 1_000);
    let mut srt = String::new();
    for n in 1..SECONDS * 1_000 / CAPTION_EVERY_MS {
        let start = n * CAPTION_EVERY_MS;
        srt.push_str(&format!(
            "{n}\n{} --> {}\ncaption {n}\n\n",
            timestamp(start),
            timestamp(start + 100)
        ));
    }
    std::fs::write(path, srt).expect("write the captions");
}

/// ffmpeg publishing the test pattern, a tone and the captions of `srt` in real time.
fn publish_with_captions(srt: &std::path::Path, url: &str) -> Child {
    common::require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .arg("-i")
        .arg(srt)
        .args(["-t", &SECONDS.to_string()])
        .args(["-map", "0", "-map", "1", "-map", "2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-c:s", "text", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// ffprobe playing `url` until the stream ends: every packet's stream type and timestamp, and
/// a subtitle packet's bytes.
fn probe_packets(url: &str) -> Child {
    common::require_tool("ffprobe");
    Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000"])
        .args(["-show_entries", "packet=codec_type,pts,data", "-show_data"])
        .args(["-of", "json", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffprobe")
}

/// What one player got: the captions' timestamps and texts, and the media packets'
/// timestamps (milliseconds, FLV's time base).
#[derive(Debug, Default, PartialEq)]
struct Played {
    captions: Vec<(i64, String)>,
    media: Vec<i64>,
}

/// The bytes of an ffprobe `-show_data` hex dump (`00000000: 6361 7074  capt`).
fn hex_dump_bytes(dump: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in dump.lines() {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        // The hex columns end where the two spaces before the text start.
        let hex = rest.split("  ").next().unwrap_or_default();
        for group in hex.split_whitespace() {
            for pair in group.as_bytes().chunks(2) {
                let pair = std::str::from_utf8(pair).unwrap_or_default();
                if let Ok(byte) = u8::from_str_radix(pair, 16) {
                    bytes.push(byte);
                }
            }
        }
    }
    bytes
}

async fn played(name: &str, player: Child) -> Played {
    let output = tokio::time::timeout(Duration::from_secs(30), player.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name}: ffprobe did not finish"))
        .expect("ffprobe ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name}: ffprobe failed: {stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut played = Played::default();
    for packet in json["packets"].as_array().into_iter().flatten() {
        let pts = packet["pts"].as_i64().unwrap_or(i64::MIN);
        match packet["codec_type"].as_str() {
            Some("subtitle") => {
                let text = hex_dump_bytes(packet["data"].as_str().unwrap_or_default());
                played
                    .captions
                    .push((pts, String::from_utf8_lossy(&text).into_owned()));
            }
            Some("video") | Some("audio") => played.media.push(pts),
            _ => {}
        }
    }
    played
}

/// Every caption from the first the player got to its last is there once, with its text,
/// in order, at its time in the published stream (ffmpeg shifts the whole stream by the
/// AAC encoder delay, the same for every caption), and within the media the player got.
/// `edge` is `origin` from some packet on, in order, until the shorter of the two ends: the
/// servers shut down together, and a busy machine can leave either player a few packets short
/// of the other. Nine in ten of `edge`'s packets must be compared.
fn continues<T: PartialEq>(origin: &[T], edge: &[T]) -> bool {
    edge.is_empty()
        || (0..origin.len()).any(|start| {
            let rest = &origin[start..];
            let same = rest.iter().zip(edge).take_while(|(a, b)| a == b).count();
            same == rest.len().min(edge.len()) && same * 10 >= edge.len() * 9
        })
}

fn assert_captions(name: &str, played: &Played) {
    let captions = &played.captions;
    assert!(
        captions.len() >= 8,
        "{name}: {} captions: {played:?}",
        captions.len()
    );
    let numbers: Vec<u32> = captions
        .iter()
        .map(|(_, text)| {
            text.strip_prefix("caption ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name}: caption text {text:?}"))
        })
        .collect();
    let first = numbers[0];
    let expected: Vec<u32> = (first..first + numbers.len() as u32).collect();
    assert_eq!(numbers, expected, "{name}: every caption once, in order");
    let shift = captions[0].0 - i64::from(first * CAPTION_EVERY_MS);
    assert!((0..100).contains(&shift), "{name}: shifted by {shift} ms");
    for ((pts, _), n) in captions.iter().zip(&numbers) {
        assert_eq!(
            *pts,
            i64::from(n * CAPTION_EVERY_MS) + shift,
            "{name}: caption {n}"
        );
    }
    let (Some(first_media), Some(last_media)) = (played.media.first(), played.media.last()) else {
        panic!("{name}: no media");
    };
    assert!(
        captions[0].0 >= *first_media - 100 && captions[captions.len() - 1].0 <= *last_media,
        "{name}: captions {}..{} outside the media {first_media}..{last_media}",
        captions[0].0,
        captions[captions.len() - 1].0
    );
}

/// The segment notices `notices` holds now, by start timestamp.
fn notices_now(
    notices: &mut tokio::sync::broadcast::Receiver<SegmentNotice>,
) -> std::collections::BTreeMap<u64, SegmentNotice> {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut out = std::collections::BTreeMap::new();
    loop {
        match notices.try_recv() {
            Ok(notice) => {
                out.insert(notice.start_timestamp_ms, notice);
            }
            Err(TryRecvError::Lagged(_)) => {}
            Err(_) => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg and ffprobe"]
async fn captions_reach_rtmp_and_http_flv_players_of_the_origin_and_of_a_relay() {
    // 1 s segments, so that a few close within the stream on both nodes.
    let hls = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 2);
    let (origin_hub, origin, origin_http) = common::start_relay_and_http(hls.clone()).await;
    let edge_hub = RelayHub::default();
    let puller = UpstreamPuller::new(
        edge_hub.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{}", origin.local_addr())],
            ..UpstreamConfig::default()
        },
    );
    let edge = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(PullOnPlay(puller.clone())),
        edge_hub.clone(),
    )
    .await
    .expect("edge starts");
    let edge_http = HttpServer::start(loopback(), edge_hub.clone(), hls)
        .await
        .expect("edge HTTP starts");
    let mut origin_segments = origin_http.hls().segment_notices();
    let mut edge_segments = edge_http.hls().segment_notices();

    let scratch = common::Scratch::new();
    let srt = scratch.path("captions.srt");
    write_captions(&srt);
    let key = StreamKey::parse("live", "captions").unwrap();
    let publisher = publish_with_captions(
        &srt,
        &format!("rtmp://{}/live/captions", origin.local_addr()),
    );
    assert!(
        common::wait_until(Duration::from_secs(15), || origin_hub
            .stream_stats(&key)
            .is_some_and(|s| s.publishing && s.frames_in > 10))
        .await,
        "ffmpeg publishes to the origin"
    );
    let origin_rtmp = probe_packets(&format!("rtmp://{}/live/captions", origin.local_addr()));
    let origin_flv = probe_packets(&format!(
        "http://{}/live/captions.flv",
        origin_http.local_addr()
    ));
    let edge_rtmp = probe_packets(&format!("rtmp://{}/live/captions", edge.local_addr()));
    assert!(
        common::wait_until(Duration::from_secs(10), || edge_hub.is_publishing(&key)).await,
        "the edge pulls the stream"
    );
    let edge_flv = probe_packets(&format!(
        "http://{}/live/captions.flv",
        edge_http.local_addr()
    ));

    let (status, stderr) = common::finish(publisher, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg publish failed: {stderr}"
    );
    // Let the players drain, then close every connection so that they finish.
    tokio::time::sleep(Duration::from_millis(800)).await;
    edge.shutdown().await;
    origin.shutdown().await;
    let mut plays = Vec::new();
    for (name, player) in [
        ("origin RTMP", origin_rtmp),
        ("origin HTTP-FLV", origin_flv),
        ("edge RTMP", edge_rtmp),
        ("edge HTTP-FLV", edge_flv),
    ] {
        let played = played(name, player).await;
        assert_captions(name, &played);
        plays.push((name, played));
    }
    // Each relay player got the origin's packets from where it started, in the same order:
    // what the origin's player of the same protocol got after the same first packets.
    for (edge, origin) in [(&plays[2], &plays[0]), (&plays[3], &plays[1])] {
        let (edge_name, edge) = (edge.0, &edge.1);
        assert!(
            continues(&origin.1.media, &edge.media)
                && continues(&origin.1.captions, &edge.captions),
            "{edge_name} got other packets than the {}",
            origin.0
        );
    }

    // The captions are left out of HLS: the relay's segments are the origin's, byte for byte.
    let (origin_segments, edge_segments) = (
        notices_now(&mut origin_segments),
        notices_now(&mut edge_segments),
    );
    let mut compared = 0;
    for (start, notice) in &edge_segments {
        let Some(at_origin) = origin_segments.get(start) else {
            continue;
        };
        assert_eq!(notice.hash, at_origin.hash, "MPEG-TS segment at {start} ms");
        let ll = |n: &SegmentNotice| n.ll.as_ref().map(|ll| (ll.hash, ll.part_hashes.clone()));
        assert_eq!(ll(notice), ll(at_origin), "fMP4 segment at {start} ms");
        compared += 1;
    }
    assert!(
        compared >= 2,
        "compared {compared} segments: the edge cut {edge_segments:?}"
    );
    drop((origin_http, edge_http));
}
