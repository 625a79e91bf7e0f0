//! MPEG-TS muxer: packet structure invariants (proptest), determinism, and interop with ffprobe
//! and ffmpeg on a real FLV file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use proptest::prelude::*;
use streamr_media::codec::AvcDecoderConfig;
use streamr_media::flv::tag::{classify, MediaKind};
use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::ts::{
    flv_to_90khz, mux_arbitrary_tags, remux_flv_to_ts, FlvTsMuxer, AUDIO_PID, TS_PACKET_LEN,
    VIDEO_PID,
};

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/media")
        .join(name)
}

fn read_tags(name: &str) -> Vec<FlvTag> {
    let bytes = std::fs::read(media(name)).unwrap();
    FlvReader::read_all(&bytes).unwrap().1
}

/// One parsed transport packet.
#[derive(Debug)]
struct Packet {
    pid: u16,
    pusi: bool,
    cc: u8,
    has_payload: bool,
    random_access: bool,
    pcr: Option<u64>,
    payload: Vec<u8>,
}

fn parse_packets(ts: &[u8]) -> Vec<Packet> {
    assert_eq!(ts.len() % TS_PACKET_LEN, 0, "output is not whole packets");
    ts.chunks(TS_PACKET_LEN)
        .map(|p| {
            assert_eq!(p[0], 0x47, "sync byte");
            let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
            let afc = (p[3] >> 4) & 3;
            let mut pos = 4;
            let mut random_access = false;
            let mut pcr = None;
            if afc & 2 != 0 {
                let len = p[4] as usize;
                assert!(len <= 183, "adaptation field length {len}");
                if len > 0 {
                    random_access = p[5] & 0x40 != 0;
                    if p[5] & 0x10 != 0 {
                        let b = &p[6..12];
                        pcr = Some(
                            (u64::from(b[0]) << 25)
                                | (u64::from(b[1]) << 17)
                                | (u64::from(b[2]) << 9)
                                | (u64::from(b[3]) << 1)
                                | (u64::from(b[4]) >> 7),
                        );
                    }
                }
                pos = 5 + len;
            }
            Packet {
                pid,
                pusi: p[1] & 0x40 != 0,
                cc: p[3] & 0x0f,
                has_payload: afc & 1 != 0,
                random_access,
                pcr,
                payload: p[pos..].to_vec(),
            }
        })
        .collect()
}

/// A reassembled PES packet.
#[derive(Debug)]
struct Pes {
    pid: u16,
    declared_len: u16,
    pts: u64,
    dts: Option<u64>,
    data: Vec<u8>,
    random_access: bool,
}

fn read_ts_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

fn reassemble(packets: &[Packet]) -> Vec<Pes> {
    let mut open: HashMap<u16, (Vec<u8>, bool, usize)> = HashMap::new();
    let mut done = Vec::new();
    let finish = |pid: u16,
                  bytes: Vec<u8>,
                  random_access: bool,
                  done: &mut Vec<(usize, Pes)>,
                  start: usize| {
        assert_eq!(&bytes[..3], &[0, 0, 1], "PES start code on pid {pid}");
        let declared_len = u16::from_be_bytes([bytes[4], bytes[5]]);
        let flags = bytes[7];
        let header_len = bytes[8] as usize;
        let pts = read_ts_timestamp(&bytes[9..14]);
        let dts = (flags & 0x40 != 0).then(|| read_ts_timestamp(&bytes[14..19]));
        done.push((
            start,
            Pes {
                pid,
                declared_len,
                pts,
                dts,
                data: bytes[9 + header_len..].to_vec(),
                random_access,
            },
        ));
        if declared_len != 0 {
            assert_eq!(
                declared_len as usize,
                bytes.len() - 6,
                "PES length on pid {pid}"
            );
        }
    };
    for (index, p) in packets.iter().enumerate() {
        if p.pid == 0 || p.pid == 0x1000 {
            continue;
        }
        if p.pusi {
            if let Some((bytes, ra, start)) = open.remove(&p.pid) {
                finish(p.pid, bytes, ra, &mut done, start);
            }
            open.insert(p.pid, (p.payload.clone(), p.random_access, index));
        } else if let Some((bytes, _, _)) = open.get_mut(&p.pid) {
            bytes.extend_from_slice(&p.payload);
        }
    }
    for (pid, (bytes, ra, start)) in open {
        finish(pid, bytes, ra, &mut done, start);
    }
    done.sort_by_key(|(start, _)| *start);
    done.into_iter().map(|(_, pes)| pes).collect()
}

