use super::*;
use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// Feeds `bytes` to `decoder` in pieces of the given sizes (cycled), collecting messages.
fn decode_in_pieces(
    decoder: &mut ChunkDecoder,
    bytes: &[u8],
    pieces: &[usize],
) -> Result<Vec<RawMessage>, ChunkError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let take = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        while let Some(message) = decoder.decode(&mut buf)? {
            out.push(message);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(out)
}

fn set_chunk_size(size: u32) -> RawMessage {
    RawMessage {
        chunk_stream_id: 2,
        timestamp: 0,
        type_id: 1,
        message_stream_id: 0,
        payload: Bytes::copy_from_slice(&size.to_be_bytes()),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Send(RawMessage),
    ChangeChunkSize(u32),
}

fn arb_timestamp() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..100_000, 0x00FF_FFF0u32..0x0100_0010, any::<u32>()]
}

fn arb_message() -> impl Strategy<Value = RawMessage> {
    (
        prop_oneof![3u32..10, 60u32..70, 300u32..330, Just(65599u32)],
        arb_timestamp(),
        prop_oneof![Just(8u8), Just(9u8), Just(18u8), Just(20u8), 3u8..=7],
        0u32..3,
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(csid, timestamp, type_id, msid, payload)| RawMessage {
            chunk_stream_id: csid,
            timestamp,
            type_id,
            message_stream_id: msid,
            payload: Bytes::from(payload),
        })
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            8 => arb_message().prop_map(Op::Send),
            1 => prop_oneof![1u32..200, 4096u32..4097, 60_000u32..70_000].prop_map(Op::ChangeChunkSize),
        ],
        1..25,
    )
}

/// Splits bytes from `encode_shared_media` (csid < 64) into its chunks.
fn split_shared(bytes: &[u8], message: &RawMessage, chunk_size: usize) -> Vec<Vec<u8>> {
    let extended = message.timestamp >= 0x00FF_FFFF;
    let ext = if extended { 4 } else { 0 };
    let mut chunks = Vec::new();
    let mut pos = 0;
    let mut remaining = message.payload.len();
    let mut header = 12 + ext;
    loop {
        let take = remaining.min(chunk_size);
        chunks.push(bytes[pos..pos + header + take].to_vec());
        pos += header + take;
        remaining -= take;
        header = 1 + ext;
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(pos, bytes.len());
    chunks
}

proptest! {
    #[test]
    fn encoded_messages_decode_back(ops in arb_ops(), pieces in prop::collection::vec(1usize..300, 1..8)) {
        let mut encoder = ChunkEncoder::new();
        let mut bytes = BytesMut::new();
        let mut expected = Vec::new();
        for op in ops {
            let message = match op {
                Op::Send(m) => m,
                Op::ChangeChunkSize(size) => set_chunk_size(size),
            };
            encoder.encode(message.clone(), &mut bytes).unwrap();
            expected.push(message);
        }
        let mut decoder = ChunkDecoder::default();
        let decoded = decode_in_pieces(&mut decoder, &bytes, &pieces).unwrap();
        prop_assert_eq!(&decoded, &expected);
        // All at once takes the in-place reassembly path for multi-chunk messages.
        let all_at_once = decode_chunk_stream(&bytes, ChunkLimits::default()).unwrap();
        prop_assert_eq!(all_at_once, expected);
    }

    #[test]
    fn interleaved_chunk_streams_decode_back(
        messages in prop::collection::vec(arb_message(), 1..6),
        chunk_size in prop_oneof![1u32..64, 128u32..129, 4096u32..4097],
        schedule in prop::collection::vec(any::<prop::sample::Index>(), 0..400),
    ) {
        // One message per chunk stream, chunks interleaved in a random order.
        let messages: Vec<RawMessage> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| RawMessage { chunk_stream_id: 3 + i as u32, ..m })
            .collect();
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = messages
            .iter()
            .map(|m| {
                let bytes = encode_shared_media(m, chunk_size).unwrap();
                split_shared(&bytes, m, chunk_size as usize).into()
            })
            .collect();
        let mut stream = BytesMut::new();
        stream.put_slice(&{
            let mut b = BytesMut::new();
            ChunkEncoder::new().encode(set_chunk_size(chunk_size), &mut b).unwrap();
            b
        });
        let mut order = schedule.into_iter();
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let pick = order.next().map(|ix| live[ix.index(live.len())]).unwrap_or(live[0]);
            let chunk = queues[pick].pop_front().unwrap();
            stream.put_slice(&chunk);
        }
        let mut decoder = ChunkDecoder::default();
        let mut decoded = decode_in_pieces(&mut decoder, &stream, &[7, 100, 1]).unwrap();
        prop_assert_eq!(decoded.remove(0), set_chunk_size(chunk_size));
        decoded.sort_by_key(|m| m.chunk_stream_id);
        prop_assert_eq!(&decoded, &messages);
        let mut all_at_once = decode_chunk_stream(&stream, ChunkLimits::default()).unwrap();
        all_at_once.remove(0);
        all_at_once.sort_by_key(|m| m.chunk_stream_id);
        prop_assert_eq!(all_at_once, messages);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut decoder = ChunkDecoder::new(ChunkLimits { max_message_size: 4096, max_chunk_streams: 8 });
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }
}

