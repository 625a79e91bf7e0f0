//! Fuzzes the FLV audio/video tag body classification with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::flv::tag::classify_as_audio_and_video(data);
});
