//! The sans-IO RTMP server session driven by hand over one TCP connection: accept any publisher
//! and count what it sends. `cargo run -p streamr-media --example session_by_hand`, then
//! `ffmpeg -re -i samples/sample.flv -c copy -f flv rtmp://127.0.0.1:1935/live/demo`.

use std::error::Error;

use streamr_media::{ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves the first connection on `listener` until its publisher stops or hangs up; returns how
/// many media messages (audio, video, data) it sent and their payload bytes.
pub async fn serve_one(listener: TcpListener) -> Result<(u64, u64), Box<dyn Error>> {
    let (mut socket, peer) = listener.accept().await?;
    let mut session = ServerSession::new(ServerConfig::default());
    let (mut buf, mut messages, mut bytes) = (vec![0u8; 64 * 1024], 0, 0);
    loop {
        match socket.read(&mut buf).await? {
            0 => return Ok((messages, bytes)),
            n => session.feed(buf.get(..n).unwrap_or_default())?,
        }
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::ConnectRequested { app, .. } => {
                    println!("{peer} connects to {app}");
                    session.accept_connect()?;
                }
                ServerEvent::PublishRequested {
                    stream_id,
                    stream_key,
                    ..
                } => {
                    println!("{peer} publishes {stream_key}");
                    session.accept_publish(stream_id)?;
                }
                ServerEvent::Media { payload, .. } => {
                    messages += 1;
                    bytes += payload.len() as u64;
                }
                ServerEvent::PublishFinished { .. } => return Ok((messages, bytes)),
                _ => {}
            }
        }
        socket.write_all(&session.take_output()).await?;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (messages, bytes) = serve_one(TcpListener::bind("127.0.0.1:1935").await?).await?;
    println!("{messages} messages, {bytes} bytes");
    Ok(())
}