fn assert_continuity(packets: &[Packet]) {
    let mut last: HashMap<u16, u8> = HashMap::new();
    for p in packets.iter().filter(|p| p.has_payload) {
        if let Some(prev) = last.get(&p.pid) {
            assert_eq!(p.cc, (prev + 1) & 0x0f, "continuity on pid {:#x}", p.pid);
        }
        last.insert(p.pid, p.cc);
    }
}

fn sps_pps() -> Bytes {
    let config = AvcDecoderConfig {
        profile: 100,
        profile_compatibility: 0,
        level: 31,
        nal_length_size: 4,
        sps: vec![Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac])],
        pps: vec![Bytes::from_static(&[0x68, 0xee, 0x3c, 0x80])],
    };
    let mut body = vec![0x17, 0, 0, 0, 0];
    body.extend_from_slice(&config.encode());
    body.into()
}

fn video_tag(timestamp: u32, cts: i32, keyframe: bool, nal_len: usize) -> FlvTag {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1];
    body.extend_from_slice(&cts.to_be_bytes()[1..]);
    body.extend_from_slice(&((nal_len + 1) as u32).to_be_bytes());
    body.push(if keyframe { 0x65 } else { 0x41 });
    body.extend((0..nal_len).map(|i| (i * 7) as u8));
    FlvTag {
        tag_type: FlvTagType::Video,
        timestamp,
        stream_id: 0,
        data: body.into(),
    }
}

fn audio_tag(timestamp: u32, len: usize) -> FlvTag {
    let mut body = vec![0xAF, 1];
    body.extend((0..len).map(|i| (i * 3) as u8));
    FlvTag {
        tag_type: FlvTagType::Audio,
        timestamp,
        stream_id: 0,
        data: body.into(),
    }
}

fn aac_header() -> FlvTag {
    FlvTag {
        tag_type: FlvTagType::Audio,
        timestamp: 0,
        stream_id: 0,
        data: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
    }
}

/// A frame description: (is_video, keyframe, cts, size, gap).
fn frames() -> impl Strategy<Value = Vec<(bool, bool, i32, usize, u32)>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            any::<bool>(),
            -80i32..200,
            0usize..3000,
            0u32..50,
        ),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packets_are_whole_continuous_and_pes_lengths_consistent(frames in frames()) {
        let mut muxer = FlvTsMuxer::new();
        let mut out = Vec::new();
        muxer.write_tag(&FlvTag { tag_type: FlvTagType::Video, timestamp: 0, stream_id: 0, data: sps_pps() }, &mut out).unwrap();
        muxer.write_tag(&aac_header(), &mut out).unwrap();
        muxer.write_tables(&mut out);
        let mut timestamp = 0u32;
        let mut expected = Vec::new();
        for (is_video, keyframe, cts, size, gap) in &frames {
            timestamp += gap;
            let tag = if *is_video {
                video_tag(timestamp, *cts, *keyframe, *size)
            } else {
                audio_tag(timestamp, *size)
            };
            muxer.write_tag(&tag, &mut out).unwrap();
            expected.push((*is_video, tag));
        }
        let packets = parse_packets(&out);
        assert_continuity(&packets);
        let pes = reassemble(&packets);
        prop_assert_eq!(pes.len(), frames.len());
        for (pes, (is_video, tag)) in pes.iter().zip(&expected) {
            let info = classify(if *is_video { MediaKind::Video } else { MediaKind::Audio }, &tag.data).unwrap();
            let dts = flv_to_90khz(tag.timestamp);
            let pts = (dts as i64 + i64::from(info.composition_time) * 90).rem_euclid(1 << 33) as u64;
            prop_assert_eq!(pes.pts, pts);
            if *is_video {
                prop_assert_eq!(pes.pid, VIDEO_PID);
                prop_assert_eq!(pes.declared_len, 0);
                prop_assert_eq!(pes.dts.unwrap_or(pes.pts), dts);
                prop_assert_eq!(pes.random_access, info.is_keyframe);
                // AUD, then (for keyframes) SPS and PPS, then the slice.
                prop_assert_eq!(&pes.data[..6], &[0, 0, 0, 1, 0x09, 0xF0]);
                let nal = &tag.data[9..];
                prop_assert_eq!(&pes.data[pes.data.len() - nal.len()..], nal);
                let inserted = pes.data.windows(5).any(|w| w == [0, 0, 0, 1, 0x67]);
                prop_assert_eq!(inserted, info.is_keyframe);
            } else {
                prop_assert_eq!(pes.pid, AUDIO_PID);
                prop_assert_eq!(pes.dts, None);
                let frame_len = (usize::from(pes.data[3] & 3) << 11) | (usize::from(pes.data[4]) << 3) | usize::from(pes.data[5] >> 5);
                prop_assert_eq!(frame_len, pes.data.len());
                prop_assert_eq!(&pes.data[7..], &tag.data[2..]);
            }
        }
    }

    #[test]
    fn arbitrary_tags_never_panic_and_yield_whole_packets(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(mux_arbitrary_tags(&data) % TS_PACKET_LEN, 0);
    }
}

