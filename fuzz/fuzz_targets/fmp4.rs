//! Fuzzes the ISO BMFF box walker, the SPS picture-size readers and the fMP4 track
//! configurations (each accepted configuration must also build an init segment).
#![no_main]

use streamr_media::fmp4::{
    avc_picture_size, hevc_picture_size, init_segment, parse_any_boxes, TrackConfig,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parse_any_boxes(data);
    let _ = avc_picture_size(data);
    let _ = hevc_picture_size(data);
    for config in [
        TrackConfig::avc(data),
        TrackConfig::hevc(data),
        TrackConfig::aac(data),
        TrackConfig::opus(data),
    ]
    .into_iter()
    .flatten()
    {
        let init = init_segment(&[config]).expect("an accepted configuration builds");
        assert!(parse_any_boxes(&init) > 0);
    }
});
