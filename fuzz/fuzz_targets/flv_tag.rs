//! Fuzzes the FLV audio/video tag body classification (single-track and Enhanced RTMP
//! multitrack headers) with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use streamr_media::flv::tag::{classify_as_audio_and_video, classify_multitrack, MediaKind};
    let _ = classify_as_audio_and_video(data);
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let _ = classify_multitrack(kind, data);
    }
});
