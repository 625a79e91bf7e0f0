//! HTTP delivery of live streams: HLS playlists and segments, and HTTP-FLV.
//!
//! [`LiveHls`] watches a [`RelayHub`] and segments every published stream
//! in memory; [`router`] serves it with HTTP-FLV beside it; [`HttpServer`] binds and runs both.
//!
//! ```no_run
//! use streamr_media::http::{HttpServer, LiveHlsConfig};
//! use streamr_media::relay::RelayHub;
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = RelayHub::default();
//! let http = HttpServer::start("127.0.0.1:8080".parse().unwrap(), hub, LiveHlsConfig::default()).await?;
//! println!("HLS at http://{}/live/<key>.m3u8", http.local_addr());
//! http.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod fast;
mod flv_raw;
mod gate;
mod http_flv;
mod live_hls;
mod ll_hls;
mod msn_map;
mod router;

use std::io;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use fast::MediaFastPath;
pub use flv_raw::{stream_flv, FlvCounters, Framing, ResponseByteCounters, ZERO_COPY_MIN_BYTES};
pub use gate::gated_router;
pub use http_flv::flv_body;
pub use live_hls::{
    LiveHls, LiveHlsConfig, LlLookup, LlRequest, LlSegmentNotice, OriginNumbering, OriginPartPlace,
    PartNotice, PlaylistLookup, SegmentNotice, LEARN_ORIGIN_NUMBERS_WITHIN,
};
pub use ll_hls::{CONTENT_TYPE_MP4, LL_PLAYLIST_NAME};
pub use router::{router, HttpState, CONTENT_TYPE_FLV, CONTENT_TYPE_M3U8, CONTENT_TYPE_TS};

use crate::relay::RelayHub;
use crate::server::PlayGate;

/// A running HTTP server for a node: live HLS and HTTP-FLV of a hub's streams.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    hls: LiveHls,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `bind` and serves `hub`'s streams to anyone, with the default request deadlines
    /// and connection budget of [`streamr_net::HttpLimits`].
    pub async fn start(
        bind: SocketAddr,
        hub: RelayHub,
        config: LiveHlsConfig,
    ) -> io::Result<HttpServer> {
        HttpServer::start_with_gate(bind, hub, config, PlayGate::default()).await
    }

    /// Like [`start`](HttpServer::start), every stream request passing through `gate`: the
    /// same hooks as the RTMP server's (share one [`PlayGate`] between both), relay-on-demand,
    /// and the accepted query carried onto playlist URIs (see [`gated_router`]).
    pub async fn start_with_gate(
        bind: SocketAddr,
        hub: RelayHub,
        config: LiveHlsConfig,
        gate: PlayGate,
    ) -> io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let hls = LiveHls::start(hub.clone(), config, shutdown.clone());
        let limits = streamr_net::HttpLimits::default();
        let state = HttpState::new(hub, hls.clone()).with_write_timeout(limits.write_timeout);
        let app = MediaFastPath::new(gated_router(state.clone(), gate.clone()), state, gate);
        let stop = shutdown.clone();
        info!(%local_addr, "HTTP (HLS, HTTP-FLV) listening");
        let direct = app.direct();
        let task = tokio::spawn(async move {
            let served = streamr_net::http::serve_direct(
                listener,
                app,
                direct,
                limits.budget(),
                limits,
                async move { stop.cancelled().await },
            )
            .await;
            if let Err(error) = served {
                warn!(%error, "HTTP server stopped");
            }
        });
        Ok(HttpServer {
            local_addr,
            hls,
            shutdown,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live HLS state (for segment notices).
    pub fn hls(&self) -> &LiveHls {
        &self.hls
    }

    /// Stops the server and its segmenter tasks. Open HTTP-FLV responses end when their
    /// connections close.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            warn!(%error, "HTTP server task ended abnormally");
        }
    }
}