#[test]
fn type_3_first_chunk_on_unknown_stream_names_the_stream() {
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::from(&[0xC0 | 5, 1, 2, 3][..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        ChunkError::UnknownChunkStream {
            csid: 5,
            fmt: 3,
            offset: 0
        }
    ));
    assert!(err.to_string().contains("chunk stream 5"), "{err}");
}

#[test]
fn set_chunk_size_zero_and_high_bit_are_rejected() {
    for size in [0u32, 0x8000_0000, u32::MAX] {
        let mut decoder = ChunkDecoder::default();
        let mut buf = BytesMut::new();
        buf.put_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]);
        buf.put_u32(size);
        match decoder.decode(&mut buf) {
            Err(ChunkError::InvalidChunkSize { size: s, csid: 2 }) => assert_eq!(s, size),
            other => panic!("expected InvalidChunkSize for {size}, got {other:?}"),
        }
    }
}

#[test]
fn largest_chunk_size_is_accepted() {
    let mut decoder = ChunkDecoder::default();
    let mut bytes = BytesMut::new();
    ChunkEncoder::new()
        .encode(set_chunk_size(MAX_CHUNK_SIZE), &mut bytes)
        .unwrap();
    decoder.decode(&mut bytes).unwrap().unwrap();
    assert_eq!(decoder.chunk_size(), MAX_CHUNK_SIZE);
}

#[test]
fn message_over_the_limit_is_refused_before_buffering() {
    let mut decoder = ChunkDecoder::new(ChunkLimits {
        max_message_size: 1000,
        ..ChunkLimits::default()
    });
    // Type 0 header on csid 6 announcing 1001 bytes of video.
    let mut buf = BytesMut::from(&[0x06, 0, 0, 0, 0, 0x03, 0xE9, 9, 1, 0, 0, 0][..]);
    match decoder.decode(&mut buf) {
        Err(ChunkError::MessageTooLarge {
            csid: 6,
            length: 1001,
            max: 1000,
            ..
        }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

#[test]
fn too_many_chunk_streams_is_an_error() {
    let mut decoder = ChunkDecoder::new(ChunkLimits {
        max_chunk_streams: 2,
        ..ChunkLimits::default()
    });
    let mut buf = BytesMut::new();
    for csid in [3u8, 4, 5] {
        buf.put_slice(&[csid, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0xAF]);
    }
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(ChunkError::TooManyChunkStreams {
            csid: 5,
            max: 2,
            ..
        })
    ));
}

#[test]
fn incomplete_chunk_reserves_what_it_needs() {
    let mut decoder = ChunkDecoder::default();
    // Type 0 header announcing 100 bytes; only the header has arrived.
    let mut buf = BytesMut::from(&[0x04, 0, 0, 10, 0, 0, 100, 8, 1, 0, 0, 0][..]);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    assert_eq!(buf.len(), 12, "nothing consumed while incomplete");
    assert!(buf.capacity() >= 112);
}

#[test]
fn abort_discards_the_partial_message() {
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::new();
    // 200-byte message on csid 4: only the first 128-byte chunk arrives.
    buf.put_slice(&[0x04, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0]);
    buf.put_slice(&[0xAA; 128]);
    // Abort csid 4.
    buf.put_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
    // A fresh 1-byte message on csid 4 with a type 1 header.
    buf.put_slice(&[0x44, 0, 0, 5, 0, 0, 1, 9, 0xBB]);
    let abort = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(abort.type_id, 2);
    let next = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(&next.payload[..], &[0xBB]);
    assert_eq!(next.timestamp, 5);
}

#[test]
fn extended_timestamp_continuations_decode_with_or_without_repeat() {
    let ts = 0x0123_4567u32;
    let mut header = BytesMut::new();
    header.put_slice(&[0x06, 0xFF, 0xFF, 0xFF, 0, 0, 200, 9, 1, 0, 0, 0]);
    header.put_u32(ts);
    for repeat in [true, false] {
        let mut buf = header.clone();
        buf.put_slice(&[1u8; 128]);
        buf.put_u8(0xC6);
        if repeat {
            buf.put_u32(ts);
        }
        buf.put_slice(&[2u8; 72]);
        let mut decoder = ChunkDecoder::default();
        let message = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoder.bytes_consumed(), if repeat { 221 } else { 217 });
        assert_eq!(message.timestamp, ts);
        assert_eq!(message.payload.len(), 200);
        assert!(
            message.payload[128..].iter().all(|&b| b == 2),
            "repeat={repeat}"
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn single_chunk_payload_is_not_copied() {
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::from(&[0x04, 0, 0, 1, 0, 0, 3, 8, 1, 0, 0, 0, 7, 8, 9][..]);
    let start = buf.as_ptr() as usize + 12;
    let message = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(message.payload.as_ptr() as usize, start);
}

#[test]
fn shared_media_has_full_header_and_decodes_on_a_fresh_decoder() {
    let message = RawMessage {
        chunk_stream_id: 6,
        timestamp: 0x0100_0000,
        type_id: 9,
        message_stream_id: 1,
        payload: Bytes::from(vec![0x17; 10_000]),
    };
    let shared = encode_shared_media(&message, 4096).unwrap();
    assert_eq!(shared[0], 0x06, "type 0 header on csid 6");
    let mut decoder = ChunkDecoder::default();
    decoder.set_chunk_size(4096).unwrap();
    // Decode it after unrelated traffic on the same chunk stream: the result must not change.
    let mut buf = BytesMut::new();
    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(4096).unwrap();
    let other = RawMessage {
        timestamp: 5,
        payload: Bytes::from_static(b"x"),
        ..message.clone()
    };
    encoder.encode(other.clone(), &mut buf).unwrap();
    buf.put_slice(&shared);
    buf.put_slice(&shared);
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), other);
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), message);
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), message);
}

