//! FLV reader and writer: real ffmpeg files, incremental reading, errors with byte offsets,
//! round trips (proptest) and the reader fuzz target's seed corpus.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use streamr_media::flv::{FlvError, FlvHeader, FlvReader, FlvTag, FlvTagType, FlvWriter};

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/media")
        .join(name)
}

fn write_file(header: FlvHeader, tags: &[FlvTag]) -> Vec<u8> {
    let writer = FlvWriter::new();
    let mut out = writer.header(header);
    for tag in tags {
        writer.write_tag(tag, &mut out).unwrap();
    }
    out.to_vec()
}

#[test]
fn ffmpeg_files_read_fully_and_rewrite_byte_identical() {
    for (name, has_audio, has_video) in [
        ("av_bframes.flv", true, true),
        ("video_only.flv", false, true),
        ("audio_only.flv", true, false),
    ] {
        let bytes = std::fs::read(media(name)).unwrap();
        let (header, tags) = FlvReader::read_all(&bytes).unwrap();
        assert_eq!(
            header,
            FlvHeader {
                has_audio,
                has_video
            },
            "{name}"
        );
        assert_eq!(
            tags[0].tag_type,
            FlvTagType::ScriptData,
            "{name} starts with onMetaData"
        );
        assert!(tags[0].data.windows(10).any(|w| w == b"onMetaData"));
        assert_eq!(
            tags.iter().any(|t| t.tag_type == FlvTagType::Audio),
            has_audio
        );
        assert_eq!(
            tags.iter().any(|t| t.tag_type == FlvTagType::Video),
            has_video
        );
        assert_eq!(
            write_file(header, &tags),
            bytes,
            "{name} did not round-trip"
        );
    }
}

#[test]
fn on_metadata_is_decoded_with_amf0() {
    let bytes = std::fs::read(media("av_bframes.flv")).unwrap();
    let (_, tags) = FlvReader::read_all(&bytes).unwrap();
    let metadata = tags[0].on_metadata().expect("onMetaData");
    assert_eq!(
        metadata.property("width").and_then(|v| v.as_number()),
        Some(160.0)
    );
    assert_eq!(
        metadata.property("height").and_then(|v| v.as_number()),
        Some(120.0)
    );
    let duration = metadata
        .property("duration")
        .and_then(|v| v.as_number())
        .unwrap();
    assert!((duration - 10.0).abs() < 0.1, "{duration}");
    assert_eq!(
        metadata
            .property("videocodecid")
            .and_then(|v| v.as_number()),
        Some(7.0)
    );
    assert!(tags[1].script_values().is_none());
    assert!(tags[1].on_metadata().is_none());
}

#[test]
fn byte_by_byte_reading_yields_the_same_tags() {
    let bytes = std::fs::read(media("audio_only.flv")).unwrap();
    let (_, expected) = FlvReader::read_all(&bytes).unwrap();
    let mut reader = FlvReader::new();
    let mut tags = Vec::new();
    for byte in &bytes {
        reader.push(std::slice::from_ref(byte));
        while let Some(tag) = reader.next_tag().unwrap() {
            tags.push(tag);
        }
    }
    reader.finish().unwrap();
    assert_eq!(tags, expected);
    assert_eq!(reader.position(), bytes.len() as u64);
}

