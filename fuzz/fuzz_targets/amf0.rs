//! Fuzzes the AMF0 decoder with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::amf0::decode_all(data);
});
