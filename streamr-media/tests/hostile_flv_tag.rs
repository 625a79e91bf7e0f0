//! Runs the FLV tag classification fuzz entry point over the committed seed corpus
//! (`fuzz/corpus/flv_tag`), so the fuzz target's code path is also exercised by `cargo test`.

use std::path::Path;
use streamr_media::flv::tag::{classify_as_audio_and_video, Codec, TagError};

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
    for entry in std::fs::read_dir(&dir).expect("seed corpus directory") {
        let body = std::fs::read(entry.expect("corpus entry").path()).expect("seed file");
        for info in classify_as_audio_and_video(&body).into_iter().flatten() {
            assert!(info.payload_offset <= body.len());
        }
        seen += 1;
    }
    assert!(seen >= 5, "seed corpus has only {seen} files");
}

#[test]
fn seeds_classify_as_the_codecs_they_were_captured_from() {
    let [_, video] = classify_as_audio_and_video(&seed("avc_sequence_header"));
    let video = video.expect("AVC sequence header");
    assert_eq!(video.codec, Codec::H264);
    assert!(video.is_sequence_header() && video.is_keyframe);

    let [_, video] = classify_as_audio_and_video(&seed("hevc_enhanced_coded_frames"));
    assert_eq!(video.expect("HEVC coded frame").composition_time, 80);

    let [audio, _] = classify_as_audio_and_video(&seed("aac_sequence_header"));
    assert!(audio.expect("AAC sequence header").is_sequence_header());

    let [_, video] = classify_as_audio_and_video(&seed("truncated_avc"));
    assert!(matches!(video, Err(TagError::Truncated { .. })));
}
