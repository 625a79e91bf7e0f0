//! Streams as a modern Enhanced RTMP publisher sends them: FFmpeg 9's FLV muxer wrote the files
//! in `tests/data/enhanced` (see its `regenerate.sh`; Debian's FFmpeg 5.1 cannot). HEVC with
//! B-frames + AAC, AV1 + Opus, VP9 + AAC, and a stream with a second video (AV1) and audio track
//! in multitrack packets. Every tag is read; a node joining mid-stream packages the same
//! LL-HLS and MPEG-TS bytes as the origin for each; a player joining a multitrack stream late
//! gets every track's configuration before its frames; ffprobe reads the fMP4 renditions.

use crate::common;
use crate::ll_hls::{package_whole, stream, write_fmp4, Collected};

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::enhanced::ffprobe_streams;
use streamr_media::client::RtmpClient;
use streamr_media::flv::tag::{
    classify, classify_multitrack, MediaKind as TagKind, MultitrackInfo, PacketKind,
};
use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::hls::HlsTiming;
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::{RelayServer, RelayServerConfig};

const FIXTURES: [&str; 4] = [
    "hevc_aac.flv",
    "av1_opus.flv",
    "vp9_aac.flv",
    "multitrack.flv",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/enhanced")
        .join(name)
}

fn tags(name: &str) -> Vec<FlvTag> {
    FlvReader::read_all(&std::fs::read(fixture(name)).unwrap())
        .unwrap()
        .1
}

fn tag_kind(tag: &FlvTag) -> Option<TagKind> {
    match tag.tag_type {
        FlvTagType::Audio => Some(TagKind::Audio),
        FlvTagType::Video => Some(TagKind::Video),
        _ => None,
    }
}

/// The multitrack header of an audio or video body, when it is one.
fn multitrack(kind: TagKind, body: &[u8]) -> Option<MultitrackInfo> {
    classify_multitrack(kind, body).unwrap()
}

/// True for a tag a decoder needs before frames: a sequence start or other configuration, of
/// any track, or the script data.
fn is_configuration(tag: &FlvTag) -> bool {
    let Some(kind) = tag_kind(tag) else {
        return tag.tag_type == FlvTagType::ScriptData;
    };
    match classify(kind, &tag.data) {
        Ok(info) => matches!(
            info.packet,
            PacketKind::SequenceHeader | PacketKind::MultichannelConfig | PacketKind::Metadata
        ),
        Err(_) => multitrack(kind, &tag.data).is_some_and(|m| m.is_configuration()),
    }
}

#[test]
fn every_tag_a_modern_publisher_sends_is_read() {
    for name in FIXTURES {
        let mut multitrack_packets = 0;
        for tag in tags(name) {
            let Some(kind) = tag_kind(&tag) else { continue };
            match classify(kind, &tag.data) {
                Ok(info) => assert!(info.payload_offset <= tag.data.len()),
                Err(error) => {
                    let info = multitrack(kind, &tag.data)
                        .unwrap_or_else(|| panic!("{name} at {}: {error}", tag.timestamp));
                    assert_eq!(info.tracks.len(), 1, "{name}: {info:?}");
                    assert_eq!(info.tracks[0].0, 1, "FFmpeg's second track is track 1");
                    multitrack_packets += 1;
                }
            }
        }
        assert_eq!(
            multitrack_packets > 0,
            name == "multitrack.flv",
            "{name}: {multitrack_packets} multitrack packets"
        );
    }
}

/// `tags` as a node that started pulling at the second keyframe receives them: the
/// configuration sent before it (the upstream's start bundle), the origin's timing
/// announcement (`onStreamrHlsTiming`, which a relay's upstream sends before the frames), then
/// everything from there.
fn joined_at_second_keyframe(tags: &[FlvTag], timing: HlsTiming) -> Vec<FlvTag> {
    let join = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.tag_type == FlvTagType::Video
                && classify(TagKind::Video, &t.data)
                    .is_ok_and(|i| i.is_keyframe && i.is_coded_frame())
        })
        .map(|(i, _)| i)
        .nth(1)
        .unwrap();
    let announcement = FlvTag {
        tag_type: FlvTagType::ScriptData,
        timestamp: tags[join].timestamp,
        stream_id: 0,
        data: timing.encode(),
    };
    let headers = tags[..join].iter().filter(|t| is_configuration(t)).cloned();
    headers
        .chain(std::iter::once(announcement))
        .chain(tags[join..].iter().cloned())
        .collect()
}

