//! Client and server sessions talking to each other in memory, bytes pumped between them.

use bytes::Bytes;
use streamr_media::amf0::Amf0Value;
use streamr_media::rtmp::handshake::HandshakeKind;
use streamr_media::rtmp::session::{
    shared_media_chunks, ClientConfig, ClientEvent, ClientRole, ClientSession, MediaKind,
    PublishMode, PublishRejection, ServerConfig, ServerEvent, ServerSession,
};

/// How the server side answers requests in a test.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
    AcceptAll,
    RejectConnect,
    RejectPublish,
    RejectPlay,
}

struct Pair {
    client: ClientSession,
    server: ServerSession,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
    policy: Policy,
}

impl Pair {
    fn new(role: ClientRole, handshake: HandshakeKind, policy: Policy) -> Self {
        let mut config = ClientConfig::new("127.0.0.1:1935", "live", "key", role);
        config.handshake = handshake;
        Self {
            client: ClientSession::new(config),
            server: ServerSession::new(ServerConfig::default()),
            client_events: Vec::new(),
            server_events: Vec::new(),
            policy,
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(&mut self) {
        for _ in 0..100 {
            let to_server = self.client.take_output();
            let to_client = self.server.take_output();
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            // Deliver in small pieces to exercise partial input on both sides.
            for piece in to_server.chunks(333) {
                self.server.feed(piece).unwrap();
            }
            while let Some(event) = self.server.poll_event() {
                self.answer(&event);
                self.server_events.push(event);
            }
            for piece in to_client.chunks(333) {
                self.client.feed(piece).unwrap();
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
        }
        panic!("sessions never went quiet");
    }

    fn answer(&mut self, event: &ServerEvent) {
        match event {
            ServerEvent::ConnectRequested { .. } => match self.policy {
                Policy::RejectConnect => self.server.reject_connect("not on the list").unwrap(),
                _ => self.server.accept_connect().unwrap(),
            },
            ServerEvent::PublishRequested { stream_id, .. } => match self.policy {
                Policy::RejectPublish => self
                    .server
                    .reject_publish(*stream_id, PublishRejection::BadName, "key in use")
                    .unwrap(),
                _ => self.server.accept_publish(*stream_id).unwrap(),
            },
            ServerEvent::PlayRequested { stream_id, .. } => match self.policy {
                Policy::RejectPlay => self
                    .server
                    .reject_play(*stream_id, "no such stream")
                    .unwrap(),
                _ => self.server.accept_play(*stream_id).unwrap(),
            },
            _ => {}
        }
    }
}

fn frame(n: usize, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 7 + n) as u8).collect::<Vec<_>>())
}

#[test]
fn push_publishes_metadata_and_media_to_the_server() {
    for handshake in [
        HandshakeKind::Simple,
        HandshakeKind::Complex(streamr_media::rtmp::handshake::DigestScheme::Scheme1),
    ] {
        let mut pair = Pair::new(
            ClientRole::Publish(PublishMode::Live),
            handshake,
            Policy::AcceptAll,
        );
        pair.pump();
        assert!(pair.client_events.contains(&ClientEvent::Connected));
        assert!(pair.client_events.contains(&ClientEvent::PublishStarted));
        assert!(pair.server_events.iter().any(|e| matches!(
            e,
            ServerEvent::ConnectRequested { app, tc_url: Some(url), .. }
                if app == "live" && url == "rtmp://127.0.0.1:1935/live"
        )));
        assert!(pair.server_events.iter().any(|e| matches!(
            e,
            ServerEvent::PublishRequested { stream_key, mode: PublishMode::Live, .. } if stream_key == "key"
        )));

        let metadata = Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(320.0))]);
        pair.client.send_metadata(metadata.clone()).unwrap();
        let mut sent = Vec::new();
        for n in 0..20 {
            let (kind, len) = if n % 2 == 0 {
                (MediaKind::Video, 9000)
            } else {
                (MediaKind::Audio, 200)
            };
            let payload = frame(n, len);
            pair.client
                .send_media(kind, 40 * n as u32, payload.clone())
                .unwrap();
            sent.push((kind, 40 * n as u32, payload));
        }
        pair.pump();
        let received: Vec<_> = pair
            .server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => Some((*kind, *timestamp, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(received, sent);
        assert!(pair.server_events.iter().any(|e| matches!(
            e,
            ServerEvent::Metadata { metadata: m, .. } if *m == metadata
        )));

        pair.client.close().unwrap();
        pair.pump();
        let finished = pair
            .server_events
            .iter()
            .filter(|e| matches!(e, ServerEvent::PublishFinished { stream_key, .. } if stream_key == "key"))
            .count();
        assert_eq!(finished, 1, "exactly one PublishFinished");
    }
}

