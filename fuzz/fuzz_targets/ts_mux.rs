//! Fuzzes the FLV→MPEG-TS muxer with arbitrary tag sequences: it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    streamr_media::ts::mux_arbitrary_tags(data);
});
