//! Fuzzes the RTMP chunk decoder with arbitrary chunk-stream bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::rtmp::chunk::decode_chunk_stream(data, Default::default());
});