/// Packages `name` at an origin and at a node joining mid-stream, checks that every segment and
/// part the joining node has is the origin's, byte for byte, and returns the origin's output.
fn package_alike(name: &str) -> Collected {
    let tags = tags(name);
    let mut origin_stream = stream();
    let origin = package_whole(&mut origin_stream, &tags);
    let timing = HlsTiming {
        part_target_ms: Some(origin_stream.playlist().config().part_target_ms),
        target_duration_secs: origin_stream
            .segmenter()
            .target_duration_secs()
            .unwrap_or_else(|| panic!("{name}: the origin fixed its target duration")),
    };
    let friend = package_whole(
        &mut stream().joining_mid_stream(),
        &joined_at_second_keyframe(&tags, timing),
    );
    assert!(origin.ll.len() >= 2, "{name}: {} segments", origin.ll.len());
    assert!(!friend.ll.is_empty(), "{name}: the friend lists a segment");
    for segment in &friend.ll {
        let same = origin
            .ll
            .iter()
            .find(|o| o.start_timestamp_ms == segment.start_timestamp_ms)
            .unwrap_or_else(|| panic!("{name}: the origin cut there too"));
        assert_eq!(same.hash, segment.hash, "{name}: LL-HLS segment bytes");
        assert_eq!(same.part_hashes, segment.part_hashes, "{name}: part bytes");
        assert_eq!(same.init.bytes, segment.init.bytes, "{name}: init segment");
    }
    for (start, duration, hash) in &friend.ts_hashes {
        assert!(
            origin.ts_hashes.contains(&(*start, *duration, *hash)),
            "{name}: MPEG-TS segment at {start} ms"
        );
    }
    origin
}

#[test]
fn a_node_joining_mid_stream_packages_the_origins_bytes_for_every_enhanced_stream() {
    let codecs = |out: &Collected| out.ll[0].init.codecs.clone();
    let hevc = package_alike("hevc_aac.flv");
    assert!(
        codecs(&hevc).starts_with("hvc1.1.6.L30.") && codecs(&hevc).ends_with(",mp4a.40.2"),
        "{}",
        codecs(&hevc)
    );
    assert!(!hevc.ts_hashes.is_empty(), "HEVC and AAC go to MPEG-TS too");
    let av1 = package_alike("av1_opus.flv");
    assert_eq!(codecs(&av1), "av01.0.00M.08,opus");
    // VP9 goes to no HLS rendition: both carry the AAC track alone.
    let vp9 = package_alike("vp9_aac.flv");
    assert_eq!(codecs(&vp9), "mp4a.40.2");
    // Multitrack: HLS carries the default tracks, as the same bytes at every node.
    let multi = package_alike("multitrack.flv");
    assert_eq!(codecs(&multi), codecs(&hevc));
}

#[test]
#[ignore = "interop: needs ffprobe"]
fn ffprobe_reads_the_ll_hls_of_hevc_and_av1_from_a_modern_publisher() {
    common::require_tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    for (name, video) in [
        ("hevc_aac.flv", "codec_name=hevc|width=160|height=90"),
        ("av1_opus.flv", "codec_name=av1|width=160|height=90"),
    ] {
        let out = package_whole(&mut stream(), &tags(name));
        let path = write_fmp4(dir.path(), &name.replace(".flv", ".mp4"), &out.ll);
        let streams = ffprobe_streams(&path, "codec_name,width,height,nb_read_frames");
        assert!(streams.contains(video), "{name}: {streams}");
        // Four seconds at 25 fps, every frame read.
        assert!(streams.contains("nb_read_frames=100"), "{name}: {streams}");
    }
}

/// What a player saw of one kind's track 1 (multitrack packets): whether its configuration
/// came before its first coded frame.
#[derive(Debug, Default)]
struct SecondTrack {
    configured: bool,
    frames: usize,
    frames_before_configuration: usize,
}

impl SecondTrack {
    fn see(&mut self, info: &MultitrackInfo) {
        if info.packet == PacketKind::SequenceHeader {
            self.configured = true;
        } else if info.packet == PacketKind::CodedFrame {
            self.frames += 1;
            if !self.configured {
                self.frames_before_configuration += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_joining_a_multitrack_stream_late_gets_every_tracks_sequence_start() {
    let server = RelayServer::start(
        RelayServerConfig::default().with_bind("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("relay server starts");
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/multitrack", server.local_addr()))
        .expect("valid URL");
    let source = FlvSource::read(&fixture("multitrack.flv")).expect("the fixture parses");
    let publisher = {
        let url = url.clone();
        tokio::spawn(async move { publish_flv(&source, &url, &PublishOptions::once()).await })
    };
    // Join after the first keyframe, past the second tracks' sequence starts.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut player = RtmpClient::play(&url).await.expect("the stream plays");
    let (mut video, mut audio) = (SecondTrack::default(), SecondTrack::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(Some(event))) = tokio::time::timeout_at(deadline, player.next_event()).await {
        if let ClientEvent::Media { kind, payload, .. } = event {
            let (kind, track) = match kind {
                MediaKind::Video => (TagKind::Video, &mut video),
                MediaKind::Audio => (TagKind::Audio, &mut audio),
                _ => continue,
            };
            if let Some(info) = multitrack(kind, &Bytes::clone(&payload)) {
                track.see(&info);
            }
        }
        if video.frames > 25 && audio.frames > 25 {
            break;
        }
    }
    publisher.abort();
    server.shutdown().await;
    for (name, track) in [("video", &video), ("audio", &audio)] {
        assert!(track.frames > 25, "{name} track 1: {track:?}");
        assert_eq!(
            track.frames_before_configuration, 0,
            "{name} track 1 frames came before its sequence start: {track:?}"
        );
    }
}
