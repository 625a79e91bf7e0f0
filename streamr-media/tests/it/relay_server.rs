//! The relay server end to end with the library's own RTMP client: exact frames through the relay,
//! authorization hooks and lifecycle events.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use streamr_media::relay::StreamKey;
use streamr_media::rtmp::session::{ClientEvent, ClientRole, MediaKind, PublishMode};
use streamr_media::server::{
    Refusal, RelayHooks, RelayServer, RelayServerConfig, StreamEvent, StreamRequest,
};
use tokio::io::AsyncReadExt;

/// Lets publishers in with `token=good` only, refuses players of `secret`, records events.
#[derive(Default)]
struct RecordingHooks {
    events: Mutex<Vec<StreamEvent>>,
}

#[async_trait]
impl RelayHooks for RecordingHooks {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        if request.query == "token=good" {
            Ok(())
        } else {
            Err(Refusal::new("publishing needs a valid token"))
        }
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        if request.key.name == "secret" {
            Err(Refusal::new("not for you"))
        } else {
            Ok(())
        }
    }

    async fn on_event(&self, event: StreamEvent) {
        self.events.lock().unwrap().push(event);
    }
}

impl RecordingHooks {
    fn snapshot(&self) -> Vec<StreamEvent> {
        self.events.lock().unwrap().clone()
    }
}

fn media() -> Vec<(MediaKind, u32, Bytes)> {
    let mut frames = vec![
        (
            MediaKind::Video,
            0,
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
        ),
        (
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
        ),
    ];
    for index in 0..30u32 {
        let keyframe = index % 10 == 0;
        let mut video = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        // Large enough to span several 4 KiB chunks.
        video.extend(std::iter::repeat_n(index as u8, 9000));
        frames.push((MediaKind::Video, index * 40, Bytes::from(video)));
        let audio = vec![0xAF, 1, index as u8, 0x21];
        frames.push((MediaKind::Audio, index * 40 + 5, Bytes::from(audio)));
    }
    frames
}

/// Reads what the player receives until `count` media messages arrived.
async fn receive_media(player: &mut TestClient, count: usize) -> Vec<(MediaKind, u32, Bytes)> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        while let Some(event) = player.session.poll_event() {
            if let ClientEvent::Media {
                kind,
                timestamp,
                payload,
            } = event
            {
                received.push((kind, timestamp, payload));
            }
        }
        if received.len() >= count {
            return received;
        }
        player.flush().await;
        let read = tokio::time::timeout(Duration::from_secs(10), player.socket.read(&mut buffer))
            .await
            .expect("media within 10 s")
            .expect("read");
        assert!(read > 0, "server closed the player");
        player.session.feed(&buffer[..read]).expect("valid media");
    }
}

