//! Server session behaviour at the message level: a scripted client speaks raw RTMP messages
//! and the test reads back exactly what the session answered.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::amf0::Amf0Value;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use crate::rtmp::handshake::{ClientHandshake, HandshakeKind};
use crate::rtmp::message::{Command, RtmpMessage, UserControlEvent};

/// A scripted client: completes a simple handshake, then sends messages and decodes replies.
struct Script {
    server: ServerSession,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    from_server: BytesMut,
    events: Vec<ServerEvent>,
}

fn command(name: &str, tx: f64, object: Amf0Value, args: Vec<Amf0Value>) -> RtmpMessage {
    RtmpMessage::Command {
        command: Command {
            name: name.into(),
            transaction_id: tx,
            command_object: object,
            arguments: args,
        },
        amf3: false,
    }
}

fn text(s: &str) -> Amf0Value {
    Amf0Value::String(s.into())
}

impl Script {
    fn new(config: ServerConfig) -> Self {
        let mut server = ServerSession::new(config);
        let mut client = ClientHandshake::new(HandshakeKind::Simple);
        server.feed(&client.take_output()).unwrap();
        let mut s0s1s2 = BytesMut::from(&server.take_output()[..]);
        client.process(&mut s0s1s2).unwrap();
        server.feed(&client.take_output()).unwrap();
        assert!(server.handshake_done());
        Self {
            server,
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::default(),
            from_server: BytesMut::new(),
            events: Vec::new(),
        }
    }

