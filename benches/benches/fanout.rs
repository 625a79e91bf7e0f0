//! Relay fan-out: cost per frame per viewer for 1, 100 and 10 000 in-process viewers.
//!
//! Each iteration publishes one video frame and lets every viewer dequeue everything pending.
//! `shared` is the relay hub (one `Arc`'d frame, one shared ring, a cursor per viewer);
//! `per_viewer_queue` is the baseline a competent relay without a shared ring would be: the
//! payload is one refcounted `Bytes` and the publisher pushes a reference into every viewer's own
//! queue (SRS and nginx-rtmp share payloads the same way). The `_chunked` variants add the RTMP
//! wire form, chunked once per frame and shared by both. After each measurement the bench asserts
//! that every viewer received every frame, in order. Throughput is per viewer, so criterion
//! reports the time per frame per viewer.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamr_media::relay::{
    ChunkingKey, FrameKind, RelayConfig, RelayEvent, RelayHub, StreamKey, Subscription,
};
use streamr_media::rtmp::chunk::{encode_shared_media, RawMessage};

const VIEWER_COUNTS: [usize; 3] = [1, 100, 10_000];
const FRAME_SIZE: usize = 4096;
const GOP_FRAMES: u32 = 50;
const CHUNKING: ChunkingKey = ChunkingKey {
    chunk_size: 4096,
    message_stream_id: 1,
};
const VIDEO_CHUNK_STREAM: u32 = 6;

/// A video tag body of `FRAME_SIZE` bytes, a keyframe every `GOP_FRAMES`.
fn video_payload(index: u32) -> Bytes {
    let mut body = vec![0u8; FRAME_SIZE];
    body[0] = if index % GOP_FRAMES == 0 { 0x17 } else { 0x27 };
    body[1] = 1;
    Bytes::from(body)
}

fn chunk(timestamp: u32, payload: Bytes) -> Bytes {
    let message = RawMessage {
        chunk_stream_id: VIDEO_CHUNK_STREAM,
        timestamp,
        type_id: 9,
        message_stream_id: CHUNKING.message_stream_id,
        payload,
    };
    encode_shared_media(&message, CHUNKING.chunk_size).unwrap_or_default()
}

/// The relay hub with `viewers` subscriptions, already past the first keyframe.
struct SharedFanout {
    _hub: RelayHub,
    publisher: streamr_media::relay::Publisher,
    viewers: Vec<Subscription>,
    payloads: Vec<Bytes>,
    events: Vec<RelayEvent>,
    index: u32,
    /// Per viewer: frames received and the next timestamp expected.
    received: Vec<(u32, u32)>,
}

impl SharedFanout {
    fn new(viewers: usize) -> Self {
        let hub = RelayHub::new(RelayConfig::default());
        let key = StreamKey::parse("live", "bench").unwrap();
        let publisher = hub.publish(key.clone()).expect("free key");
        let received = vec![(0, 0); viewers];
        let viewers = (0..viewers)
            .map(|_| hub.subscribe(key.clone()).expect("under the viewer limit"))
            .collect();
        let payloads = (0..GOP_FRAMES).map(video_payload).collect();
        let mut fanout = SharedFanout {
            _hub: hub,
            publisher,
            viewers,
            payloads,
            events: Vec::with_capacity(64),
            index: 0,
            received,
        };
        fanout.step(false);
        fanout
    }

    fn step(&mut self, chunked: bool) {
        let slot = (self.index % GOP_FRAMES) as usize;
        let payload = self.payloads[slot].clone();
        self.publisher
            .send(FrameKind::Video, self.index.wrapping_mul(40), payload);
        self.index = self.index.wrapping_add(1);
        for (viewer, received) in self.viewers.iter_mut().zip(&mut self.received) {
            viewer.try_recv_batch(&mut self.events, 64);
            for event in self.events.drain(..) {
                if let RelayEvent::Frame(frame) = event {
                    receive(received, frame.timestamp());
                    if chunked {
                        let wire =
                            frame.chunked(CHUNKING, |f| chunk(f.timestamp(), f.payload().clone()));
                        black_box(wire);
                    } else {
                        black_box(frame);
                    }
                }
            }
        }
    }
}

/// Counts a frame a viewer received and checks it is the next one.
fn receive(received: &mut (u32, u32), timestamp: u32) {
    assert_eq!(timestamp, received.1, "a viewer missed or repeated a frame");
    received.0 += 1;
    received.1 = timestamp.wrapping_add(40);
}

/// Asserts every viewer received every one of the `sent` frames.
fn assert_all_received(received: &[(u32, u32)], sent: u32) {
    assert!(
        received.iter().all(|(frames, _)| *frames == sent),
        "every viewer received all {sent} frames"
    );
}

/// The baseline relay: one refcounted payload per frame (chunked once, when chunked), a
/// reference pushed into every viewer's own queue, each viewer draining its queue.
struct QueueFanout {
    queues: Vec<VecDeque<(u32, Bytes)>>,
    payloads: Vec<Bytes>,
    index: u32,
    received: Vec<(u32, u32)>,
}

impl QueueFanout {
    fn new(viewers: usize) -> Self {
        QueueFanout {
            queues: vec![VecDeque::new(); viewers],
            payloads: (0..GOP_FRAMES).map(video_payload).collect(),
            index: 0,
            received: vec![(0, 0); viewers],
        }
    }

    fn step(&mut self, chunked: bool) {
        let slot = (self.index % GOP_FRAMES) as usize;
        let timestamp = self.index.wrapping_mul(40);
        let payload = if chunked {
            chunk(timestamp, self.payloads[slot].clone())
        } else {
            self.payloads[slot].clone()
        };
        self.index = self.index.wrapping_add(1);
        for queue in &mut self.queues {
            queue.push_back((timestamp, payload.clone()));
        }
        for (queue, received) in self.queues.iter_mut().zip(&mut self.received) {
            while let Some((timestamp, shared)) = queue.pop_front() {
                receive(received, timestamp);
                black_box(shared);
            }
        }
    }
}

fn fanout(c: &mut Criterion) {
    for chunked in [false, true] {
        let name = if chunked { "fanout_chunked" } else { "fanout" };
        let mut group = c.benchmark_group(name);
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        for viewers in VIEWER_COUNTS {
            group.throughput(Throughput::Elements(viewers as u64));
            group.bench_with_input(BenchmarkId::new("shared", viewers), &viewers, |b, &n| {
                let mut fanout = SharedFanout::new(n);
                b.iter(|| fanout.step(chunked));
                assert_all_received(&fanout.received, fanout.index);
            });
            group.bench_with_input(
                BenchmarkId::new("per_viewer_queue", viewers),
                &viewers,
                |b, &n| {
                    let mut fanout = QueueFanout::new(n);
                    b.iter(|| fanout.step(chunked));
                    assert_all_received(&fanout.received, fanout.index);
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