#[test]
fn pull_plays_media_the_server_sends_and_sees_the_end() {
    let mut pair = Pair::new(
        ClientRole::Play,
        HandshakeKind::Complex(streamr_media::rtmp::handshake::DigestScheme::Scheme0),
        Policy::AcceptAll,
    );
    pair.pump();
    assert!(pair.client_events.contains(&ClientEvent::PlayStarted));
    let stream_id = pair.client.stream_id().unwrap();
    assert_eq!(pair.server.playing_stream_id("key"), Some(stream_id));

    // The server side sends media both through the session and as pre-chunked shared bytes.
    let chunk_size = pair.server.outgoing_chunk_size();
    assert_eq!(chunk_size, 4096);
    let metadata = Amf0Value::EcmaArray(vec![("framerate".into(), Amf0Value::Number(25.0))]);
    let meta_body = streamr_media::amf0::encode_all(&[
        Amf0Value::String("onMetaData".into()),
        metadata.clone(),
    ])
    .unwrap()
    .freeze();
    let shared = shared_media_chunks(MediaKind::Data, stream_id, 0, meta_body, chunk_size).unwrap();
    let mut expected = Vec::new();
    for n in 0..10u32 {
        let payload = frame(n as usize, 5000 + n as usize);
        pair.server
            .send_media(
                stream_id,
                MediaKind::Video,
                0x00FF_FFF0 + n * 40,
                payload.clone(),
            )
            .unwrap();
        expected.push((MediaKind::Video, 0x00FF_FFF0 + n * 40, payload));
    }
    let mut to_client = pair.server.take_output().to_vec();
    to_client.extend_from_slice(&shared);
    pair.client.feed(&to_client).unwrap();
    pair.server.notify_unpublished(stream_id).unwrap();
    pair.pump();
    let mut media = Vec::new();
    let mut got_metadata = false;
    while let Some(e) = pair.client.poll_event() {
        pair.client_events.push(e);
    }
    for e in &pair.client_events {
        match e {
            ClientEvent::Media {
                kind,
                timestamp,
                payload,
            } => media.push((*kind, *timestamp, payload.clone())),
            ClientEvent::Metadata { metadata: m, .. } => got_metadata = *m == metadata,
            _ => {}
        }
    }
    assert_eq!(media, expected);
    assert!(got_metadata);
    assert!(pair.client_events.contains(&ClientEvent::StreamEnded));

    pair.client.close().unwrap();
    pair.pump();
    assert!(pair
        .server_events
        .iter()
        .any(|e| matches!(e, ServerEvent::PlayFinished { stream_id: id, .. } if *id == stream_id)));
}

#[test]
fn rejected_publish_reaches_the_client_as_bad_name() {
    let mut pair = Pair::new(
        ClientRole::Publish(PublishMode::Record),
        HandshakeKind::Simple,
        Policy::RejectPublish,
    );
    pair.pump();
    let rejection = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::Rejected { command, status } => Some((*command, status.code.clone())),
        _ => None,
    });
    assert_eq!(
        rejection,
        Some(("publish", "NetStream.Publish.BadName".to_owned()))
    );
    assert!(!pair.client_events.contains(&ClientEvent::PublishStarted));
    assert!(pair
        .client
        .send_media(MediaKind::Audio, 0, Bytes::new())
        .is_err());
}

#[test]
fn rejected_connect_reaches_the_client_and_nothing_follows() {
    let mut pair = Pair::new(
        ClientRole::Play,
        HandshakeKind::Simple,
        Policy::RejectConnect,
    );
    pair.pump();
    let rejection = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::Rejected { command, status } => {
            Some((*command, status.code.clone(), status.description.clone()))
        }
        _ => None,
    });
    assert_eq!(
        rejection,
        Some((
            "connect",
            "NetConnection.Connect.Rejected".to_owned(),
            "not on the list".to_owned()
        ))
    );
    assert!(!pair.client_events.contains(&ClientEvent::Connected));
    assert_eq!(pair.client.stream_id(), None);
}