#[test]
fn encoder_refuses_reserved_chunk_stream_ids() {
    let mut encoder = ChunkEncoder::new();
    for csid in [0, 1, 65600] {
        let message = RawMessage {
            chunk_stream_id: csid,
            timestamp: 0,
            type_id: 8,
            message_stream_id: 1,
            payload: Bytes::new(),
        };
        assert!(matches!(
            encoder.encode(message, &mut BytesMut::new()),
            Err(ChunkError::InvalidChunkStreamId { .. })
        ));
    }
}

/// A type 0 chunk header on `csid` (2..=63) declaring a video message of `length` bytes.
fn declaring_header(csid: u8, length: u32) -> [u8; 12] {
    let [_, l0, l1, l2] = length.to_be_bytes();
    [csid, 0, 0, 0, l0, l1, l2, 9, 1, 0, 0, 0]
}

#[test]
fn a_declared_length_reserves_nothing_beyond_the_bytes_received() {
    // The largest length the 24-bit field holds, within the default limit.
    const DECLARED: u32 = 0x00FF_FFFF;
    // With the largest chunk size, one chunk may carry the whole declared message.
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::new();
    ChunkEncoder::new()
        .encode(set_chunk_size(MAX_CHUNK_SIZE), &mut buf)
        .unwrap();
    decoder.decode(&mut buf).unwrap().unwrap();
    buf.put_slice(&declaring_header(3, DECLARED));
    buf.put_slice(&[0u8; 1024]);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    assert!(
        buf.capacity() < 64 * 1024,
        "input buffer reserved {} bytes for 1 KiB received",
        buf.capacity()
    );

    // With small chunks, every chunk stream may hold a partial message.
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::new();
    // Chunk stream ids 3..=63 fit the one-byte basic header.
    for csid in 3..=63u8 {
        buf.put_slice(&declaring_header(csid, DECLARED));
        buf.put_slice(&[0u8; DEFAULT_CHUNK_SIZE as usize]);
    }
    let received = buf.len();
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    assert!(
        decoder.buffered_capacity() <= 2 * received,
        "partial messages reserved {} bytes for {received} received",
        decoder.buffered_capacity()
    );
}

/// Decodes every message in `bytes`, which must all be whole.
fn decode_whole(bytes: &[u8]) -> Vec<RawMessage> {
    let mut decoder = ChunkDecoder::default();
    decode_in_pieces(&mut decoder, bytes, &[bytes.len()]).unwrap()
}

#[test]
fn set_chunk_size_off_message_stream_0_is_data_for_encoder_and_decoder_alike() {
    // Found by the chunk_decoder fuzz target: an empty type 1 message on message stream
    // 0xFF00000C decodes (the decoder only applies Set Chunk Size on stream 0), so the encoder
    // must not refuse it as a short Set Chunk Size.
    let found = [
        0x02, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01, 0x0C, 0x00, 0x00, 0xFF,
    ];
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::from(&found[..]);
    let message = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        (message.type_id, message.message_stream_id),
        (1, 0xFF00_000C)
    );
    assert!(message.payload.is_empty());

    // A well-formed one must not switch the encoder's chunk size either: the decoder keeps 128.
    let mut ignored = set_chunk_size(1);
    ignored.message_stream_id = 1;
    let media = RawMessage {
        chunk_stream_id: 6,
        timestamp: 40,
        type_id: 9,
        message_stream_id: 1,
        payload: Bytes::from(vec![7u8; 300]),
    };
    let messages = [message, ignored, media];
    let mut encoder = ChunkEncoder::new();
    let mut chunks = BytesMut::new();
    for message in &messages {
        encoder.encode(message, &mut chunks).unwrap();
    }
    assert_eq!(encoder.chunk_size(), DEFAULT_CHUNK_SIZE);
    assert_eq!(decode_whole(&chunks), messages);
}
