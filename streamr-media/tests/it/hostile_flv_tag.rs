//! Runs the FLV tag classification fuzz entry point over the committed seed corpus
//! (`fuzz/corpus/flv_tag`), so the fuzz target's code path is also exercised by `cargo test`.

use std::path::Path;
use streamr_media::flv::tag::{
    classify_as_audio_and_video, classify_multitrack, Codec, MediaKind, PacketKind, TagError,
};

fn seed(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/flv_tag")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed {} unreadable: {e}", path.display()))
}

#[test]
fn every_seed_classifies_without_panicking_and_offsets_stay_in_bounds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/flv_tag");
    let mut seen = 0;
    // Only the committed seeds (`seed_*`); libFuzzer adds hash-named inputs beside them.
    for entry in std::fs::read_dir(&dir).expect("seed corpus directory") {
        let path = entry.expect("corpus entry").path();
        let is_seed = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("seed_"));
        if !is_seed {
            continue;
        }
        let body = std::fs::read(&path).expect("seed file");
        for info in classify_as_audio_and_video(&body).into_iter().flatten() {
            assert!(info.payload_offset <= body.len());
        }
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let _ = classify_multitrack(kind, &body);
        }
        seen += 1;
    }
    assert_eq!(seen, 10, "committed seed files");
}

#[test]
fn ffmpeg_multitrack_seeds_read_as_their_tracks_configuration() {
    for (name, kind, packet) in [
        (
            "seed_multitrack_av1_sequence_start",
            MediaKind::Video,
            PacketKind::SequenceHeader,
        ),
        (
            "seed_multitrack_aac_sequence_start",
            MediaKind::Audio,
            PacketKind::SequenceHeader,
        ),
        (
            "seed_multitrack_aac_channel_layout",
            MediaKind::Audio,
            PacketKind::MultichannelConfig,
        ),
    ] {
        let info = classify_multitrack(kind, &seed(name))
            .expect("reads")
            .expect("a multitrack packet");
        assert_eq!(info.packet, packet, "{name}");
        assert_eq!(info.tracks.len(), 1, "{name}");
        assert!(info.is_configuration(), "{name}");
    }
}

#[test]
fn seeds_classify_as_the_codecs_they_were_captured_from() {
    let [_, video] = classify_as_audio_and_video(&seed("seed_avc_sequence_header"));
    let video = video.expect("AVC sequence header");
    assert_eq!(video.codec, Codec::H264);
    assert!(video.is_sequence_header() && video.is_keyframe);

    let [_, video] = classify_as_audio_and_video(&seed("seed_hevc_enhanced_coded_frames"));
    assert_eq!(video.expect("HEVC coded frame").composition_time, 80);

    let [audio, _] = classify_as_audio_and_video(&seed("seed_aac_sequence_header"));
    assert!(audio.expect("AAC sequence header").is_sequence_header());

    let [_, video] = classify_as_audio_and_video(&seed("seed_truncated_avc"));
    assert!(matches!(video, Err(TagError::Truncated { .. })));
}
