//! Fuzzes the RTMP server session with arbitrary client bytes, accepting every request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_media::rtmp::session::ServerSession::replay_accepting_all(data);
});
