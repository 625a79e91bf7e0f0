//! RTMP chunk decode throughput: our `ChunkDecoder` beside rml_rtmp's `ChunkDeserializer` on the
//! same input in the same run.
//!
//! Inputs: the client-to-server chunk stream of a recorded ffmpeg publish (handshake stripped;
//! streamr-media/tests/data/rtmp/ffmpeg_publish.bin) and synthetic publisher streams at outgoing
//! chunk sizes of 4 KiB (what encoders use: ffmpeg and OBS send 4096) and 60 KiB (atypical, an
//! upper bound), with 25 fps video (a 40 KiB keyframe every 25 frames, 6 KiB inter frames) and
//! 350-byte audio frames every 23 ms, header-compressed by `ChunkEncoder`.
//!
//! Both decoders are timed the same way: each starts from the input as a byte slice and takes one
//! copy of it, ours into the `BytesMut` a socket read would fill, rml_rtmp into its own buffer
//! (its API appends what it is given). Both apply Set Chunk Size and hand out every message;
//! before timing, the bench asserts that both hand out the same messages: a hash over every
//! message's (type, timestamp, payload) in order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rml_rtmp::chunk_io::ChunkDeserializer;
use streamr_media::rtmp::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use streamr_media::rtmp::handshake::HANDSHAKE_PACKET_SIZE;
use tokio_util::codec::{Decoder, Encoder};

fn recorded_session() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../streamr-media/tests/data/rtmp/ffmpeg_publish.bin"
    );
    let capture = std::fs::read(path).expect("recorded ffmpeg session");
    capture[1 + 2 * HANDSHAKE_PACKET_SIZE..].to_vec()
}

fn synthetic_stream(chunk_size: u32, seconds: u32) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut out = BytesMut::new();
    let message = |csid, timestamp, type_id, payload: Bytes| RawMessage {
        chunk_stream_id: csid,
        timestamp,
        type_id,
        message_stream_id: 1,
        payload,
    };
    let set_chunk_size = RawMessage {
        chunk_stream_id: 2,
        timestamp: 0,
        type_id: 1,
        message_stream_id: 0,
        payload: Bytes::copy_from_slice(&chunk_size.to_be_bytes()),
    };
    encoder.encode(set_chunk_size, &mut out).unwrap();
    let keyframe = Bytes::from(vec![0x17; 40 * 1024]);
    let inter = Bytes::from(vec![0x27; 6 * 1024]);
    let audio = Bytes::from(vec![0xAF; 350]);
    let mut audio_ts = 0;
    for frame in 0..seconds * 25 {
        let ts = frame * 40;
        while audio_ts <= ts {
            encoder
                .encode(message(4, audio_ts, 8, audio.clone()), &mut out)
                .unwrap();
            audio_ts += 23;
        }
        let video = if frame % 25 == 0 { &keyframe } else { &inter };
        encoder
            .encode(message(6, ts, 9, video.clone()), &mut out)
            .unwrap();
    }
    out.to_vec()
}

/// One decoded message, as both decoders report it.
fn fold_message(hasher: &mut DefaultHasher, type_id: u8, timestamp: u32, payload: &[u8]) {
    type_id.hash(hasher);
    timestamp.hash(hasher);
    payload.hash(hasher);
}

/// Decodes `input` with our decoder; returns the message count and, when `hash` is set, a hash
/// over every message's (type, timestamp, payload).
fn decode_ours(input: &[u8], hash: bool) -> (usize, u64) {
    let mut buf = BytesMut::from(input);
    let mut decoder = ChunkDecoder::default();
    let mut hasher = DefaultHasher::new();
    let mut count = 0;
    while let Some(message) = decoder.decode(&mut buf).unwrap() {
        if hash {
            fold_message(
                &mut hasher,
                message.type_id,
                message.timestamp,
                &message.payload,
            );
        }
        black_box(message);
        count += 1;
    }
    (count, hasher.finish())
}

/// Like [`decode_ours`] with rml_rtmp's `ChunkDeserializer`.
fn decode_rml(input: &[u8], hash: bool) -> (usize, u64) {
    let mut deserializer = ChunkDeserializer::new();
    let mut hasher = DefaultHasher::new();
    let mut count = 0;
    let mut next = deserializer.get_next_message(input).unwrap();
    while let Some(message) = next {
        if message.type_id == 1 {
            let size = u32::from_be_bytes(message.data[..4].try_into().unwrap()) & 0x7FFF_FFFF;
            deserializer.set_max_chunk_size(size as usize).unwrap();
        }
        if hash {
            fold_message(
                &mut hasher,
                message.type_id,
                message.timestamp.value,
                &message.data,
            );
        }
        black_box(message);
        count += 1;
        next = deserializer.get_next_message(&[]).unwrap();
    }
    (count, hasher.finish())
}

fn chunk_decode(c: &mut Criterion) {
    let inputs = [
        ("ffmpeg_session", recorded_session()),
        ("synthetic_4KiB_chunks", synthetic_stream(4096, 4)),
        (
            "synthetic_60KiB_chunks_atypical",
            synthetic_stream(60 * 1024, 4),
        ),
    ];
    let mut group = c.benchmark_group("chunk_decode");
    for (name, input) in &inputs {
        // Both decoders must hand out the same messages, or the comparison means nothing.
        let ours = decode_ours(input, true);
        assert!(ours.0 > 0, "{name}: no messages");
        assert_eq!(ours, decode_rml(input, true), "{name}");
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("streamr", name), input, |b, input| {
            b.iter(|| decode_ours(input, false))
        });
        group.bench_with_input(BenchmarkId::new("rml_rtmp", name), input, |b, input| {
            b.iter(|| decode_rml(input, false))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = chunk_decode
}
criterion_main!(benches);
