//! An RTMP relay that lets only the holder of the publish key publish and only viewers with a
//! token play: `cargo run -p streamr-media --example relay_auth -- 127.0.0.1:1935`, publish to
//! `rtmp://127.0.0.1:1935/live/show?key=s3cret`, play `rtmp://127.0.0.1:1935/live/show?token=t0ken`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use streamr_media::{Refusal, RelayHooks, RelayServer, RelayServerConfig, StreamRequest};

/// Publishers must send `?key=<publish_key>`, players `?token=<play_token>`.
pub struct KeyAndToken {
    /// The one key that may publish.
    pub publish_key: String,
    /// The token players must show.
    pub play_token: String,
}

/// Refuses unless the query (`a=1&b=2`) holds `name=expected`.
fn require(query: &str, name: &str, expected: &str) -> Result<(), Refusal> {
    let wanted = format!("{name}={expected}");
    if query.split('&').any(|pair| pair == wanted) {
        return Ok(());
    }
    Err(Refusal::new(format!("{name} missing or wrong")))
}

#[async_trait::async_trait]
impl RelayHooks for KeyAndToken {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        require(&request.query, "key", &self.publish_key)
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        require(&request.query, "token", &self.play_token)
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
