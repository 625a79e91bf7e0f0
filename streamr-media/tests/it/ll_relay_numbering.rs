//! A relay lists the origin's segments and parts under the origin's media sequence numbers: it
//! holds back what it cuts until it learns the origin's place of one part by the part's hash
//! ([`OriginNumbering`]), then numbers everything as the origin does. A place that does not fit
//! (another index) is refused, and the relay keeps its own numbers. When the origin's reports
//! name a new run (its numbers started over), the relay learns them again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamr_media::flv::{FlvTag, FlvTagType};
use streamr_media::http::{LiveHls, LiveHlsConfig, OriginNumbering, OriginPartPlace, PartNotice};
use streamr_media::relay::{FrameKind, Publisher, RelayHub, Timeline};
use streamr_media::StreamKey;
use tokio_util::sync::CancellationToken;

/// An AVC or AAC sequence header.
fn is_sequence_header(tag: &FlvTag) -> bool {
    let data = &tag.data;
    match tag.tag_type {
        FlvTagType::Video => data.len() > 1 && data[0] & 0x0f == 7 && data[1] == 0,
        FlvTagType::Audio => data.len() > 1 && data[0] >> 4 == 10 && data[1] == 0,
        _ => false,
    }
}

/// Publishes the sequence headers and the frames from `from_ms` to before `to_ms`.
fn publish_range(publisher: &Publisher, tags: &[FlvTag], from_ms: u32, to_ms: u32) {
    let wanted = |tag: &&FlvTag| {
        is_sequence_header(tag) || (tag.timestamp >= from_ms && tag.timestamp < to_ms)
    };
    for tag in tags.iter().filter(wanted) {
        let kind = match tag.tag_type {
            FlvTagType::Audio => FrameKind::Audio,
            FlvTagType::Video => FrameKind::Video,
            _ => FrameKind::Metadata,
        };
        publisher.send(kind, tag.timestamp, tag.data.clone());
    }
}

/// The origin's part places by hash, as its part reports would give them, in the origin's run
/// `run`; `shift` moves the index (a lying source).
#[derive(Debug, Default, Clone)]
struct Places {
    known: Arc<Mutex<HashMap<blake3::Hash, (u64, u32)>>>,
    shift_index: u32,
    run: Arc<AtomicU64>,
}