    fn send_raw(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let mut bytes = BytesMut::new();
        self.encoder.encode(raw, &mut bytes).unwrap();
        let result = self.server.feed(&bytes);
        self.collect_events();
        result
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<(), SessionError> {
        let csid = if message.type_id() <= 6 { 2 } else { 3 };
        self.send_raw(message.to_raw(csid, 0, stream_id).unwrap())
    }

    fn collect_events(&mut self) {
        while let Some(event) = self.server.poll_event() {
            self.events.push(event);
        }
    }

    /// Everything the server queued, decoded.
    fn replies(&mut self) -> Vec<(u32, RtmpMessage)> {
        self.from_server
            .extend_from_slice(&self.server.take_output());
        let mut out = Vec::new();
        while let Some(raw) = self.decoder.decode(&mut self.from_server).unwrap() {
            out.push((raw.message_stream_id, RtmpMessage::decode(&raw).unwrap()));
        }
        out
    }

    fn connect(&mut self) {
        let object = Amf0Value::Object(vec![
            ("app".into(), text("live")),
            ("tcUrl".into(), text("rtmp://h/live")),
        ]);
        self.send(command("connect", 1.0, object, vec![]), 0)
            .unwrap();
        self.server.accept_connect().unwrap();
        self.replies();
    }

    fn create_stream(&mut self) -> u32 {
        self.send(command("createStream", 2.0, Amf0Value::Null, vec![]), 0)
            .unwrap();
        match self.replies().as_slice() {
            [(_, RtmpMessage::Command { command, .. })] if command.name == "_result" => {
                command.number_argument(0).unwrap() as u32
            }
            other => panic!("unexpected createStream reply {other:?}"),
        }
    }
}

fn status_codes(replies: &[(u32, RtmpMessage)]) -> Vec<String> {
    replies
        .iter()
        .filter_map(|(_, m)| match m {
            RtmpMessage::Command { command, .. } if command.name == "onStatus" => command
                .arguments
                .first()
                .and_then(|a| a.property("code"))
                .and_then(Amf0Value::as_str)
                .map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[test]
fn amf3_connect_gets_window_bandwidth_chunk_size_then_result() {
    let mut script = Script::new(ServerConfig::default());
    let connect = RtmpMessage::Command {
        command: Command {
            name: "connect".into(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(vec![
                ("app".into(), text("live")),
                ("objectEncoding".into(), Amf0Value::Number(3.0)),
            ]),
            arguments: vec![],
        },
        amf3: true,
    };
    script.send(connect, 0).unwrap();
    assert!(matches!(
        script.events.as_slice(),
        [ServerEvent::ConnectRequested { app, tc_url: None, .. }] if app == "live"
    ));
    assert!(
        script.replies().is_empty(),
        "nothing before the app decides"
    );
    script.server.accept_connect().unwrap();
    let replies = script.replies();
    assert_eq!(
        replies[0].1,
        RtmpMessage::WindowAckSize(DEFAULT_WINDOW_SIZE)
    );
    assert!(matches!(
        replies[1].1,
        RtmpMessage::SetPeerBandwidth {
            size: DEFAULT_WINDOW_SIZE,
            ..
        }
    ));
    assert_eq!(replies[2].1, RtmpMessage::SetChunkSize(4096));
    let RtmpMessage::Command { command, .. } = &replies[3].1 else {
        panic!("expected _result, got {:?}", replies[3]);
    };
    assert_eq!(command.name, "_result");
    assert_eq!(command.transaction_id, 1.0);
    let info = &command.arguments[0];
    assert_eq!(
        info.property("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        info.property("objectEncoding")
            .and_then(Amf0Value::as_number),
        Some(3.0)
    );
    assert_eq!(script.server.outgoing_chunk_size(), 4096);
}

#[test]
fn accepted_play_sends_begin_reset_start_and_sample_access_in_order() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    let id = script.create_stream();
    let play = command(
        "play",
        0.0,
        Amf0Value::Null,
        vec![text("key"), Amf0Value::Number(-2.0)],
    );
    script.send(play, id).unwrap();
    assert!(script.events.iter().any(|e| matches!(
        e,
        ServerEvent::PlayRequested { stream_key, start, reset: true, .. }
            if stream_key == "key" && *start == -2.0
    )));
    script.server.accept_play(id).unwrap();
    let replies = script.replies();
    assert_eq!(
        replies[0].1,
        RtmpMessage::UserControl(UserControlEvent::StreamBegin(id))
    );
    assert_eq!(
        status_codes(&replies),
        ["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    assert!(replies.iter().any(|(sid, m)| *sid == id
        && matches!(m, RtmpMessage::Data { values, .. }
            if values[0].as_str() == Some("|RtmpSampleAccess"))));

    script.server.notify_unpublished(id).unwrap();
    let replies = script.replies();
    assert_eq!(
        replies[0].1,
        RtmpMessage::UserControl(UserControlEvent::StreamEof(id))
    );
    assert_eq!(status_codes(&replies), ["NetStream.Play.UnpublishNotify"]);
}

#[test]
fn media_sent_before_publish_is_accepted_waits_for_the_decision() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    let id = script.create_stream();
    // A hasty publisher: publish, metadata and a frame in one write.
    let mut bytes = BytesMut::new();
    let publish = command(
        "publish",
        5.0,
        Amf0Value::Null,
        vec![text("key"), text("live")],
    );
    for raw in [
        publish.to_raw(3, 0, id).unwrap(),
        RtmpMessage::Data {
            values: vec![
                text("@setDataFrame"),
                text("onMetaData"),
                Amf0Value::EcmaArray(vec![]),
            ],
            amf3: false,
        }
        .to_raw(5, 0, id)
        .unwrap(),
        RtmpMessage::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0]))
            .to_raw(7, 0, id)
            .unwrap(),
    ] {
        script.encoder.encode(raw, &mut bytes).unwrap();
    }
    script.server.feed(&bytes).unwrap();
    script.collect_events();
    // ConnectRequested, PublishRequested and nothing after it yet.
    assert_eq!(script.events.len(), 2, "{:?}", script.events);
    script.server.accept_publish(id).unwrap();
    script.collect_events();
    assert!(matches!(script.events[2], ServerEvent::Metadata { .. }));
    assert!(matches!(
        script.events[3],
        ServerEvent::Media {
            kind: MediaKind::Video,
            ..
        }
    ));
    assert_eq!(status_codes(&script.replies()), ["NetStream.Publish.Start"]);

    script
        .send(
            command(
                "deleteStream",
                6.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(f64::from(id))],
            ),
            0,
        )
        .unwrap();
    assert!(matches!(
        script.events.last(),
        Some(ServerEvent::PublishFinished { stream_key, .. }) if stream_key == "key"
    ));
    assert_eq!(
        status_codes(&script.replies()),
        ["NetStream.Unpublish.Success"]
    );
}

