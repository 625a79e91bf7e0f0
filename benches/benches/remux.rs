//! FLV→MPEG-TS remux throughput on a real 60 s 720p H.264/AAC file (benches/make_bench_input.sh),
//! against a plain copy of the same bytes as the in-run baseline: the whole file into one output
//! buffer (`remux_flv_to_ts`, which copies the input into the reader), and the way `streamr
//! remux-ts` runs (input shared, output muxed in 512 KiB blocks into one reused buffer). The ffmpeg comparison is
//! benches/remux_vs_ffmpeg.sh.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamr_media::flv::FlvReader;
use streamr_media::hls::{
    LlEvent, LlHlsStream, LlPackagerConfig, Segmenter, SegmenterConfig, SegmenterEvent,
};
use streamr_media::ts::{remux_flv_to_ts, FlvToTs};

/// Output block of `streamr remux-ts`: muxed, then handed to write(2), then reused.
const WRITE_CHUNK: usize = 512 * 1024;

fn bench_input() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("make_bench_input.sh"))
        .output()
        .expect("running benches/make_bench_input.sh (needs ffmpeg)");
    assert!(
        output.status.success(),
        "make_bench_input.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    std::fs::read(root.join("..").join(path)).expect("reading the benchmark input")
}

/// What `streamr remux-ts` does with a mapped file: tag bodies are slices of the shared input,
/// packets go into one reused block (the write itself is left out).
fn remux_in_blocks(flv: &Bytes, block: &mut Vec<u8>) -> usize {
    let mut remux = FlvToTs::new();
    remux.push_bytes(flv.clone());
    let mut total = 0;
    while let Ok(more) = remux.mux(block, WRITE_CHUNK) {
        total += block.len();
        block.clear();
        if !more {
            break;
        }
    }
    total
}

/// The HLS path: read tags (bodies shared with the input, as `streamr remux` reads a mapped
/// file), cut segments, hash each one.
fn segment_file(flv: &Bytes) -> usize {
    let mut reader = FlvReader::new();
    reader.push_bytes(flv.clone());
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut bytes = 0;
    let mut count = |events: Vec<SegmenterEvent>| {
        for event in events {
            if let SegmenterEvent::SegmentReady(segment) = event {
                bytes += segment.bytes.len();
            }
        }
    };
    while let Ok(Some(tag)) = reader.next_tag() {
        if let Ok(events) = segmenter.push(&tag) {
            count(events);
        }
    }
    count(segmenter.finish());
    bytes
}

/// Both HLS renditions, as live HLS runs them: the MPEG-TS segmenter and the LL-HLS packager
/// (fMP4 parts, segments and playlist), each output hashed.
fn segment_file_with_ll(flv: &Bytes) -> usize {
    let mut reader = FlvReader::new();
    reader.push_bytes(flv.clone());
    let mut stream = LlHlsStream::new(
        SegmenterConfig::default(),
        LlPackagerConfig::default(),
        6,
        "",
    );
    let mut bytes = 0;
    while let Ok(Some(tag)) = reader.next_tag() {
        if let Ok(output) = stream.push(&tag) {
            for event in output.ll {
                if let LlEvent::SegmentReady(segment) = event {
                    bytes += segment.bytes.len();
                }
            }
        }
    }
    let _ = stream.finish();
    bytes
}

fn remux(c: &mut Criterion) {
    let flv = bench_input();
    let shared = Bytes::from(flv.clone());
    let mut group = c.benchmark_group("flv_to_ts");
    group.throughput(Throughput::Bytes(flv.len() as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("baseline_copy", "720p60s"), |b| {
        b.iter(|| std::hint::black_box(flv.clone()))
    });
    group.bench_function(BenchmarkId::new("remux_flv_to_ts", "720p60s"), |b| {
        b.iter(|| remux_flv_to_ts(std::hint::black_box(&flv)).map(|ts| ts.len()))
    });
    group.bench_function(BenchmarkId::new("remux_in_blocks", "720p60s"), |b| {
        let mut block = Vec::with_capacity(2 * WRITE_CHUNK);
        b.iter(|| remux_in_blocks(std::hint::black_box(&shared), &mut block))
    });
    group.bench_function(BenchmarkId::new("hls_segmenter", "720p60s"), |b| {
        b.iter(|| segment_file(std::hint::black_box(&shared)))
    });
    group.bench_function(
        BenchmarkId::new("hls_segmenter_and_ll_hls", "720p60s"),
        |b| b.iter(|| segment_file_with_ll(std::hint::black_box(&shared))),
    );
    group.finish();
}

criterion_group!(benches, remux);
criterion_main!(benches);
