//! Fuzzes the AVC, HEVC and AAC configuration parsers and the Annex-B/ADTS converters.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    streamr_media::codec::parse_any_config(data);
});