async fn start_with(hooks: Arc<RecordingHooks>) -> RelayServer {
    let mut config = RelayServerConfig::default();
    config.bind = "127.0.0.1:0".parse().unwrap();
    RelayServer::start_with_hooks(config, hooks).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_pass_the_relay_unchanged_and_hooks_see_authorization_and_lifecycle() {
    let hooks = Arc::new(RecordingHooks::default());
    let server = start_with(hooks.clone()).await;
    let addr = server.local_addr();
    let publish = ClientRole::Publish(PublishMode::Live);

    let refused = TestClient::start(addr, "live", "cam?token=bad", publish).await;
    assert_eq!(refused.err().as_deref(), Some("NetStream.Publish.Denied"));
    let refused = TestClient::start(addr, "live", "secret", ClientRole::Play).await;
    assert_eq!(
        refused.err().as_deref(),
        Some("NetStream.Play.StreamNotFound")
    );

    let mut player = TestClient::start(addr, "live", "cam", ClientRole::Play)
        .await
        .expect("play accepted");
    let mut publisher = TestClient::start(addr, "live", "cam?token=good", publish)
        .await
        .expect("publish accepted");
    let frames = media();
    for (kind, timestamp, payload) in &frames {
        publisher
            .session
            .send_media(*kind, *timestamp, payload.clone())
            .unwrap();
    }
    publisher.flush().await;

    let received = receive_media(&mut player, frames.len()).await;
    assert_eq!(
        received, frames,
        "the player gets every frame, unchanged and in order"
    );

    publisher.session.close().unwrap();
    publisher.flush().await;
    drop(publisher);
    let key = StreamKey::parse("live", "cam").unwrap();
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;
    drop(player);
    assert!(
        wait_until(Duration::from_secs(5), || hooks.snapshot().len() >= 4).await,
        "lifecycle events missing: {:?}",
        hooks.snapshot()
    );
    let events = hooks.snapshot();
    assert!(matches!(&events[0], StreamEvent::PlayStarted { key: k, .. } if *k == key));
    assert!(matches!(&events[1], StreamEvent::PublishStarted { key: k, .. } if *k == key));
    assert!(matches!(&events[2], StreamEvent::PublishEnded { key: k, .. } if *k == key));
    match &events[3] {
        StreamEvent::PlayEnded { key: k, stats, .. } => {
            assert_eq!(*k, key);
            assert_eq!(stats.frames_out, frames.len() as u64);
            assert_eq!(stats.frames_dropped, 0);
        }
        other => panic!("expected PlayEnded, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_publisher_is_disconnected_and_its_key_freed() {
    let mut config = RelayServerConfig::default();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.publisher_idle_timeout = Duration::from_millis(500);
    let server = RelayServer::start(config).await.unwrap();
    let publish = ClientRole::Publish(PublishMode::Live);
    let mut silent = TestClient::start(server.local_addr(), "live", "quiet", publish)
        .await
        .expect("publish accepted");
    let key = StreamKey::parse("live", "quiet").unwrap();
    assert!(server.hub().is_publishing(&key));
    assert!(closed_by_server(&mut silent.socket, Duration::from_secs(5)).await);
    assert!(!server.hub().is_publishing(&key));
    assert!(
        TestClient::start(server.local_addr(), "live", "quiet", publish)
            .await
            .is_ok()
    );
    server.shutdown().await;
}

/// Reads the player's events until `media` media messages arrived; returns every event.
async fn receive_events(player: &mut TestClient, media: usize) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        while let Some(event) = player.session.poll_event() {
            events.push(event);
        }
        let received = events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Media { .. }))
            .count();
        if received >= media {
            return events;
        }
        player.flush().await;
        let read = tokio::time::timeout(Duration::from_secs(10), player.socket.read(&mut buffer))
            .await
            .expect("events within 10 s")
            .expect("read");
        assert!(read > 0, "server closed the player");
        player.session.feed(&buffer[..read]).expect("valid bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_notifications_players_hear_unpublish_and_republish_then_get_new_headers() {
    let mut config = RelayServerConfig::default();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.notify_players_on_unpublish = true;
    let server = RelayServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let key = StreamKey::parse("live", "show").unwrap();
    let publish = ClientRole::Publish(PublishMode::Live);
    let mut player = TestClient::start(addr, "live", "show", ClientRole::Play)
        .await
        .unwrap();

    let headers = [
        Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
        Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x4d, 0, 0x28]),
    ];
    let keyframe = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65, 0x88]);
    let mut rounds = Vec::new();
    for header in &headers {
        let mut publisher = TestClient::start(addr, "live", "show", publish)
            .await
            .unwrap();
        for payload in [header.clone(), keyframe.clone()] {
            publisher
                .session
                .send_media(MediaKind::Video, 0, payload)
                .unwrap();
        }
        publisher.flush().await;
        rounds.push(receive_events(&mut player, 2).await);
        publisher.session.close().unwrap();
        publisher.flush().await;
        drop(publisher);
        wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;
    }

    let second = &rounds[1];
    let ended = second
        .iter()
        .position(|e| matches!(e, ClientEvent::StreamEnded));
    let resumed = second
        .iter()
        .position(|e| matches!(e, ClientEvent::StreamResumed));
    let media: Vec<&Bytes> = second
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert!(
        matches!((ended, resumed), (Some(e), Some(r)) if e < r),
        "unpublish then republish notifications expected: {second:?}"
    );
    assert_eq!(
        media,
        vec![&headers[1], &keyframe],
        "new header, then keyframe"
    );
    server.shutdown().await;
}
