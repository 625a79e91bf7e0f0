//! Enhanced RTMP test media from real encoders: AV1 from libaom, Opus from libopus, HEVC from
//! x265, as FLV tags with the FourCC headers a publisher sends; ffmpeg and ffprobe run clean on
//! files.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use streamr_media::flv::{FlvTag, FlvTagType};
use streamr_media::fmp4::read_boxes;

/// The child boxes of `body` named `fourcc`.
pub fn children<'a>(body: &'a [u8], fourcc: &[u8; 4]) -> Vec<&'a [u8]> {
    read_boxes(body)
        .unwrap()
        .into_iter()
        .filter(|b| &b.fourcc == fourcc)
        .map(|b| b.body)
        .collect()
}

pub fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Runs ffmpeg on the lavfi source `input` with `output_args` (encoders, muxer) into `path`,
/// failing the test with ffmpeg's errors.
pub fn encode_lavfi(input: &str, output_args: &[&str], path: &Path) {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", input])
        .args(output_args)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// ffprobe's compact `stream=<entries>` lines for `path`, frames counted; fails the test if
/// ffprobe fails or says anything at warning level.
pub fn ffprobe_streams(path: &Path, entries: &str) -> String {
    let probe = Command::new("ffprobe")
        .args(["-v", "warning", "-count_frames", "-show_entries"])
        .arg(format!("stream={entries}"))
        .args(["-of", "compact"])
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(
        probe.status.success() && stderr.trim().is_empty(),
        "ffprobe: {stderr}"
    );
    String::from_utf8_lossy(&probe.stdout).into_owned()
}

/// Encodes `seconds` of Opus with libopus into Ogg and returns its packets: OpusHead, OpusTags,
/// then one packet per 20 ms frame.
pub fn opus_packets(dir: &Path, seconds: u32) -> Vec<Vec<u8>> {
    let path = dir.join("test.opus");
    encode_lavfi(
        &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        &[
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
        ],
        &path,
    );
    let data = std::fs::read(&path).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() {
        assert_eq!(&data[at..at + 4], b"OggS");
        let segments = usize::from(data[at + 26]);
        let table = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&data[body..body + usize::from(lace)]);
            body += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    packets
}

/// Encodes a second of 160x90 AV1 at 25 fps (a keyframe every 10 frames) with libaom into a
/// fragmented MP4 of one frame per fragment (the first frame, a keyframe, in the `moov`'s own
/// `mdat`, so that the `av1C` is filled in), and turns it into Enhanced RTMP tags: an `av01`
/// sequence start carrying the encoder's `av1C`, then one coded frame per temporal unit, each
/// led by a temporal delimiter OBU as a raw AV1 encoder writes it. Returns the tags and the
/// encoder's samples.
pub fn av1_tags(dir: &Path) -> (Vec<FlvTag>, Vec<Vec<u8>>) {
    super::require_tool("ffmpeg");
    let path = dir.join("av1.mp4");
    encode_lavfi(
        "testsrc=size=160x90:rate=25:duration=1",
        &[
            "-c:v",
            "libaom-av1",
            "-cpu-used",
            "8",
            "-usage",
            "realtime",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "frag_every_frame+default_base_moof",
            "-f",
            "mp4",
        ],
        &path,
    );
    let data = std::fs::read(&path).unwrap();
    let moov = children(&data, b"moov")[0];
    // av1C sits in the av01 sample entry, after fields read_boxes does not skip.
    let at = moov.windows(4).position(|w| w == b"av1C").unwrap();
    let size = be32(moov, at - 4) as usize;
    let av1c = moov[at + 4..at - 4 + size].to_vec();
    let mut header = vec![0x90, b'a', b'v', b'0', b'1'];
    header.extend_from_slice(&av1c);
    let mut tags = vec![FlvTag {
        tag_type: FlvTagType::Video,
        timestamp: 0,
        stream_id: 0,
        data: Bytes::from(header),
    }];
    let moofs = children(&data, b"moof");
    let mdats = children(&data, b"mdat");
    assert_eq!(moofs.len() + 1, mdats.len(), "one frame per fragment");
    let mut samples = Vec::new();
    let first = std::iter::once((None, mdats[0]));
    let rest = moofs.iter().map(Some).zip(mdats[1..].iter().copied());
    for (n, (moof, mdat)) in first.chain(rest).enumerate() {
        let keyframe = moof.is_none_or(|moof| sync_flag(moof));
        let mut body = vec![if keyframe { 0x91 } else { 0xA1 }, b'a', b'v', b'0', b'1'];
        body.extend_from_slice(&[0x12, 0x00]);
        body.extend_from_slice(mdat);
        samples.push(mdat.to_vec());
        tags.push(FlvTag {
            tag_type: FlvTagType::Video,
            timestamp: n as u32 * 40,
            stream_id: 0,
            data: Bytes::from(body),
        });
    }
    (tags, samples)
}

/// Whether the one sample of a fragment is a sync sample, from its `trun` or `tfhd` flags.
fn sync_flag(moof: &[u8]) -> bool {
    {
        let traf = children(moof, b"traf")[0];
        let tfhd = children(traf, b"tfhd")[0];
        let trun = children(traf, b"trun")[0];
        let tfhd_flags = be32(tfhd, 0) & 0x00ff_ffff;
        let trun_flags = be32(trun, 0) & 0x00ff_ffff;
        let mut sample_flags = None;
        if tfhd_flags & 0x20 != 0 {
            // base_data_offset, sample_description_index, default duration and size precede.
            let at = 8 + [0x1, 0x2, 0x8, 0x10]
                .iter()
                .map(|f| match (tfhd_flags & f != 0, *f) {
                    (true, 0x1) => 8,
                    (true, _) => 4,
                    _ => 0,
                })
                .sum::<usize>();
            sample_flags = Some(be32(tfhd, at));
        }
        let mut at = 8 + 4 * usize::from(trun_flags & 0x1 != 0);
        if trun_flags & 0x4 != 0 {
            sample_flags = Some(be32(trun, at));
            at += 4;
        }
        if trun_flags & 0x400 != 0 {
            at +=
                4 * usize::from(trun_flags & 0x100 != 0) + 4 * usize::from(trun_flags & 0x200 != 0);
            sample_flags = Some(be32(trun, at));
        }
        sample_flags.unwrap() & 0x0001_0000 == 0
    }
}

/// An Enhanced RTMP Opus audio tag: the header byte `first` (packet type in its low bits), the
/// FourCC, then `payload`.
pub fn opus_tag(first: u8, payload: &[u8], timestamp: u32) -> FlvTag {
    let mut data = vec![first, b'O', b'p', b'u', b's'];
    data.extend_from_slice(payload);
    FlvTag {
        tag_type: FlvTagType::Audio,
        timestamp,
        stream_id: 0,
        data: Bytes::from(data),
    }
}

/// Enhanced RTMP Opus tags for `packets` (OpusHead first, OpusTags skipped), 20 ms apart.
pub fn opus_tags(packets: &[Vec<u8>]) -> Vec<FlvTag> {
    let mut tags = vec![opus_tag(0x90, &packets[0], 0)];
    for (n, packet) in packets.iter().skip(2).enumerate() {
        tags.push(opus_tag(0x91, packet, n as u32 * 20));
    }
    tags
}

/// Encodes HEVC (no B-frames, access unit delimiters) with x265 into an Annex-B file and turns
/// it into Enhanced RTMP tags: an `hvc1` sequence start with an hvcC built from the parameter
/// sets, then one coded frame per access unit at 25 fps.
pub fn hevc_tags(dir: &Path) -> Vec<FlvTag> {
    super::require_tool("ffmpeg");
    let path = dir.join("test.hevc");
    encode_lavfi(
        "testsrc=size=320x240:rate=25:duration=6",
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-x265-params",
            "aud=1:keyint=25:min-keyint=25:bframes=0:log-level=error",
            "-f",
            "hevc",
        ],
        &path,
    );
    let data = std::fs::read(&path).unwrap();
    // Split at start codes.
    let mut nals: Vec<&[u8]> = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[start..end]);
    }
    let kind = |nal: &[u8]| (nal[0] >> 1) & 0x3f;
    let find = |t: u8| nals.iter().find(|n| kind(n) == t).unwrap().to_vec();
    let (vps, sps, pps) = (find(32), find(33), find(34));
    // hvcC: general profile/tier/level fields from the SPS (bytes 3..15 are free of emulation
    // prevention in x265's output).
    let mut hvcc = vec![1];
    hvcc.extend_from_slice(&sps[3..15]);
    hvcc.extend_from_slice(&[0xF0, 0x00, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F, 3]);
    for (t, unit) in [(32u8, &vps), (33, &sps), (34, &pps)] {
        hvcc.push(0x80 | t);
        hvcc.extend_from_slice(&1u16.to_be_bytes());
        hvcc.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        hvcc.extend_from_slice(unit);
    }
    let mut header = vec![0x90, b'h', b'v', b'c', b'1'];
    header.extend_from_slice(&hvcc);
    let mut tags = vec![FlvTag {
        tag_type: FlvTagType::Video,
        timestamp: 0,
        stream_id: 0,
        data: Bytes::from(header),
    }];
    // Group NAL units into access units at each AUD; drop AUDs and parameter sets.
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    for nal in &nals {
        match kind(nal) {
            35 => units.push(Vec::new()),
            32..=34 => {}
            _ => {
                if let Some(unit) = units.last_mut() {
                    unit.push(nal)
                }
            }
        }
    }
    for (n, unit) in units.iter().filter(|u| !u.is_empty()).enumerate() {
        let keyframe = unit.iter().any(|nal| (16..=23).contains(&kind(nal)));
        // CodedFramesX: no composition time.
        let mut body = vec![if keyframe { 0x93 } else { 0xA3 }, b'h', b'v', b'c', b'1'];
        for nal in unit {
            body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            body.extend_from_slice(nal);
        }
        tags.push(FlvTag {
            tag_type: FlvTagType::Video,
            timestamp: (n as u32) * 40,
            stream_id: 0,
            data: Bytes::from(body),
        });
    }
    tags
}
