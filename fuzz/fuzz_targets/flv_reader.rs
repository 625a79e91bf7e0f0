//! Fuzzes the incremental FLV reader: arbitrary bytes must give tags or an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::flv::FlvReader::read_all(data);
});
