//! An RTMP relay that lets only the holder of the publish key publish and only viewers with a
//! token play: `cargo run -p streamr-media --example relay_auth -- 127.0.0.1:1935`, publish to
//! `rtmp://127.0.0.1:1935/live/show?key=s3cret`, play `rtmp://127.0.0.1:1935/live/show?token=t0ken`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use streamr_media::{Refusal, RelayHooks, RelayServer, RelayServerConfig, StreamRequest};

/// Publishers must send `?key=<publish_key>`, players `?token=<play_token>`.
pub struct KeyAndToken {
    pub publish_key: String,
    pub play_token: String,
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[async_trait::async_trait]
impl RelayHooks for KeyAndToken {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        match param(&request.query, "key") {
            Some(key) if key == self.publish_key => Ok(()),
            _ => Err(Refusal::new("wrong publish key")),
        }
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        match param(&request.query, "token") {
            Some(token) if token == self.play_token => Ok(()),
            _ => Err(Refusal::new("no valid token")),
        }
    }
}

/// Starts the relay on `bind` with `hooks`.
pub async fn start(bind: SocketAddr, hooks: KeyAndToken) -> io::Result<RelayServer> {
    let config = RelayServerConfig::default().with_bind(bind);
    RelayServer::start_with_hooks(config, Arc::new(hooks)).await
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or("127.0.0.1:1935".into());
    let bind = bind.parse().map_err(io::Error::other)?;
    let hooks = KeyAndToken {
        publish_key: "s3cret".into(),
        play_token: "t0ken".into(),
    };
    let server = start(bind, hooks).await?;
    println!("rtmp://{}/live/show?key=s3cret", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