#[test]
fn truncated_file_reports_where_the_incomplete_tag_starts() {
    let bytes = std::fs::read(media("audio_only.flv")).unwrap();
    let cut = &bytes[..1000];
    let mut reader = FlvReader::new();
    reader.push(cut);
    let mut last_end = 0;
    while reader.next_tag().unwrap().is_some() {
        last_end = reader.position();
    }
    match reader.finish() {
        Err(FlvError::Truncated { offset, missing }) => {
            assert!(offset >= last_end && offset < 1000, "offset {offset}");
            assert!(missing > 0);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn corrupt_previous_tag_size_names_its_offset() {
    let mut bytes = std::fs::read(media("audio_only.flv")).unwrap();
    // The first tag starts at 13; its trailing PreviousTagSize follows its body.
    let body_len = u32::from_be_bytes([0, bytes[14], bytes[15], bytes[16]]) as usize;
    let field = 13 + 11 + body_len;
    bytes[field + 3] ^= 0x01;
    let err = FlvReader::read_all(&bytes).unwrap_err();
    assert_eq!(
        err,
        FlvError::PreviousTagSizeMismatch {
            offset: field as u64,
            expected: (11 + body_len) as u32,
            found: ((11 + body_len) as u32) ^ 1,
        }
    );
    assert!(err.to_string().contains(&format!("offset {field}")));
    // A lenient reader accepts the file.
    let mut reader = FlvReader::new().lenient_previous_tag_size();
    reader.push(&bytes);
    while reader.next_tag().unwrap().is_some() {}
    reader.finish().unwrap();
}

#[test]
fn bad_headers_and_tag_types_are_rejected_with_offsets() {
    assert_eq!(
        FlvReader::read_all(b"FLX\x01\x05\0\0\0\x09\0\0\0\0").unwrap_err(),
        FlvError::BadSignature { found: *b"FLX" }
    );
    assert_eq!(
        FlvReader::read_all(b"FLV\x02\x05\0\0\0\x09\0\0\0\0").unwrap_err(),
        FlvError::UnsupportedVersion { version: 2 }
    );
    let mut bytes = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
    bytes.extend_from_slice(&[7, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0, 0, 0, 12]);
    assert_eq!(
        FlvReader::read_all(&bytes).unwrap_err(),
        FlvError::UnknownTagType {
            tag_type: 7,
            offset: 13
        }
    );
    bytes[13] = 0x28; // audio with the filter bit
    assert_eq!(
        FlvReader::read_all(&bytes).unwrap_err(),
        FlvError::EncryptedTag { offset: 13 }
    );
}

#[test]
fn extended_timestamps_and_larger_data_offsets_are_read() {
    let tag = FlvTag {
        tag_type: FlvTagType::Video,
        timestamp: 0x1234_5678,
        stream_id: 0,
        data: Bytes::from_static(&[0x17, 1, 0, 0, 0]),
    };
    let mut bytes = b"FLV\x01\x01\0\0\0\x0C\xAA\xBB\xCC".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    let mut body = BytesMut::new();
    FlvWriter::new().write_tag(&tag, &mut body).unwrap();
    bytes.extend_from_slice(&body);
    let (header, tags) = FlvReader::read_all(&bytes).unwrap();
    assert!(header.has_video && !header.has_audio);
    assert_eq!(tags, vec![tag]);
}

#[test]
fn oversized_body_is_refused_by_the_writer() {
    let tag = FlvTag {
        tag_type: FlvTagType::Audio,
        timestamp: 0,
        stream_id: 0,
        data: vec![0u8; 0x0100_0000].into(),
    };
    let mut out = BytesMut::new();
    assert_eq!(
        FlvWriter::new().write_tag(&tag, &mut out),
        Err(FlvError::BodyTooLarge { len: 0x0100_0000 })
    );
    assert!(out.is_empty());
}

/// Reads `data` pushed as two parts split at `cut`, the first shared or copied: the fuzz
/// target's differential check against reading it at once.
fn read_in_two(
    data: &[u8],
    cut: usize,
    shared_first: bool,
) -> Result<(FlvHeader, Vec<FlvTag>), FlvError> {
    let (first, second) = data.split_at(cut);
    let mut reader = FlvReader::new();
    let mut tags = Vec::new();
    if shared_first {
        reader.push_bytes(Bytes::copy_from_slice(first));
    } else {
        reader.push(first);
    }
    while let Some(tag) = reader.next_tag()? {
        tags.push(tag);
    }
    reader.push_bytes(Bytes::copy_from_slice(second));
    while let Some(tag) = reader.next_tag()? {
        tags.push(tag);
    }
    reader.finish()?;
    Ok((reader.header().unwrap_or_default(), tags))
}

#[test]
fn seed_corpus_of_the_flv_reader_fuzz_target_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/flv_reader");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let whole = FlvReader::read_all(&data);
        for cut in [0, 1, 9, 13, data.len() / 2, data.len()] {
            let cut = cut.min(data.len());
            assert_eq!(read_in_two(&data, cut, true), whole);
            assert_eq!(read_in_two(&data, cut, false), whole);
        }
        count += 1;
    }
    assert!(count >= 3, "seed corpus in {} is missing", dir.display());
}

proptest! {
    #[test]
    fn reading_in_two_shared_or_copied_parts_equals_reading_at_once(
        tags in proptest::collection::vec(tag_strategy(), 0..8),
        cut in any::<prop::sample::Index>(),
        shared_first in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut data = write_file(FlvHeader::default(), &tags);
        data.extend_from_slice(&garbage);
        let cut = cut.index(data.len() + 1);
        prop_assert_eq!(read_in_two(&data, cut, shared_first), FlvReader::read_all(&data));
    }
}

fn tag_strategy() -> impl Strategy<Value = FlvTag> {
    (
        prop::sample::select(vec![
            FlvTagType::Audio,
            FlvTagType::Video,
            FlvTagType::ScriptData,
        ]),
        any::<u32>(),
        0u32..(1 << 24),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tag_type, timestamp, stream_id, data)| FlvTag {
            tag_type,
            timestamp,
            stream_id,
            data: data.into(),
        })
}

proptest! {
    #[test]
    fn write_then_read_round_trips(
        has_audio in any::<bool>(),
        has_video in any::<bool>(),
        tags in proptest::collection::vec(tag_strategy(), 0..20),
        split in any::<prop::sample::Index>(),
    ) {
        let header = FlvHeader { has_audio, has_video };
        let bytes = write_file(header, &tags);
        // Arbitrary split point: incremental reading must not care.
        let at = split.index(bytes.len() + 1);
        let mut reader = FlvReader::new();
        let mut read = Vec::new();
        for part in [&bytes[..at], &bytes[at..]] {
            reader.push(part);
            while let Some(tag) = reader.next_tag().unwrap() {
                read.push(tag);
            }
        }
        reader.finish().unwrap();
        prop_assert_eq!(reader.header(), Some(header));
        prop_assert_eq!(read, tags);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut with_header = b"FLV\x01\x05\0\0\0\x09".to_vec();
        with_header.extend_from_slice(&data);
        let _ = FlvReader::read_all(&data);
        let _ = FlvReader::read_all(&with_header);
    }
}
