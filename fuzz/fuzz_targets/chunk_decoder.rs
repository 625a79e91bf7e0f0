//! Fuzzes the RTMP chunk decoder with arbitrary chunk-stream bytes: decoding never panics, and
//! the messages decoded before the stream ends or fails, chunked again by the encoder, decode back
//! to the same messages.
#![no_main]

use bytes::BytesMut;
use streamr_media::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, RawMessage};
use tokio_util::codec::{Decoder, Encoder};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (messages, _) = decode(data);
    let mut encoder = ChunkEncoder::new();
    let mut chunks = BytesMut::new();
    for message in &messages {
        encoder
            .encode(message, &mut chunks)
            .expect("a decoded message encodes");
    }
    let (back, end) = decode(&chunks);
    assert!(end.is_ok(), "re-encoded messages fail to decode: {end:?}");
    assert_eq!(back, messages, "re-encoded messages decode differently");
});

/// Decodes messages until the input ends or fails, returning them and how it stopped.
fn decode(data: &[u8]) -> (Vec<RawMessage>, Result<(), String>) {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(data);
    let mut messages = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(e) => return (messages, Err(e.to_string())),
        }
    }
}
