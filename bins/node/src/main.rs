//! `streamr-node`: the StreamrP2P friend node.
//!
//! Runs an RTMP origin/relay: encoders publish to `rtmp://<listen>/<app>/<key>`, players pull the
//! same URL. Logs go to stderr (`--log-format pretty|json`, level from `RUST_LOG`, default
//! `info`); Ctrl-C (or SIGTERM) shuts down gracefully.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{ArgAction, Parser, ValueEnum};
use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::relay::{RelayConfig, RelayHub};
use streamr_media::server::{AllowAll, RelayServer, RelayServerConfig};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// StreamrP2P friend node: an RTMP origin/relay that re-serves streams to viewers.
#[derive(Debug, Parser)]
#[command(name = "streamr-node", version, about)]
struct Args {
    /// Address the RTMP server listens on.
    #[arg(long, env = "STREAMR_RTMP_LISTEN", default_value = "127.0.0.1:1935")]
    rtmp_listen: SocketAddr,

    /// RTMP chunk size announced to and used towards peers (1..=2147483647).
    #[arg(long, env = "STREAMR_CHUNK_SIZE", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=0x7FFF_FFFF))]
    chunk_size: u32,

    /// Keep the current GOP so new viewers start at once (`--gop-cache false` to disable).
    #[arg(long, env = "STREAMR_GOP_CACHE", default_value_t = true, action = ArgAction::Set)]
    gop_cache: bool,

    /// Address the HTTP server (HLS `/{app}/{key}.m3u8`, HTTP-FLV `/{app}/{key}.flv`) listens on.
    #[arg(long, env = "STREAMR_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,

    /// Also write live HLS playlists and segments under this directory (`{app}/{key}.m3u8`).
    #[arg(long, env = "STREAMR_HLS_DIR")]
    hls_dir: Option<std::path::PathBuf>,

    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "STREAMR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let mut relay = RelayConfig::default();
    relay.gop_cache = args.gop_cache;
    let mut config = RelayServerConfig::default()
        .with_bind(args.rtmp_listen)
        .with_relay(relay);
    config.chunk_size = args.chunk_size;

    let hub = RelayHub::new(config.relay.clone());
    let server = RelayServer::start_on_hub(config, std::sync::Arc::new(AllowAll), hub.clone())
        .await
        .with_context(|| format!("cannot listen for RTMP on {}", args.rtmp_listen))?;
    let mut hls = LiveHlsConfig::default();
    if let Some(dir) = &args.hls_dir {
        hls = hls.with_directory(dir);
    }
    let http = HttpServer::start(args.http_listen, hub, hls)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http_listen))?;
    info!(
        http = %http.local_addr(),
        "HLS at http://{0}/live/<key>.m3u8, HTTP-FLV at http://{0}/live/<key>.flv",
        http.local_addr()
    );
    info!(
        rtmp = %server.local_addr(),
        gop_cache = args.gop_cache,
        chunk_size = args.chunk_size,
        "streamr-node running; publish to rtmp://{}/live/<key>",
        server.local_addr()
    );

    shutdown_signal().await;
    info!("shutting down");
    server.shutdown().await;
    http.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_node() {
        let args = Args::try_parse_from(["streamr-node"]).unwrap();
        assert_eq!(args.rtmp_listen, "127.0.0.1:1935".parse().unwrap());
        assert_eq!(args.http_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.hls_dir, None);
        assert_eq!(args.chunk_size, 4096);
        assert!(args.gop_cache);
        assert_eq!(args.log_format, LogFormat::Pretty);
    }

    #[test]
    fn flags_override_defaults_and_bad_values_are_refused() {
        let args = Args::try_parse_from([
            "streamr-node",
            "--rtmp-listen",
            "0.0.0.0:19350",
            "--chunk-size",
            "60000",
            "--gop-cache",
            "false",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(args.rtmp_listen.port(), 19350);
        assert_eq!(args.chunk_size, 60000);
        assert!(!args.gop_cache);
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["streamr-node", "--chunk-size", "0"]).is_err());
        assert!(Args::try_parse_from(["streamr-node", "--rtmp-listen", "nowhere"]).is_err());
    }
}
