//! LL-HLS over HTTP from a live RTMP publish: the playlist passes the spec checker, blocking
//! reload holds a request until the asked-for part exists and answers at once when it does, a
//! request far ahead or malformed gets a 400, the preload-hinted part is served as soon as it
//! is complete, and ffmpeg plays the fMP4 rendition while the MPEG-TS one keeps working; an
//! Enhanced RTMP AV1 + Opus publish comes out as fMP4 that ffprobe decodes; ffmpeg reads a
//! minute of an irregular-GOP 2 fps stream from both playlists without a warning; a publisher
//! reconfigured mid-stream (new resolution and sample rate) keeps all its audio in both.

use crate::common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamr_media::flv::{FlvHeader, FlvReader, FlvTag, FlvTagType, FlvWriter};
use streamr_media::fmp4::box_paths;
use streamr_media::hls::{check_ll_playlist, check_multivariant};
use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::relay::{FrameKind, RelayHub, StreamKey};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_test_support::ffmpeg::ffmpeg_publish_with_b_frames;
use streamr_test_support::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 GET: status, lower-cased headers and body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
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
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
            .unwrap();
        if len == 0 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + len]);
        data = &data[line_end + 4 + len..];
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn publish(rtmp: SocketAddr, seconds: u32) -> Running {
    ffmpeg_publish_with_b_frames(&format!("rtmp://{rtmp}/live/cam"), seconds, Stdio::null())
}

