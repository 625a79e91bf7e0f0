//! An edge relay: RTMP players and HLS viewers are served from one pull of the origin's stream.
//! `cargo run -p streamr-media --example edge_relay -- rtmp://origin:1935`, then play
//! `rtmp://127.0.0.1:1936/live/demo` or `http://127.0.0.1:8081/live/demo.m3u8`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_media::{Refusal, RelayHooks, RelayHub, RelayServer, RelayServerConfig};
use streamr_media::{StreamKey, StreamRequest};

/// An RTMP play starts (or joins) the pull of its stream before the hub serves it.
pub struct PullOnPlay(pub UpstreamPuller);

#[async_trait::async_trait]
impl RelayHooks for PullOnPlay {
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        self.0.ensure(&request.key);
        Ok(())
    }
}

/// Starts an edge of `origin` (`rtmp://host:port`): RTMP on `rtmp`, HLS and HTTP-FLV on `http`.
pub async fn start(
    origin: &str,
    rtmp: &str,
    http: &str,
) -> io::Result<(RelayServer, HttpServer, UpstreamPuller)> {
    let hub = RelayHub::default();
    let mut upstream = UpstreamConfig::default();
    upstream.upstreams.push(origin.to_string());
    let puller = UpstreamPuller::new(hub.clone(), upstream);
    let config = RelayServerConfig::default().with_bind(rtmp.parse().map_err(io::Error::other)?);
    let hooks = Arc::new(PullOnPlay(puller.clone()));
    let rtmp = RelayServer::start_on_hub(config, hooks, hub.clone()).await?;
    let http_bind = http.parse().map_err(io::Error::other)?;
    let http = HttpServer::start(http_bind, hub, LiveHlsConfig::default()).await?;
    Ok((rtmp, http, puller))
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let origin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "rtmp://127.0.0.1:1935".into());
    let (_rtmp, _http, puller) = start(&origin, "127.0.0.1:1936", "127.0.0.1:8081").await?;
    // HttpServer has no request hook yet, so an HLS GET cannot start a pull on demand: keep
    // `live/demo` pulled instead (a pull stops after its idle timeout without demand).
    let key = StreamKey::parse("live", "demo").map_err(io::Error::other)?;
    loop {
        puller.ensure(&key);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
