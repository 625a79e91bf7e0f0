//! An edge relay that pulls from its origin on demand, serves RTMP, HTTP-FLV and HLS, and checks
//! the viewer's token on every path: `cargo run -p streamr-media --example edge_relay --
//! rtmp://origin:1935 t0ken`, then play `rtmp://127.0.0.1:1936/live/demo?token=t0ken` or
//! `http://127.0.0.1:8081/live/demo.m3u8?token=t0ken` (its segment URIs carry the token).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_media::StreamRequest;
use streamr_media::{PlayGate, Refusal, RelayHooks, RelayHub, RelayServer, RelayServerConfig};

/// Players must send `?token=<token>`, whatever the protocol.
pub struct TokenCheck(pub String);

#[async_trait::async_trait]
impl RelayHooks for TokenCheck {
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let sent = request
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("token="));
        match sent {
            Some(token) if token == self.0 => Ok(()),
            Some(_) => Err(Refusal::new("wrong token")),
            None => Err(Refusal::new("a token is required").unauthorized()),
        }
    }
}

/// Starts an edge of `origin` (`rtmp://host:port`): RTMP on `rtmp`, HLS and HTTP-FLV on `http`.
pub async fn start(
    origin: &str,
    token: &str,
    (rtmp, http): (&str, &str),
) -> io::Result<(RelayServer, HttpServer, UpstreamPuller)> {
    let hub = RelayHub::default();
    let upstream = UpstreamConfig::default().with_upstreams([origin]);
    let puller = UpstreamPuller::new(hub.clone(), upstream);
    let gate = PlayGate::new(Arc::new(TokenCheck(token.to_owned())))
        .with_upstream(puller.clone(), Duration::from_secs(5));
    let config = RelayServerConfig::default().with_bind(rtmp.parse().map_err(io::Error::other)?);
    let rtmp = RelayServer::start_on_hub(config, Arc::new(gate.clone()), hub.clone()).await?;
    let http_bind = http.parse().map_err(io::Error::other)?;
    let http = HttpServer::start_with_gate(http_bind, hub, LiveHlsConfig::default(), gate).await?;
    Ok((rtmp, http, puller))
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let origin = args.next().unwrap_or("rtmp://127.0.0.1:1935".into());
    let token = args.next().unwrap_or("t0ken".into());
    let _edge = start(&origin, &token, ("127.0.0.1:1936", "127.0.0.1:8081")).await?;
    tokio::signal::ctrl_c().await
}
