//! Fuzzes the server side of the RTMP handshake with arbitrary client bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::rtmp::handshake::ServerHandshake::new().process(&mut data.into());
});