#[test]
fn frames_before_their_sequence_header_are_rejected_without_output() {
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::new();
    let err = muxer
        .write_tag(&video_tag(40, 0, true, 10), &mut out)
        .unwrap_err();
    assert!(
        err.to_string().contains("before its sequence header"),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn remuxing_the_same_file_twice_gives_identical_bytes() {
    let flv = std::fs::read(media("av_bframes.flv")).unwrap();
    let first = remux_flv_to_ts(&flv).unwrap();
    let second = remux_flv_to_ts(&flv).unwrap();
    assert_eq!(blake3::hash(&first), blake3::hash(&second));
    assert_eq!(first, second);
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().expect("ffmpeg/ffprobe must be installed");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn ffprobe_sees_every_frame_with_flv_timestamps_and_b_frame_order() {
    let flv_bytes = std::fs::read(media("av_bframes.flv")).unwrap();
    let tags = FlvReader::read_all(&flv_bytes).unwrap().1;
    let ts = remux_flv_to_ts(&flv_bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ts");
    std::fs::write(&path, &ts).unwrap();

    // Expected video (pts, dts, key) and audio pts in 90 kHz, from the FLV tags.
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for tag in &tags {
        let Some(info) = FlvTsMuxer::classify(tag).unwrap() else {
            continue;
        };
        if !info.is_coded_frame() {
            continue;
        }
        let dts = flv_to_90khz(tag.timestamp);
        let pts = (dts as i64 + i64::from(info.composition_time) * 90) as u64;
        match info.kind {
            MediaKind::Video => video.push((pts, dts, info.is_keyframe)),
            MediaKind::Audio => audio.push(pts),
        }
    }
    assert!(
        video.windows(2).any(|w| w[1].0 < w[0].0),
        "the vector must contain B-frames"
    );

    let csv = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(&path));
    let mut seen_video = Vec::new();
    let mut seen_audio = Vec::new();
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        match fields[0] {
            "video" => seen_video.push((
                fields[1].parse::<u64>().unwrap(),
                fields[2].parse::<u64>().unwrap(),
                fields[3].starts_with('K'),
            )),
            "audio" => seen_audio.push(fields[1].parse::<u64>().unwrap()),
            other => panic!("unexpected stream {other}"),
        }
    }
    assert_eq!(
        seen_video, video,
        "video pts/dts/key flags differ from the FLV"
    );
    assert_eq!(seen_audio, audio, "audio pts differ from the FLV");
    assert!(
        seen_video.windows(2).all(|w| w[1].1 > w[0].1),
        "DTS must increase"
    );

    let decode = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"]));
    assert_eq!(decode.trim(), "", "ffmpeg reported errors decoding our TS");
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn adts_frames_match_ffmpeg_byte_for_byte() {
    let flv_bytes = std::fs::read(media("audio_only.flv")).unwrap();
    let ts = remux_flv_to_ts(&flv_bytes).unwrap();
    let ours: Vec<u8> = reassemble(&parse_packets(&ts))
        .into_iter()
        .filter(|p| p.pid == AUDIO_PID)
        .flat_map(|p| p.data)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let adts = dir.path().join("ref.aac");
    run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(media("audio_only.flv"))
        .args(["-c:a", "copy", "-f", "adts"])
        .arg(&adts));
    let reference = std::fs::read(&adts).unwrap();
    assert_eq!(ours.len(), reference.len());
    assert!(ours == reference, "ADTS stream differs from ffmpeg's");
}

#[test]
fn audio_only_streams_carry_the_pcr_on_the_audio_pid() {
    let flv_bytes = std::fs::read(media("audio_only.flv")).unwrap();
    let packets = parse_packets(&remux_flv_to_ts(&flv_bytes).unwrap());
    assert_continuity(&packets);
    assert!(packets
        .iter()
        .any(|p| p.pid == AUDIO_PID && p.pcr.is_some()));
    assert!(packets.iter().all(|p| p.pid != VIDEO_PID));
    let tags = read_tags("audio_only.flv");
    assert!(tags.iter().any(|t| t.tag_type == FlvTagType::Audio));
}

#[test]
fn seed_corpus_of_the_ts_mux_fuzz_target_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ts_mux");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        assert_eq!(mux_arbitrary_tags(&data) % TS_PACKET_LEN, 0);
        count += 1;
    }
    assert!(count >= 3, "seed corpus in {} is missing", dir.display());
}

