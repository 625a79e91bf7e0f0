//! Box encoding invariants of the fMP4 muxer, for arbitrary samples and configurations: every
//! box size is consistent, each `trun` announces its samples, its data offset points at them
//! inside the `mdat`, and the `mdat` holds exactly the samples in order.

use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use streamr_media::fmp4::{
    box_paths, fragment, init_segment, parse_any_boxes, read_boxes, Sample, TrackConfig, TrackRun,
    AUDIO_TRACK_ID, VIDEO_TRACK_ID,
};

fn sample() -> impl Strategy<Value = Sample> {
    (
        1u32..10_000,
        -5_000i32..5_000,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(duration, composition_offset, is_sync, data)| Sample {
            duration,
            composition_offset,
            is_sync,
            data: Bytes::from(data),
        })
}

fn u32_at(data: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(data[offset..offset + 4].try_into().unwrap())
}

proptest! {
    #[test]
    fn fragments_are_consistent(
        video in proptest::collection::vec(sample(), 0..20),
        audio in proptest::collection::vec(sample(), 0..20),
        sequence in any::<u32>(),
        base in any::<u64>(),
    ) {
        let runs = [
            TrackRun { track_id: VIDEO_TRACK_ID, base_decode_time: base, samples: &video },
            TrackRun { track_id: AUDIO_TRACK_ID, base_decode_time: base / 2, samples: &audio },
        ];
        let built = fragment(sequence, &runs);
        if video.is_empty() && audio.is_empty() {
            prop_assert!(built.is_err());
            return Ok(());
        }
        let bytes = built.unwrap();
        let top = read_boxes(&bytes).unwrap();
        prop_assert_eq!(top.len(), 2);
        prop_assert_eq!(&top[0].fourcc, b"moof");
        prop_assert_eq!(&top[1].fourcc, b"mdat");
        let expected: Vec<u8> = video.iter().chain(&audio).flat_map(|s| s.data.to_vec()).collect();
        prop_assert_eq!(top[1].body, &expected[..]);
        let moof = read_boxes(top[0].body).unwrap();
        prop_assert_eq!(u32_at(moof[0].body, 4), sequence);
        let trafs: Vec<_> = moof.iter().filter(|b| &b.fourcc == b"traf").collect();
        let non_empty: Vec<&Vec<Sample>> = [&video, &audio].into_iter().filter(|s| !s.is_empty()).collect();
        prop_assert_eq!(trafs.len(), non_empty.len());
        let mdat_body = top[1].offset + 8;
        let mut expected_offset = mdat_body;
        for (traf, samples) in trafs.iter().zip(non_empty) {
            let children = read_boxes(traf.body).unwrap();
            let trun = children.iter().find(|b| &b.fourcc == b"trun").unwrap();
            prop_assert_eq!(trun.body[0], 1, "version 1: signed composition offsets");
            prop_assert_eq!(u32_at(trun.body, 4) as usize, samples.len());
            prop_assert_eq!(u32_at(trun.body, 8) as usize, expected_offset);
            for (i, s) in samples.iter().enumerate() {
                let at = 12 + i * 16;
                prop_assert_eq!(u32_at(trun.body, at), s.duration);
                prop_assert_eq!(u32_at(trun.body, at + 4) as usize, s.data.len());
                prop_assert_eq!(u32_at(trun.body, at + 12) as i32, s.composition_offset);
            }
            expected_offset += samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
        prop_assert!(box_paths(&bytes).is_ok());
    }

    #[test]
    fn init_segments_of_accepted_configurations_are_consistent(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        for config in [TrackConfig::avc(&data), TrackConfig::hevc(&data), TrackConfig::aac(&data), TrackConfig::opus(&data)].into_iter().flatten() {
            let init = init_segment(&[config]).unwrap();
            let paths = box_paths(&init).unwrap();
            prop_assert!(paths.contains(&"moov/trak/mdia/minf/stbl/stsd".to_string()));
            prop_assert!(paths.contains(&"moov/mvex/trex".to_string()));
        }
    }

    #[test]
    fn the_box_walker_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse_any_boxes(&data);
    }
}

#[test]
fn opus_head_becomes_a_big_endian_dops() {
    // OpusHead: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, mapping family 0.
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    let config = TrackConfig::opus(&head).unwrap();
    assert_eq!(config.codec_string(), "opus");
    let init = init_segment(&[config]).unwrap();
    let dops = [0u8, 2, 0x01, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0];
    assert!(init
        .windows(dops.len() + 4)
        .any(|w| w[..4] == *b"dOps" && w[4..] == dops));
}

#[test]
fn codec_strings_of_the_seed_configurations() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/codec_config");
    let avc = TrackConfig::avc(&std::fs::read(corpus.join("seed_avcc")).unwrap()).unwrap();
    assert!(
        avc.codec_string().starts_with("avc1."),
        "{}",
        avc.codec_string()
    );
    let aac = TrackConfig::aac(&[0x12, 0x10]).unwrap();
    assert_eq!(aac.codec_string(), "mp4a.40.2");
    assert_eq!(aac.timescale(), 44_100);
}

#[test]
fn seed_corpus_of_the_fmp4_fuzz_target_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/fmp4");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        parse_any_boxes(&data);
        count += 1;
    }
    assert!(count >= 3, "seed corpus in {} is missing", dir.display());
    let fragmented = std::fs::read(dir.join("seed_fragmented.mp4")).unwrap();
    assert!(
        parse_any_boxes(&fragmented) > 10,
        "ffmpeg's fragmented MP4 walks fully"
    );
}
