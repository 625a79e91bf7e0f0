//! RTMP players whose batches go out with `sendfile` from the stream's shared file of chunked
//! frames get byte for byte what the vectored writer gives them: fast, slow, late and leaving
//! players, across a rotation of the stream's shared file (2 MiB: the stream below is some
//! 2.7 MB).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamr_media::relay::{FrameKind, RelayConfig, RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use streamr_media::server::{AllowAll, RelayServer, RelayServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Server bytes of the handshake (S0, S1, S2): random and time fields, not compared.
const HANDSHAKE_BYTES: usize = 1 + 1536 + 1536;

/// One player of the byte-compare test: how it joins, reads and leaves.
#[derive(Clone, Copy, Debug)]
struct Player {
    /// Frames published before it joins.
    joins_after: u32,
    /// Reads at most 2 KiB at a time with a pause, through a 4 KiB receive buffer.
    slow: bool,
    /// Closes the connection after this many bytes.
    leaves_after: Option<usize>,
}

/// A frame of the test stream: a keyframe every 30, big and small frames, audio between.
fn test_frame(i: u32) -> (FrameKind, Bytes) {
    if i % 3 == 1 {
        return (FrameKind::Audio, Bytes::from(vec![0xAF, 1, i as u8, 7]));
    }
    let keyframe = i % 30 == 0;
    let size = if keyframe {
        40_000 + (i as usize * 7) % 5_000
    } else {
        500 + (i as usize * 131) % 12_000
    };
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend((0..size).map(|n| (n as u32 ^ i) as u8));
    (FrameKind::Video, Bytes::from(body))
}

/// Plays `live/shared` from `server` and returns every byte the server sent after the
/// handshake: until it left (`leaves_after`), or until the stream ended (UnpublishNotify) and
/// nothing more came for a while. `started` is told once the server has subscribed it.
async fn play(
    server: std::net::SocketAddr,
    player: Player,
    started: oneshot::Sender<()>,
) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    if player.slow {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let mut stream: TcpStream = socket.connect(server).await.unwrap();
    let mut session = ClientSession::new(ClientConfig::new(
        &server.to_string(),
        "live",
        "shared",
        ClientRole::Play,
    ));
    let mut started = Some(started);
    let mut ended = false;
    let mut received = Vec::new();
    let mut buf = vec![0u8; if player.slow { 2048 } else { 64 * 1024 }];
    loop {
        if session.has_output() {
            stream.write_all(&session.take_output()).await.unwrap();
        }
        let read = if ended {
            // The stream ended: take what is still on its way, then stop.
            match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
                Ok(read) => read.unwrap(),
                Err(_) => break,
            }
        } else {
            stream.read(&mut buf).await.unwrap()
        };
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buf[..read]);
        session.feed(&buf[..read]).unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::PlayStarted => {
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                }
                ClientEvent::StreamEnded => ended = true,
                _ => {}
            }
        }
        if player
            .leaves_after
            .is_some_and(|after| received.len() >= after)
        {
            break;
        }
        if player.slow {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rtmp_player_gets_the_vectored_writes_bytes_from_the_shared_file() {
    // No player lags far enough to skip: what each gets depends only on when it joined.
    let hub = RelayHub::new(
        RelayConfig::default().with_viewer_max_lag(1 << 30, Duration::from_secs(3600)),
    );
    let mut config = RelayServerConfig::default()
        .with_bind("127.0.0.1:0".parse().unwrap())
        .with_sendfile_min_bytes(Some(0));
    config.max_connections_per_client = 1000;
    // The end of the stream is a status message, so every player knows it has it all.
    config.notify_players_on_unpublish = true;
    let shared = RelayServer::start_on_hub(config.clone(), Arc::new(AllowAll), hub.clone())
        .await
        .unwrap();
    let plain = RelayServer::start_on_hub(
        config.with_sendfile_min_bytes(None),
        Arc::new(AllowAll),
        hub.clone(),
    )
    .await
    .unwrap();
    let key = StreamKey::parse("live", "shared").unwrap();
    let publisher = hub.publish(key).unwrap();
    let players = [
        (0, false, None),
        (0, true, None),
        (10, false, Some(150_000)),
        (47, false, None),
        (47, true, None),
        (95, false, Some(5_000)),
        (130, false, None),
    ]
    .map(|(joins_after, slow, leaves_after)| Player {
        joins_after,
        slow,
        leaves_after,
    });
    let mut runs = Vec::new();
    // 500 frames of some 5.4 KB on average (keyframes 40 KB): about 2.7 MB, past one 2 MiB
    // file.
    let frames = 500u32;
    for i in 0..frames {
        for player in players.iter().filter(|p| p.joins_after == i) {
            // Twins from the same point of the stream: sendfile for every batch, and vectored
            // writes. The next frame is sent once both are subscribed.
            let (a_started, a_wait) = oneshot::channel();
            let (b_started, b_wait) = oneshot::channel();
            let a = tokio::spawn(play(shared.local_addr(), *player, a_started));
            let b = tokio::spawn(play(plain.local_addr(), *player, b_started));
            tokio::time::timeout(Duration::from_secs(10), async {
                let _ = a_wait.await;
                let _ = b_wait.await;
            })
            .await
            .expect("both twins start playing");
            runs.push((*player, a, b));
        }
        let (kind, payload) = test_frame(i);
        publisher.send(kind, i * 33, payload);
        if i % 4 == 0 {
            // Let players take batches of different sizes.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    drop(publisher);
    for (player, a, b) in runs {
        let (zero_copy, vectored) = tokio::time::timeout(Duration::from_secs(60), async {
            (a.await.unwrap(), b.await.unwrap())
        })
        .await
        .expect("every player finishes");
        assert!(zero_copy.len() > HANDSHAKE_BYTES && vectored.len() > HANDSHAKE_BYTES);
        let (zero_copy, vectored) = (&zero_copy[HANDSHAKE_BYTES..], &vectored[HANDSHAKE_BYTES..]);
        match player.leaves_after {
            None => {
                assert_eq!(zero_copy.len(), vectored.len(), "{player:?}");
                assert!(
                    zero_copy == vectored,
                    "{player:?}: sendfile and writev differ"
                );
                assert!(zero_copy.len() > 100_000, "{player:?}: got the stream");
            }
            Some(_) => {
                // It left mid-stream: what it got is the start of what its twin got.
                let common = zero_copy.len().min(vectored.len());
                assert!(zero_copy[..common] == vectored[..common], "{player:?}");
            }
        }
    }
    let (shared_metrics, plain_metrics) = (shared.metrics(), plain.metrics());
    assert!(
        shared_metrics.bytes_shared > 1_000_000,
        "batches went out by sendfile: {shared_metrics:?}"
    );
    assert_eq!(plain_metrics.bytes_shared, 0);
    assert_eq!(shared_metrics.frames_dropped, 0);
    shared.shutdown().await;
    plain.shutdown().await;
}