#[test]
fn hevc_streams_are_listed_as_stream_type_0x24_with_parameter_sets_before_irap() {
    let hvcc = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/codec_config/seed_hvcc"),
    )
    .unwrap();
    // Enhanced RTMP: keyframe + SequenceStart, FourCC hvc1.
    let mut header = vec![0x90, b'h', b'v', b'c', b'1'];
    header.extend_from_slice(&hvcc);
    // Keyframe + CodedFrames with a composition time of 40 ms, one IDR_W_RADL NAL unit.
    let mut frame = vec![
        0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 3, 0x26, 0x01, 0xaf,
    ];
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::new();
    let tag = |data: Vec<u8>, timestamp| FlvTag {
        tag_type: FlvTagType::Video,
        timestamp,
        stream_id: 0,
        data: data.into(),
    };
    muxer.write_tag(&tag(header, 0), &mut out).unwrap();
    muxer.write_tables(&mut out);
    muxer.write_tag(&tag(frame.clone(), 0), &mut out).unwrap();
    frame[0] = 0xA1; // inter frame
    frame[12] = 0x02; // TRAIL_R
    muxer.write_tag(&tag(frame, 40), &mut out).unwrap();

    let packets = parse_packets(&out);
    let pmt = &packets[1];
    assert_eq!(pmt.pid, 0x1000);
    // pointer, table id, length(2), program(2), version, section numbers(2), PCR PID(2), info len(2)
    assert_eq!(pmt.payload[13], 0x24, "HEVC stream type");
    let pes = reassemble(&packets);
    assert_eq!(pes.len(), 2);
    assert_eq!(&pes[0].data[..7], &[0, 0, 0, 1, 0x46, 0x01, 0x50]);
    assert!(
        pes[0]
            .data
            .windows(6)
            .any(|w| w == [0, 0, 0, 1, 0x40, 0x01]),
        "VPS inserted"
    );
    assert!(!pes[1]
        .data
        .windows(6)
        .any(|w| w == [0, 0, 0, 1, 0x40, 0x01]));
    assert_eq!(pes[0].pts, pes[0].dts.unwrap() + 40 * 90);
    assert!(pes[0].random_access && !pes[1].random_access);
}