impl OriginNumbering for Places {
    fn origin_place(
        &self,
        _key: &StreamKey,
        part_hash: [u8; 32],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<OriginPartPlace>> + Send>> {
        let places = self.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let found = places
                    .known
                    .lock()
                    .expect("lock")
                    .get(&blake3::Hash::from(part_hash))
                    .copied();
                if let Some((msn, index)) = found {
                    return Some(OriginPartPlace {
                        msn,
                        index: index + places.shift_index,
                        run: Some(places.run.load(Ordering::SeqCst)),
                    });
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    fn origin_run(&self, _key: &StreamKey) -> Option<u64> {
        Some(self.run.load(Ordering::SeqCst))
    }
}

/// Parts received until none came for a while.
async fn drain(notices: &mut tokio::sync::broadcast::Receiver<PartNotice>) -> Vec<PartNotice> {
    let mut parts = Vec::new();
    while let Ok(Ok(part)) = tokio::time::timeout(Duration::from_secs(2), notices.recv()).await {
        parts.push(part);
    }
    parts
}

/// A node's live HLS (1 s segments) on a hub of its own, its part notices, and a publisher of
/// `live/cam` there, its playlist asked for once so that it cuts the stream: an origin's
/// own stream, or with `places` a relay's pull from upstream, numbered from `places`.
async fn start_node(
    shutdown: &CancellationToken,
    places: Option<Places>,
) -> (
    LiveHls,
    tokio::sync::broadcast::Receiver<PartNotice>,
    Publisher,
) {
    let config = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 4);
    let key = StreamKey::parse("live", "cam").expect("key");
    let hub = RelayHub::default();
    let node = LiveHls::start(hub.clone(), config, shutdown.clone());
    let timeline = match places {
        Some(places) => {
            assert!(node.set_origin_numbering(Arc::new(places)));
            Timeline::Upstream
        }
        None => Timeline::Own,
    };
    let notices = node.part_notices();
    let publisher = hub.publish_with(key.clone(), timeline).expect("publish");
    let _ = node.playlist(&key, Duration::ZERO).await;
    (node, notices, publisher)
}

/// The origin's parts of the whole 10 s sample.
async fn origin_parts(tags: &[FlvTag], shutdown: &CancellationToken) -> Vec<PartNotice> {
    let (_origin, mut notices, publisher) = start_node(shutdown, None).await;
    publish_range(&publisher, tags, 0, 10_100);
    drain(&mut notices).await
}

/// The origin's parts (the whole 10 s sample, keyframes every 2 s) and the relay's (joined at
/// 2.5 s), with the relay learning from `places` (filled from the origin's parts).
async fn origin_and_relay_parts(mut places: Places) -> (Vec<PartNotice>, Vec<PartNotice>) {
    let (tags, shutdown) = (crate::common::sample_tags(), CancellationToken::new());
    let origin_parts = origin_parts(&tags, &shutdown).await;
    let known: HashMap<_, _> = origin_parts
        .iter()
        .map(|p| (p.hash, (p.sequence, p.index)))
        .collect();
    places.known = Arc::new(Mutex::new(known));

    let (_relay, mut relay_notices, pull) = start_node(&shutdown, Some(places)).await;
    publish_range(&pull, &tags, 2_500, 10_100);
    let relay_parts = drain(&mut relay_notices).await;
    shutdown.cancel();
    (origin_parts, relay_parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_lists_every_part_under_the_origins_number() {
    let (origin, relay) = origin_and_relay_parts(Places::default()).await;
    assert!(relay.len() >= 4, "{relay:?}");
    for part in &relay {
        let at_origin = origin
            .iter()
            .find(|o| o.hash == part.hash)
            .expect("every part the relay lists is the origin's");
        assert_eq!(
            (part.sequence, part.index),
            (at_origin.sequence, at_origin.index),
            "the relay numbers a part as the origin does"
        );
    }
    // The relay joined late: without learning, it would have numbered from 0.
    assert!(relay[0].sequence > 0, "{relay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_at_another_index_is_refused_and_the_relay_numbers_its_own() {
    let lying = Places {
        shift_index: 1,
        ..Places::default()
    };
    let (origin, relay) = origin_and_relay_parts(lying).await;
    assert!(relay.len() >= 4, "{relay:?}");
    // Listed at once under its own numbers (from 0), not held until the time limit.
    assert_eq!(relay[0].sequence, 0, "{relay:?}");
    assert!(relay
        .iter()
        .all(|p| origin.iter().any(|o| o.hash == p.hash)));
}

/// The origin restarted and numbers its parts afresh (a new run, its numbers here 40 above the
/// old ones), while the relay's stream went on without a timeline break it could see: once the
/// origin's reports name the new run, the relay learns the origin's numbers again and lists
/// what it cuts from then on under the new run's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_learns_the_origins_numbers_again_when_its_run_changes() {
    const SHIFT: u64 = 40;
    let (tags, shutdown) = (crate::common::sample_tags(), CancellationToken::new());
    let origin_parts = origin_parts(&tags, &shutdown).await;
    let places = Places::default();
    places.run.store(1, Ordering::SeqCst);
    *places.known.lock().expect("lock") = origin_parts
        .iter()
        .map(|p| (p.hash, (p.sequence, p.index)))
        .collect();

    let (_relay, mut relay_notices, pull) = start_node(&shutdown, Some(places.clone())).await;
    publish_range(&pull, &tags, 2_500, 6_500);
    let before = drain(&mut relay_notices).await;
    // The origin's new run: the same parts (as far as this test goes) under new numbers.
    *places.known.lock().expect("lock") = origin_parts
        .iter()
        .map(|p| (p.hash, (p.sequence + SHIFT, p.index)))
        .collect();
    places.run.store(2, Ordering::SeqCst);
    publish_range(&pull, &tags, 6_500, 10_100);
    let after = drain(&mut relay_notices).await;
    shutdown.cancel();

    let origin_place = |part: &PartNotice| {
        origin_parts
            .iter()
            .find(|o| o.hash == part.hash)
            .map(|o| (o.sequence, o.index))
            .expect("every part the relay lists is the origin's")
    };
    assert!(
        !before.is_empty() && after.len() >= 4,
        "{before:?} {after:?}"
    );
    for part in &before {
        assert_eq!(
            (part.sequence, part.index),
            origin_place(part),
            "run 1: {part:?}"
        );
    }
    // Parts cut once the new run was learned carry its numbers (the part open across the
    // change may still go out under the old ones).
    let renumbered: Vec<&PartNotice> = after
        .iter()
        .filter(|part| part.sequence >= origin_place(part).0 + SHIFT)
        .collect();
    assert!(renumbered.len() >= 3, "{after:?}");
    for part in &renumbered {
        let (sequence, index) = origin_place(part);
        assert_eq!(
            (part.sequence, part.index),
            (sequence + SHIFT, index),
            "run 2: {part:?}"
        );
    }
    let newest = after.last().expect("parts after the change");
    assert_eq!(newest.sequence, origin_place(newest).0 + SHIFT);
}