#[test]
fn a_publishers_data_messages_come_as_amf0_bodies_however_they_were_sent() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    let id = script.create_stream();
    let publish = command(
        "publish",
        5.0,
        Amf0Value::Null,
        vec![text("key"), text("live")],
    );
    script.send(publish, id).unwrap();
    script.server.accept_publish(id).unwrap();
    script.events.clear();
    let cue_point = || vec![text("onCuePoint"), Amf0Value::Number(7.0)];
    let amf0 = || crate::amf0::encode_all(&cue_point()).unwrap().freeze();
    // An AMF3 data message (type 15): its format byte is not part of the AMF0 body.
    let amf3 = RtmpMessage::Data {
        values: cue_point(),
        amf3: true,
    };
    script.send_raw(amf3.to_raw(5, 40, id).unwrap()).unwrap();
    // An aggregate of a video frame, onMetaData and a cue point, as FLV tags.
    let tag = |type_id: u8, timestamp: u8, body: &[u8]| {
        let size = body.len() as u32;
        let mut tag = vec![type_id];
        tag.extend_from_slice(&size.to_be_bytes()[1..]);
        tag.extend_from_slice(&[0, 0, timestamp, 0, 0, 0, 0]);
        tag.extend_from_slice(body);
        tag.extend_from_slice(&(size + 11).to_be_bytes());
        tag
    };
    let metadata = crate::amf0::encode_all(&[
        text("@setDataFrame"),
        text("onMetaData"),
        Amf0Value::EcmaArray(vec![]),
    ])
    .unwrap();
    let mut aggregate = tag(9, 0, &[0x17, 1, 0, 0, 0]);
    aggregate.extend(tag(18, 10, &metadata));
    aggregate.extend(tag(18, 20, &amf0()));
    script
        .send_raw(RawMessage {
            chunk_stream_id: 7,
            timestamp: 100,
            type_id: 22,
            message_stream_id: id,
            payload: Bytes::from(aggregate),
        })
        .unwrap();
    let data: Vec<(u32, Bytes)> = script
        .events
        .iter()
        .filter_map(|event| match event {
            ServerEvent::Media {
                kind: MediaKind::Data,
                timestamp,
                payload,
                ..
            } => Some((*timestamp, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(data, vec![(40, amf0()), (120, amf0())]);
    assert!(
        script
            .events
            .iter()
            .any(|event| matches!(event, ServerEvent::Metadata { timestamp: 110, .. })),
        "the aggregated onMetaData is the stream's metadata: {:?}",
        script.events
    );
}

#[test]
fn rejected_connect_serves_nothing_else() {
    let mut script = Script::new(ServerConfig::default());
    script
        .send(
            command("connect", 1.0, Amf0Value::Object(vec![]), vec![]),
            0,
        )
        .unwrap();
    script.server.reject_connect("who are you").unwrap();
    let replies = script.replies();
    assert!(matches!(
        &replies[0].1,
        RtmpMessage::Command { command, .. } if command.name == "_error"
    ));
    script
        .send(command("createStream", 2.0, Amf0Value::Null, vec![]), 0)
        .unwrap();
    script
        .send(
            command("publish", 3.0, Amf0Value::Null, vec![text("key")]),
            1,
        )
        .unwrap();
    assert!(script.replies().is_empty());
    assert_eq!(script.events.len(), 1);
}

#[test]
fn publish_without_create_stream_is_a_bad_name() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    script
        .send(
            command("publish", 3.0, Amf0Value::Null, vec![text("key")]),
            9,
        )
        .unwrap();
    assert_eq!(
        status_codes(&script.replies()),
        ["NetStream.Publish.BadName"]
    );
    assert!(matches!(
        script.server.accept_publish(9),
        Err(SessionError::NoPendingRequest {
            request: "publish",
            stream_id: 9
        })
    ));
}

#[test]
fn too_many_create_streams_is_an_error() {
    let mut script = Script::new(ServerConfig {
        max_streams: 2,
        ..ServerConfig::default()
    });
    script.connect();
    script.create_stream();
    script.create_stream();
    let err = script
        .send(command("createStream", 9.0, Amf0Value::Null, vec![]), 0)
        .unwrap_err();
    assert!(matches!(err, SessionError::TooManyStreams { max: 2 }));
    assert!(matches!(script.server.feed(&[]), Err(SessionError::Failed)));
}

#[test]
fn small_requests_get_their_answers() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    script
        .send(
            RtmpMessage::UserControl(UserControlEvent::PingRequest(77)),
            0,
        )
        .unwrap();
    script
        .send(
            command("getStreamLength", 3.0, Amf0Value::Null, vec![text("key")]),
            0,
        )
        .unwrap();
    script
        .send(command("noSuchMethod", 4.0, Amf0Value::Null, vec![]), 0)
        .unwrap();
    script
        .send(
            command(
                "receiveVideo",
                0.0,
                Amf0Value::Null,
                vec![Amf0Value::Boolean(false)],
            ),
            1,
        )
        .unwrap();
    let replies = script.replies();
    assert_eq!(
        replies[0].1,
        RtmpMessage::UserControl(UserControlEvent::PingResponse(77))
    );
    assert!(matches!(&replies[1].1, RtmpMessage::Command { command, .. }
        if command.name == "_result" && command.transaction_id == 3.0
            && command.number_argument(0) == Some(0.0)));
    assert!(matches!(&replies[2].1, RtmpMessage::Command { command, .. }
        if command.name == "_error" && command.transaction_id == 4.0));
    assert!(script.events.iter().any(|e| matches!(
        e,
        ServerEvent::ReceiveMediaChanged {
            stream_id: 1,
            kind: MediaKind::Video,
            enabled: false
        }
    )));
}

#[test]
fn malformed_command_fails_the_session_naming_where() {
    let mut script = Script::new(ServerConfig::default());
    let err = script
        .send_raw(RawMessage {
            chunk_stream_id: 3,
            timestamp: 0,
            type_id: 20,
            message_stream_id: 0,
            payload: Bytes::from_static(&[0x00, 0x3F]),
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Message {
                csid: 3,
                stream_id: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn flooding_while_a_publish_awaits_its_answer_is_cut_off() {
    let mut script = Script::new(ServerConfig {
        limits: crate::rtmp::chunk::ChunkLimits {
            max_message_size: 10_000,
            ..Default::default()
        },
        ..ServerConfig::default()
    });
    script.connect();
    let id = script.create_stream();
    script
        .send(
            command("publish", 5.0, Amf0Value::Null, vec![text("key")]),
            id,
        )
        .unwrap();
    let frame = RtmpMessage::Video(Bytes::from(vec![0x27; 5_000]));
    let mut result = Ok(());
    for _ in 0..3 {
        result = result.and(script.send(frame.clone(), id));
    }
    assert!(matches!(
        result,
        Err(SessionError::BacklogWhileAwaitingDecision { max: 10_000, .. })
    ));
}

#[test]
fn hostile_chunks_fail_the_session_with_what_and_where() {
    let cases: [(&[u8], &str); 3] = [
        (&[0xC5, 1, 2, 3], "unknown chunk stream 5 at byte 0"),
        (
            &[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            "Set Chunk Size to 0 on chunk stream 2",
        ),
        (
            &[0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0],
            "message of 16777215 bytes on chunk stream 6 at byte 0 exceeds",
        ),
    ];
    for (bytes, expected) in cases {
        let mut script = Script::new(ServerConfig {
            limits: crate::rtmp::chunk::ChunkLimits {
                max_message_size: 1 << 20,
                ..Default::default()
            },
            ..ServerConfig::default()
        });
        let err = script.server.feed(bytes).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn pause_and_fcsubscribe_are_answered() {
    let mut script = Script::new(ServerConfig::default());
    script.connect();
    let id = script.create_stream();
    script
        .send(
            command("FCSubscribe", 3.0, Amf0Value::Null, vec![text("key")]),
            0,
        )
        .unwrap();
    assert!(matches!(
        &script.replies()[0].1,
        RtmpMessage::Command { command, .. } if command.name == "onFCSubscribe"
    ));
    script
        .send(command("play", 0.0, Amf0Value::Null, vec![text("key")]), id)
        .unwrap();
    script.server.accept_play(id).unwrap();
    script.replies();
    let pause = |on: bool| {
        command(
            "pause",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Boolean(on), Amf0Value::Number(1000.0)],
        )
    };
    script.send(pause(true), id).unwrap();
    script.send(pause(false), id).unwrap();
    assert_eq!(
        status_codes(&script.replies()),
        ["NetStream.Pause.Notify", "NetStream.Unpause.Notify"]
    );
    let pauses: Vec<bool> = script
        .events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::PauseChanged { paused, .. } => Some(*paused),
            _ => None,
        })
        .collect();
    assert_eq!(pauses, [true, false]);
}
