//! `streamr-load`: drives thousands of RTMP, HTTP-FLV or HLS players against one URL and reports
//! connected players, aggregate throughput, per-player receive rates, stalls and start-up times;
//! or publishes an FLV file in real time, looped, so no encoder is needed.
#![forbid(unsafe_code)]

mod play;
mod publish;
mod rtmp_player;
mod stamp;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Metadata field in which the publisher announces the wall-clock time (ms since the Unix epoch)
/// of its timestamp 0, so players on the same machine can measure hop latency.
pub const PUBLISH_EPOCH_FIELD: &str = "streamrPublishEpochMs";

/// Milliseconds since the Unix epoch, as f64.
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Load tool for the StreamrP2P media hot path.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start N players against a URL (rtmp://…, http://….flv or http://….m3u8).
    Play {
        /// The stream URL.
        url: String,
        /// Number of players.
        #[arg(short = 'n', long, default_value_t = 100)]
        players: usize,
        /// Players started per second.
        #[arg(long, default_value_t = 200.0)]
        ramp: f64,
        /// Length of the run in seconds.
        #[arg(short, long, default_value_t = 30)]
        duration: u64,
        /// Stream bitrate in kbit/s; a player below 90 % of it over the stall window is stalled.
        #[arg(long, default_value_t = 232.0)]
        bitrate_kbps: f64,
        /// Stall window in seconds.
        #[arg(long, default_value_t = 3)]
        stall_window: usize,
        /// Write the final JSON report here (default: stdout).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Hide the progress bar and print one line per second instead.
        #[arg(long)]
        no_progress: bool,
    },
    /// Publish an FLV file to an RTMP URL in real time, looping it.
    Publish {
        /// The FLV file.
        file: PathBuf,
        /// The RTMP URL, `rtmp://host[:port]/app/stream-key`.
        url: String,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(short, long)]
        duration: Option<u64>,
        /// Play the file once instead of looping.
        #[arg(long)]
        once: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Play {
            url,
            players,
            ramp,
            duration,
            bitrate_kbps,
            stall_window,
            json,
            no_progress,
        } => {
            let summary = play::run(play::FleetConfig {
                url,
                players,
                ramp_per_sec: ramp,
                duration: Duration::from_secs(duration),
                stream_kbps: bitrate_kbps,
                stall_window_s: stall_window,
                progress: !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            })
            .await?;
            let report = serde_json::to_string_pretty(&summary)?;
            match json {
                Some(path) => std::fs::write(path, report)?,
                None => println!("{report}"),
            }
        }
        Command::Publish {
            file,
            url,
            duration,
            once,
        } => {
            let run = publish::publish_file(&file, &url, !once);
            match duration {
                Some(seconds) => {
                    match tokio::time::timeout(Duration::from_secs(seconds), run).await {
                        Ok(result) => result?,
                        Err(_elapsed) => {}
                    }
                }
                None => run.await?,
            }
        }
    }
    Ok(())
}