#[test]
fn rejected_play_reaches_the_client_as_stream_not_found() {
    let mut pair = Pair::new(ClientRole::Play, HandshakeKind::Simple, Policy::RejectPlay);
    pair.pump();
    let rejection = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::Rejected { command, status } => Some((*command, status.code.clone())),
        _ => None,
    });
    assert_eq!(
        rejection,
        Some(("play", "NetStream.Play.StreamNotFound".to_owned()))
    );
}

#[test]
fn server_acknowledges_every_window_the_client_asked_for() {
    let mut config = ClientConfig::new("h", "live", "key", ClientRole::Publish(PublishMode::Live));
    config.window_size = 50_000;
    let mut pair = Pair {
        client: ClientSession::new(config),
        server: ServerSession::new(ServerConfig::default()),
        client_events: Vec::new(),
        server_events: Vec::new(),
        policy: Policy::AcceptAll,
    };
    pair.pump();
    for n in 0..30 {
        pair.client
            .send_media(MediaKind::Video, n * 40, frame(n as usize, 10_000))
            .unwrap();
    }
    pair.pump();
    let acks: Vec<u32> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Acknowledged { sequence_number } => Some(*sequence_number),
            _ => None,
        })
        .collect();
    assert!(acks.len() >= 5, "got {acks:?}");
    assert!(acks.windows(2).all(|w| w[1] - w[0] >= 50_000), "{acks:?}");
}

mod property {
    use super::*;
    use proptest::prelude::*;

    fn arb_media() -> impl Strategy<Value = Vec<(MediaKind, u32, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop_oneof![Just(MediaKind::Audio), Just(MediaKind::Video)],
                prop_oneof![0u32..100_000, 0x00FF_FF00u32..0x0100_0100, any::<u32>()],
                prop::collection::vec(any::<u8>(), 0..20_000),
            ),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever a publisher pushes arrives unchanged at the server, in order, whatever the
        /// timestamps (extended ones included) and frame sizes.
        #[test]
        fn pushed_media_arrives_unchanged(media in arb_media(), complex in any::<bool>()) {
            let handshake = if complex {
                HandshakeKind::Complex(streamr_media::rtmp::handshake::DigestScheme::Scheme0)
            } else {
                HandshakeKind::Simple
            };
            let mut pair = Pair::new(ClientRole::Publish(PublishMode::Live), handshake, Policy::AcceptAll);
            pair.pump();
            let mut sent = Vec::new();
            for (kind, timestamp, payload) in media {
                let payload = Bytes::from(payload);
                pair.client.send_media(kind, timestamp, payload.clone()).unwrap();
                sent.push((kind, timestamp, payload));
            }
            pair.pump();
            let received: Vec<_> = pair.server_events.iter().filter_map(|e| match e {
                ServerEvent::Media { kind, timestamp, payload, .. } => Some((*kind, *timestamp, payload.clone())),
                _ => None,
            }).collect();
            prop_assert_eq!(received, sent);
        }
    }
}

#[test]
fn only_a_client_that_asks_for_node_notices_is_known_to_want_them() {
    for asks in [false, true] {
        let mut config = ClientConfig::new("127.0.0.1:1935", "live", "key", ClientRole::Play);
        config.node_notices = asks;
        let mut pair = Pair {
            client: ClientSession::new(config),
            server: ServerSession::new(ServerConfig::default()),
            client_events: Vec::new(),
            server_events: Vec::new(),
            policy: Policy::AcceptAll,
        };
        pair.pump();
        assert!(pair.client_events.contains(&ClientEvent::PlayStarted));
        // The property travels in the connect command object, beside the usual ones.
        let asked = pair.server_events.iter().find_map(|event| match event {
            ServerEvent::ConnectRequested { command_object, .. } => Some(
                command_object
                    .property(streamr_media::rtmp::session::NODE_NOTICES_PROPERTY)
                    .and_then(Amf0Value::as_bool),
            ),
            _ => None,
        });
        assert_eq!(asked, Some(asks.then_some(true)));
        assert_eq!(pair.server.wants_node_notices(), asks);
    }
}
