//! Runs the public entry points of the RTMP/AMF0 fuzz targets over their committed seed corpora
//! (fuzz/corpus/<target>/) and the recorded ffmpeg session, and throws hostile input at them.

use std::path::PathBuf;

use bytes::BytesMut;
use proptest::prelude::*;
use streamr_media::amf0::{self, Amf0Value};
use streamr_media::rtmp::chunk::{decode_chunk_stream, ChunkLimits};
use streamr_media::rtmp::handshake::{HandshakeProgress, ServerHandshake};
use streamr_media::rtmp::message::{Command, RtmpMessage};
use streamr_media::rtmp::session::{MediaKind, ServerEvent, ServerSession};
use streamr_test_support::fuzz_corpus::corpus_entries;

/// The committed seeds (`seed_*`) of a target. Entries a local fuzzing run added (hash names,
/// not committed) go through the entry point too, without assertions on the result.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let (seeds, found): (Vec<_>, Vec<_>) = corpus_entries(target)
        .into_iter()
        .partition(|(name, _)| name.starts_with("seed_"));
    for (_, bytes) in found {
        run_entry_point(target, &bytes);
    }
    assert!(!seeds.is_empty(), "no committed seeds for {target}");
    seeds
}

fn run_entry_point(target: &str, bytes: &[u8]) {
    match target {
        "amf0" => drop(amf0::decode_all(bytes)),
        "chunk_decoder" => drop(decode_chunk_stream(bytes, ChunkLimits::default())),
        "handshake" => drop(ServerHandshake::new().process(&mut BytesMut::from(bytes))),
        _ => drop(ServerSession::replay_accepting_all(bytes)),
    }
}

fn capture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtmp/ffmpeg_publish.bin");
    std::fs::read(path).unwrap()
}

const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

#[test]
fn amf0_seeds_decode_and_reencode_identically() {
    for (name, bytes) in corpus("amf0") {
        let values = amf0::decode_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!values.is_empty(), "{name}");
        let again = amf0::encode_all(&values).unwrap();
        assert_eq!(amf0::decode_all(&again).unwrap(), values, "{name}");
    }
}

#[test]
fn chunk_decoder_seeds_yield_the_expected_messages() {
    for (name, bytes) in corpus("chunk_decoder") {
        let messages = decode_chunk_stream(&bytes, ChunkLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!messages.is_empty(), "{name}");
        if name == "seed_ffmpeg_commands_and_media" {
            let first_command =
                messages
                    .iter()
                    .find_map(|m| match RtmpMessage::decode(m).unwrap() {
                        RtmpMessage::Command {
                            command: Command { name, .. },
                            ..
                        } => Some(name),
                        _ => None,
                    });
            assert_eq!(first_command.as_deref(), Some("connect"));
        }
        if name == "seed_extended_timestamp" {
            assert_eq!(messages[0].timestamp, 0x0123_4567);
            assert_eq!(messages[0].payload.len(), 200);
        }
    }
}

#[test]
fn handshake_seeds_complete_or_fail_cleanly() {
    for (name, bytes) in corpus("handshake") {
        let mut server = ServerHandshake::new();
        let result = server.process(&mut BytesMut::from(&bytes[..]));
        match name.as_str() {
            "seed_ffmpeg_c0c1c2" => {
                assert_eq!(result.unwrap(), HandshakeProgress::Done);
                assert!(
                    server.client_digest_scheme().is_some(),
                    "ffmpeg sends a digest C1 and gets a digest S1"
                );
            }
            "seed_streamr_load_c0c1c2" => {
                assert_eq!(result.unwrap(), HandshakeProgress::Done, "{name}");
            }
            "seed_simple_c0c1" => {
                assert_eq!(result.unwrap(), HandshakeProgress::InProgress);
                let out = server.take_output();
                assert_eq!(&out[1 + 1536..], &bytes[1..], "simple handshake echoes C1");
            }
            _ => assert!(result.is_err(), "{name}"),
        }
    }
}

#[test]
fn session_seeds_reach_publishing_or_playing() {
    for (name, bytes) in corpus("session") {
        let (events, result) = ServerSession::replay_accepting_all(&bytes);
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
        // Seeds recorded from real players (ffmpeg, streamr-load) end in `play` of live/cap.
        let reached = if name.ends_with("_play") {
            events.iter().any(|e| {
                matches!(e, ServerEvent::PlayRequested { stream_key, .. } if stream_key == "cap")
            })
        } else {
            events.iter().any(|e| {
                matches!(e, ServerEvent::PublishRequested { stream_key, .. } if stream_key == "key")
            })
        };
        assert!(reached, "{name}: {events:?}");
    }
}

#[test]
fn whole_ffmpeg_capture_replays_to_the_end() {
    let (events, result) = ServerSession::replay_accepting_all(&capture());
    result.unwrap();
    let video = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ServerEvent::Media {
                    kind: MediaKind::Video,
                    ..
                }
            )
        })
        .count();
    assert!((45..=60).contains(&video), "{video} video frames");
    assert!(events
        .iter()
        .any(|e| matches!(e, ServerEvent::Metadata { metadata, .. }
        if metadata.property("width").and_then(Amf0Value::as_number) == Some(320.0))));
    assert!(matches!(
        events.last(),
        Some(ServerEvent::PublishFinished { .. })
    ));
}

#[test]
fn truncated_capture_never_errors_only_stops() {
    let capture = capture();
    for cut in [
        0,
        1,
        100,
        1537,
        HANDSHAKE_LEN - 1,
        HANDSHAKE_LEN,
        HANDSHAKE_LEN + 7,
        20_000,
    ] {
        let (_, result) = ServerSession::replay_accepting_all(&capture[..cut]);
        assert!(result.is_ok(), "cut at {cut}: {result:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_after_a_valid_handshake_never_panic(
        noise in prop::collection::vec(any::<u8>(), 0..3000),
        keep in 0usize..4000,
    ) {
        let capture = capture();
        let mut input = capture[..HANDSHAKE_LEN + keep].to_vec();
        input.extend_from_slice(&noise);
        let _ = ServerSession::replay_accepting_all(&input);
    }

    #[test]
    fn corrupted_capture_bytes_fail_cleanly(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut input = capture()[..20_000].to_vec();
        for (at, byte) in flips {
            let i = at.index(input.len() - HANDSHAKE_LEN) + HANDSHAKE_LEN;
            input[i] = byte;
        }
        let _ = ServerSession::replay_accepting_all(&input);
        let _ = decode_chunk_stream(&input[HANDSHAKE_LEN..], ChunkLimits::default());
    }
}