/// The preload hint's `(msn, part)`.
fn hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .expect("a preload hint");
    let uri = line.split("URI=\"").nth(1).unwrap().trim_end_matches('"');
    let (msn, part) = uri.trim_end_matches(".m4s").split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn blocking_reload_preload_hints_and_players_over_http() {
    common_tools();
    let config = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 2);
    let (_hub, rtmp, http) = common::start_relay_and_http(config).await;
    let addr = http.local_addr();
    assert_eq!(get(addr, "/live/cam/ll.m3u8").await.0, 404);
    let mut notices = http.hls().segment_notices();
    let _publisher = publish(rtmp.local_addr(), 12);

    let mut playlist = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, headers, body) = get(addr, "/live/cam/ll.m3u8").await;
        if status == 200 {
            assert_eq!(
                header(&headers, "content-type"),
                Some("application/vnd.apple.mpegurl")
            );
            playlist = String::from_utf8(body).unwrap();
            break;
        }
    }
    assert!(!playlist.is_empty(), "no LL-HLS playlist");
    assert_eq!(check_ll_playlist(&playlist), vec![], "{playlist}");

    // The init segment named by EXT-X-MAP.
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .unwrap()
        .trim_end_matches('"');
    let (status, headers, init) = get(addr, &format!("/live/cam/{map}")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("video/mp4"));
    assert!(box_paths(&init)
        .unwrap()
        .contains(&"moov/mvex/trex".to_string()));

    // Blocking reload: the hinted part is not there yet; the request is held until it is.
    let (msn, part) = hint(&playlist);
    let part_path = format!("/live/cam/{msn}.{part}.m4s");
    let blocking_path = format!("/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let started = Instant::now();
    let (preload, blocked) = tokio::join!(get(addr, &part_path), get(addr, &blocking_path));
    let held = started.elapsed();
    assert_eq!(blocked.0, 200);
    let blocked = String::from_utf8(blocked.2).unwrap();
    assert!(
        blocked.contains(&format!("URI=\"{msn}.{part}.m4s\"")),
        "the answer lists the part: {blocked}"
    );
    assert_eq!(check_ll_playlist(&blocked), vec![], "{blocked}");
    assert!(
        held < Duration::from_secs(2),
        "held {held:?}, one part is 0.35 s at most"
    );
    assert_eq!(
        preload.0, 200,
        "the preload-hinted part is served once complete"
    );
    assert_eq!(box_paths(&preload.2).unwrap()[0], "moof");

    // Already there: answered at once. Far ahead or malformed: 400.
    let started = Instant::now();
    let (status, _, _) = get(
        addr,
        &format!("/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(
        get(addr, &format!("/live/cam/ll.m3u8?_HLS_msn={}", msn + 10))
            .await
            .0,
        400
    );
    assert_eq!(get(addr, "/live/cam/ll.m3u8?_HLS_part=1").await.0, 400);
    assert_eq!(get(addr, "/live/cam/ll.m3u8?_HLS_msn=x").await.0, 400);
    assert_eq!(
        get(addr, &format!("/live/cam/{}.0.m4s", msn + 50)).await.0,
        404
    );

    // The reported hashes cover what viewers fetch: the fMP4 segment, and each part, whose
    // concatenation is the segment.
    let notice = loop {
        let notice = notices.recv().await.unwrap();
        if notice.sequence >= 1 {
            break notice;
        }
    };
    let ll = notice
        .ll
        .expect("the LL-HLS segment is reported with its MPEG-TS twin");
    let (status, _, segment) = get(addr, &format!("/live/cam/{}.m4s", notice.sequence)).await;
    assert_eq!(status, 200);
    assert_eq!(blake3::hash(&segment), ll.hash);
    assert_eq!(segment.len(), ll.len);
    let mut joined = Vec::new();
    for (index, expected) in ll.part_hashes.iter().enumerate() {
        let (status, _, part) =
            get(addr, &format!("/live/cam/{}.{index}.m4s", notice.sequence)).await;
        assert_eq!(status, 200);
        assert_eq!(blake3::hash(&part), *expected, "part {index}");
        joined.extend_from_slice(&part);
    }
    assert_eq!(joined, segment);

    // Players: ffmpeg reads the fMP4 rendition without a message; the TS playlist still works.
    let url = format!("http://{addr}/live/cam/ll.m3u8");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args([
                "-nostdin", "-v", "warning", "-i", &url, "-t", "2", "-f", "null", "-",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // ffmpeg's HLS demuxer feeds the EXT-X-MAP section again with every segment and says so
    // for every fMP4 HLS stream ("Found duplicated MOOV Atom"); anything else is a finding.
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.contains("Found duplicated MOOV Atom") && !l.contains("Last message repeated")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "ffmpeg warned while playing LL-HLS: {stderr}"
    );
    assert_eq!(get(addr, "/live/cam.m3u8").await.0, 200);
    http.shutdown().await;
    rtmp.shutdown().await;
}

/// A minute of 2 fps video with GOPs from 0.5 s to 12 s (forced keyframes, no scene cuts) and
/// AAC, published at four times real time; the node lists what it cuts (a long window),
/// then both playlists end. Every MPEG-TS EXTINF fits its fixed target duration (10 s: the 12 s
/// GOP is cut short there), every part fits PART-TARGET (one 2 fps frame plus 10 ms, from
/// onMetaData) and keeps the 85 % rule, and ffmpeg reads both playlists from start to end
/// without a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_reads_a_minute_of_an_irregular_two_fps_stream_from_both_playlists_cleanly() {
    common_tools();
    let mut config = LiveHlsConfig::default()
        .with_ts_target_duration(Some(Duration::from_secs(10)))
        .with_end_timing(Duration::from_millis(300), Duration::from_secs(300));
    config.window_segments = 100;
    let (_hub, rtmp, http) = common::start_relay_and_http(config).await;
    let addr = http.local_addr();
    // Keyframe times (s): GOPs of 0.5 to 12 s.
    let keyframes = "0,0.5,3,3.5,4,9,9.5,21.5,22,24,24.5,30,36,36.5,37,47,47.5,50,54,56,58.5";
    let url = format!("rtmp://{}/live/slow", rtmp.local_addr());
    let publish = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-readrate",
                "4",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("testsrc=size=320x240:rate=2:duration=60")
            .args(["-readrate", "4", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100:duration=60")
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-g", "1000", "-x264-params", "scenecut=0"])
            .args(["-force_key_frames", keyframes])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", &url])
            .output()
            .unwrap()
    });
    let published = publish.await.unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    // Both playlists end once the publisher is gone for the republish grace.
    let mut playlists = (String::new(), String::new());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ts = get(addr, "/live/slow.m3u8").await;
        let ll = get(addr, "/live/slow/ll.m3u8").await;
        let ts = String::from_utf8(ts.2).unwrap_or_default();
        let ll = String::from_utf8(ll.2).unwrap_or_default();
        if ts.contains("#EXT-X-ENDLIST") && ll.contains("#EXT-X-ENDLIST") {
            playlists = (ts, ll);
            break;
        }
    }
    let (ts, ll) = playlists;
    assert!(!ts.is_empty(), "the playlists did not end");
    let parsed = streamr_media::hls::ParsedPlaylist::parse(&ts).expect("EXTINF within target");
    assert_eq!(parsed.target_duration, 10, "{ts}");
    let listed = parsed.total_duration();
    assert!(listed > 45.0, "{listed} s listed: {ts}");
    assert!(
        ts.contains("#EXT-X-DISCONTINUITY"),
        "the 12 s GOP is cut short: {ts}"
    );
    assert_eq!(check_ll_playlist(&ll), vec![], "{ll}");
    assert!(ll.contains("#EXT-X-PART-INF:PART-TARGET=0.510"), "{ll}");

    for path in ["/live/slow.m3u8", "/live/slow/ll.m3u8"] {
        let url = format!("http://{addr}{path}");
        let output = tokio::task::spawn_blocking(move || {
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "warning", "-i", &url, "-f", "null", "-"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{path}: {stderr}");
        // As above: ffmpeg's note for every fMP4 HLS stream.
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                !l.contains("Found duplicated MOOV Atom") && !l.contains("Last message repeated")
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "ffmpeg warned reading {path}: {stderr}"
        );
    }
    http.shutdown().await;
    rtmp.shutdown().await;
}

/// Encodes `seconds` of a test picture of `size` at 25 fps (a keyframe every 2 s) with a tone at
/// `rate` Hz into FLV, and returns its tags.
fn encode(dir: &std::path::Path, size: &str, rate: u32, seconds: u32) -> Vec<FlvTag> {
    let path = dir.join(format!("{size}-{rate}.flv"));
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate={rate}"))
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-g",
            "50",
            "-c:a",
            "aac",
            "-ar",
            &rate.to_string(),
            "-f",
            "flv",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    FlvReader::read_all(&std::fs::read(&path).unwrap())
        .unwrap()
        .1
}

/// ffprobe's count of the audio packets it reads from `input` (a file or a URL), and the
/// sample rate of the audio stream.
fn probe_audio(input: &str) -> (usize, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", "a"])
        .args(["-show_entries", "stream=sample_rate,nb_read_packets"])
        .args(["-of", "csv=p=0", input])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (rate, packets) = text
        .lines()
        .find_map(|l| l.trim().split_once(','))
        .unwrap_or_else(|| {
            panic!(
                "{input}: ffprobe: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // A stream without a packet read is reported without a count.
    let packets = packets.trim().parse().unwrap_or(0);
    (packets, rate.to_string())
}

/// An encoder restarted with new settings over one connection (320x180 with 44.1 kHz audio,
/// then 640x360 with 48 kHz audio starting 80 ms after the video), relayed by ffmpeg with
/// `-c copy`: ffmpeg sends the new video sequence header with the first new keyframe and the
/// new audio one with the first new audio frame, a few video frames later. The LL-HLS segment
/// opened at the reconfiguration carries the new audio from that frame on: the LL-HLS
/// playlist's segments hold as many audio frames as the MPEG-TS playlist's (every frame after
/// the first keyframe), and that segment's init segment describes the 48 kHz audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg and ffprobe"]
async fn a_publisher_reconfigured_mid_stream_keeps_its_audio_in_both_playlists() {
    common_tools();
    let dir = tempfile::tempdir().unwrap();
    let first = encode(dir.path(), "320x180", 44_100, 6);
    let second = encode(dir.path(), "640x360", 48_000, 6);
    // The second encoder's tags after the first's, its audio starting 80 ms after its video, and
    // its audio sequence header just before its first audio frame (where ffmpeg relaying the
    // recording with `-c copy` sends it anyway).
    let offset = first.iter().map(|t| t.timestamp).max().unwrap() + 40;
    let mut tags = first;
    let mut later: Vec<FlvTag> = second
        .iter()
        .filter(|t| t.tag_type != FlvTagType::ScriptData)
        .cloned()
        .map(|mut t| {
            t.timestamp += offset;
            if t.tag_type == FlvTagType::Audio {
                t.timestamp += 80;
            }
            t
        })
        .collect();
    later.sort_by_key(|t| t.timestamp);
    let is_audio_header = |t: &FlvTag| t.tag_type == FlvTagType::Audio && t.data.get(1) == Some(&0);
    let header = later.iter().position(is_audio_header).unwrap();
    let mut header = later.remove(header);
    let first_audio = later
        .iter()
        .position(|t| t.tag_type == FlvTagType::Audio)
        .unwrap();
    header.timestamp = later[first_audio].timestamp;
    later.insert(first_audio, header);
    tags.extend(later);
    let path = dir.path().join("reconfigured.flv");
    let writer = FlvWriter::new();
    let mut file = writer.header(FlvHeader {
        has_audio: true,
        has_video: true,
    });
    for tag in &tags {
        writer.write_tag(tag, &mut file).unwrap();
    }
    std::fs::write(&path, &file).unwrap();
    // Every audio frame from the first keyframe on (the segmenter starts there).
    let first_keyframe = tags
        .iter()
        .find(|t| t.tag_type == FlvTagType::Video && t.data.get(1) == Some(&1))
        .unwrap()
        .timestamp;
    let expected = tags
        .iter()
        .filter(|t| t.tag_type == FlvTagType::Audio && t.data.get(1) == Some(&1))
        .filter(|t| t.timestamp >= first_keyframe)
        .count();

    let mut config = LiveHlsConfig::default()
        .with_end_timing(Duration::from_millis(300), Duration::from_secs(300));
    config.window_segments = 100;
    let (_hub, rtmp, http) = common::start_relay_and_http(config).await;
    let addr = http.local_addr();
    let url = format!("rtmp://{}/live/re", rtmp.local_addr());
    let input = path.clone();
    let published = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-readrate", "4", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let mut ll = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ts = String::from_utf8(get(addr, "/live/re.m3u8").await.2).unwrap_or_default();
        let text = String::from_utf8(get(addr, "/live/re/ll.m3u8").await.2).unwrap_or_default();
        if ts.contains("#EXT-X-ENDLIST") && text.contains("#EXT-X-ENDLIST") {
            ll = text;
            break;
        }
    }
    assert!(!ll.is_empty(), "the playlists did not end");
    assert_eq!(check_ll_playlist(&ll), vec![], "{ll}");

    // Each LL-HLS segment with the init segment the playlist names for it.
    let mut init = Vec::new();
    let mut per_segment = Vec::new();
    for line in ll.lines() {
        if let Some(uri) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let uri = uri.trim_end_matches('"');
            let (status, _, body) = get(addr, &format!("/live/re/{uri}")).await;
            assert_eq!(status, 200, "{uri}");
            init = body;
        } else if !line.starts_with('#') && !line.is_empty() {
            let (status, _, body) = get(addr, &format!("/live/re/{line}")).await;
            assert_eq!(status, 200, "{line}");
            let file = dir.path().join(line.replace('/', "_"));
            std::fs::write(&file, [init.as_slice(), body.as_slice()].concat()).unwrap();
            per_segment.push((line.to_string(), probe_audio(file.to_str().unwrap())));
        }
    }
    let ll_segments: usize = per_segment.iter().map(|(_, (packets, _))| packets).sum();
    let read = |path: &str| {
        let url = format!("http://{addr}{path}");
        tokio::task::spawn_blocking(move || probe_audio(&url))
    };
    let ts_playlist = read("/live/re.m3u8").await.unwrap();
    let ll_playlist = read("/live/re/ll.m3u8").await.unwrap();
    eprintln!(
        "AAC frames sent after the first keyframe: {expected}; MPEG-TS playlist: {} packets; \
         LL-HLS playlist: {} packets; LL-HLS segments: {ll_segments} packets {per_segment:?}",
        ts_playlist.0, ll_playlist.0
    );
    assert_eq!(ts_playlist.0, expected, "MPEG-TS");
    assert_eq!(ll_segments, expected, "LL-HLS: {per_segment:?}\n{ll}");
    assert_eq!(ll_playlist.0, expected, "LL-HLS playlist");
    // The segment after the discontinuity is read at 48 kHz, with audio.
    let after = ll
        .split("\n#EXT-X-DISCONTINUITY\n")
        .nth(1)
        .and_then(|rest| rest.lines().find(|l| !l.starts_with('#') && !l.is_empty()))
        .unwrap_or_else(|| panic!("a discontinuity: {ll}"));
    let (_, (packets, rate)) = per_segment.iter().find(|(uri, _)| uri == after).unwrap();
    assert_eq!(rate, "48000", "{per_segment:?}");
    assert!(*packets > 50, "{per_segment:?}");
    http.shutdown().await;
    rtmp.shutdown().await;
}

fn common_tools() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("ffmpeg").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "ffmpeg is required by this interop test but is not on PATH"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn a_blocking_request_the_stream_never_fills_gets_a_503_after_three_target_durations() {
    let hub = RelayHub::default();
    let config = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 1);
    let http = HttpServer::start("127.0.0.1:0".parse().unwrap(), hub.clone(), config)
        .await
        .unwrap();
    let addr = http.local_addr();
    let publisher = hub
        .publish(StreamKey::parse("live", "stalled").unwrap())
        .unwrap();
    // Live HLS subscribes within its poll interval; then 6 s of media arrive and the publisher
    // stalls (still connected).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/av_bframes.flv");
    let (_, tags) = FlvReader::read_all(&std::fs::read(path).unwrap()).unwrap();
    for tag in tags.iter().filter(|t| t.timestamp <= 6_000) {
        let kind = match tag.tag_type {
            FlvTagType::Audio => FrameKind::Audio,
            FlvTagType::Video => FrameKind::Video,
            _ => FrameKind::Metadata,
        };
        publisher.send(kind, tag.timestamp, tag.data.clone());
    }
    // The stalled playlist: complete segments, and no change for half a second (the node may
    // still be packaging the burst when the first segment is listed).
    let mut playlist = String::new();
    let mut unchanged = 0;
    for _ in 0..80 {
        let (status, _, body) = get(addr, "/live/stalled/ll.m3u8").await;
        if status == 200 {
            let text = String::from_utf8(body).unwrap();
            unchanged = if text == playlist { unchanged + 1 } else { 0 };
            playlist = text;
            if playlist.contains("#EXTINF") && unchanged >= 5 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(playlist.contains("#EXT-X-TARGETDURATION:1\n"), "{playlist}");
    assert_eq!(check_ll_playlist(&playlist), vec![], "{playlist}");
    let (msn, part) = hint(&playlist);
    let part_path = format!("/live/stalled/{msn}.{part}.m4s");
    let blocking_path = format!("/live/stalled/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let started = Instant::now();
    let (preload, blocked) = tokio::join!(get(addr, &part_path), get(addr, &blocking_path));
    let held = started.elapsed();
    assert_eq!(blocked.0, 503, "{}", String::from_utf8_lossy(&blocked.2));
    assert_eq!(preload.0, 404);
    assert!(
        held >= Duration::from_millis(2_900) && held < Duration::from_secs(6),
        "held {held:?}: three target durations of 1 s"
    );
    drop(publisher);
    http.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg and ffprobe"]
async fn an_enhanced_rtmp_av1_and_opus_publish_plays_as_ll_hls() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tags, samples) = common::enhanced::av1_tags(dir.path());
    let opus = common::enhanced::opus_tags(&common::enhanced::opus_packets(dir.path(), 1));
    tags.insert(1, opus[0].clone());
    tags.extend(opus[1..].iter().cloned());
    tags.sort_by_key(|t| t.timestamp);
    // The playlist ends (no preload hint) a moment after the publisher leaves.
    let config = LiveHlsConfig::default()
        .with_segments(Duration::from_millis(500), 2)
        .with_end_timing(Duration::from_millis(200), Duration::from_secs(30));
    let (hub, rtmp, http) = common::start_relay_and_http(config).await;
    let addr = http.local_addr();
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/av1", rtmp.local_addr())).unwrap();
    let mut client = streamr_media::client::RtmpClient::publish(&url)
        .await
        .unwrap();
    let key = StreamKey::parse("live", "av1").unwrap();
    // In real time: live HLS takes the stream up within its poll interval and starts from the
    // relay's cached GOP, so it misses at most the first keyframe interval.
    let (headers, frames) = tags.split_at(2);
    for tag in headers {
        common::send_tag(&mut client, tag).await;
    }
    let started = Instant::now();
    for tag in frames {
        let due = Duration::from_millis(u64::from(tag.timestamp));
        tokio::time::sleep_until((started + due).into()).await;
        common::send_tag(&mut client, tag).await;
    }
    client.close().await.unwrap();
    common::wait_for_publish_end(&hub, &key, Duration::from_secs(5)).await;

    // Every segment is closed and the playlist ended.
    let mut playlist = String::new();
    for _ in 0..50 {
        let (status, _, body) = get(addr, "/live/av1/ll.m3u8").await;
        if status == 200 {
            playlist = String::from_utf8(body).unwrap();
            if playlist.contains("#EXT-X-ENDLIST") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(check_ll_playlist(&playlist), vec![], "{playlist}");
    // MPEG-TS carries neither track: no MPEG-TS playlist of table-only segments, and the
    // multivariant playlist names the fMP4 rendition alone.
    let (status, _, body) = get(addr, "/live/av1.m3u8").await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("codecs_not_in_mpeg_ts"));
    let (status, _, body) = get(addr, "/live/av1/master.m3u8").await;
    assert_eq!(status, 200);
    let variants = check_multivariant(std::str::from_utf8(&body).unwrap()).unwrap();
    assert_eq!(variants.len(), 1, "{variants:?}");
    assert_eq!(variants[0].uri, "ll.m3u8");
    assert!(variants[0].codecs[0].starts_with("av01."), "{variants:?}");
    assert_eq!(variants[0].codecs[1], "opus");
    assert_eq!(variants[0].resolution, Some((160, 90)));
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .expect("an init segment")
        .trim_end_matches('"');
    let (status, _, mut file) = get(addr, &format!("/live/av1/{map}")).await;
    assert_eq!(status, 200);
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(uris.len() >= 2, "{playlist}");
    for uri in &uris {
        let (status, _, body) = get(addr, &format!("/live/av1/{uri}")).await;
        assert_eq!(status, 200, "{uri}");
        file.extend_from_slice(&body);
    }
    let path = dir.path().join("played.mp4");
    std::fs::write(&path, &file).unwrap();
    let streams =
        common::enhanced::ffprobe_streams(&path, "codec_name,width,height,nb_read_frames");
    // The segments listed start at a keyframe; those the window dropped are not counted.
    let read: usize = streams
        .lines()
        .find(|l| l.contains("codec_name=av1|width=160|height=90"))
        .unwrap_or_else(|| panic!("an AV1 stream: {streams}"))
        .split("nb_read_frames=")
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(
        read >= samples.len() / 2 && read <= samples.len(),
        "{read} frames: {streams}"
    );
    assert!(streams.contains("codec_name=opus"), "{streams}");
    http.shutdown().await;
}
