//! `streamr-load`: drives thousands of RTMP, HTTP-FLV or HLS players against one URL and reports
//! connected players, aggregate throughput, per-player receive rates, stalls and start-up times;
//! or publishes an FLV file in real time, looped, so no encoder is needed.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod play;
mod publish;
mod rtmp_player;
mod stamp;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
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
#[command(name = "streamr-load", version)]
struct Cli {
    /// A TOML file of settings whose keys are the subcommand's long flag names; flags and
    /// variables override it.
    #[arg(long, env = "STREAMR_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start N players against a URL (rtmp://…, http://….flv or http://….m3u8).
    Play {
        /// The stream URL, or `@file`: a file of URLs, one per line, that the players take
        /// in turn (e.g. grant URLs on many nodes).
        url: String,
        /// Number of players.
        #[arg(short = 'n', long, env = "STREAMR_LOAD_PLAYERS", default_value_t = 100)]
        players: usize,
        /// Players started per second.
        #[arg(long, env = "STREAMR_LOAD_RAMP", default_value_t = 200.0)]
        ramp: f64,
        /// Length of the run (`30s`, `2m`; a bare number is seconds).
        #[arg(short, long, env = "STREAMR_LOAD_DURATION", default_value = "30s",
              value_parser = streamr_net::cli::seconds_or_duration)]
        duration: Duration,
        /// Stream bitrate in kbit/s; a player below 90 % of it over the stall window is stalled.
        #[arg(long, env = "STREAMR_LOAD_BITRATE_KBPS", default_value_t = 232.0)]
        bitrate_kbps: f64,
        /// Stall window (whole seconds; a bare number is seconds).
        #[arg(long, env = "STREAMR_LOAD_STALL_WINDOW", default_value = "3s",
              value_parser = whole_seconds)]
        stall_window: usize,
        /// Write the final JSON report here (default: stdout).
        #[arg(long, env = "STREAMR_LOAD_JSON")]
        json: Option<PathBuf>,
        /// Hide the progress bar and print one line per second instead.
        #[arg(long, env = "STREAMR_LOAD_NO_PROGRESS")]
        no_progress: bool,
        /// HTTP players (HLS, HTTP-FLV) reuse idle connections for their next requests, as
        /// browsers and ffmpeg do (default: a new connection per request).
        #[arg(long, env = "STREAMR_LOAD_HLS_KEEP_ALIVE")]
        hls_keep_alive: bool,
    },
    /// Publish an FLV file to an RTMP URL in real time, looping it.
    Publish {
        /// The FLV file.
        file: PathBuf,
        /// The RTMP URL, `rtmp://host[:port]/app/stream-key`.
        url: String,
        /// Stop after this long (`90s`; a bare number is seconds; default: run until
        /// interrupted).
        #[arg(short, long, env = "STREAMR_LOAD_DURATION",
              value_parser = streamr_net::cli::seconds_or_duration)]
        duration: Option<Duration>,
        /// Play the file once instead of looping.
        #[arg(long, env = "STREAMR_LOAD_ONCE")]
        once: bool,
    },
}

/// A duration in whole seconds (humantime or a bare number of seconds).
fn whole_seconds(value: &str) -> Result<usize, String> {
    let duration = streamr_net::cli::seconds_or_duration(value)?;
    usize::try_from(duration.as_secs()).map_err(|error| error.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let argv = streamr_net::cli::with_config_file(&Cli::command(), std::env::args_os().collect())?;
    match Cli::parse_from(argv).command {
        Command::Play {
            url,
            players,
            ramp,
            duration,
            bitrate_kbps,
            stall_window,
            json,
            no_progress,
            hls_keep_alive,
        } => {
            let urls = match url.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)?
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => vec![url.clone()],
            };
            let summary = play::run(play::FleetConfig {
                url,
                urls,
                players,
                ramp_per_sec: ramp,
                duration,
                stream_kbps: bitrate_kbps,
                stall_window_s: stall_window,
                progress: !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                keep_alive: hls_keep_alive,
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
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(result) => result?,
                    Err(_elapsed) => {}
                },
                None => run.await?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_its_variable_and_its_row_in_the_docs() {
        let command = Cli::command();
        streamr_test_support::cli::assert_documented(
            &command,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md"),
        );
    }

    #[test]
    fn durations_take_humantime_and_bare_seconds() {
        for (flag, secs) in [("2m", 120), ("45", 45)] {
            let cli =
                Cli::try_parse_from(["streamr-load", "play", "rtmp://h/a/b", "-d", flag]).unwrap();
            let Command::Play { duration, .. } = cli.command else {
                panic!("play")
            };
            assert_eq!(duration, Duration::from_secs(secs));
        }
    }
}
