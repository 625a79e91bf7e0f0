//! The player fleet: spawns players at the ramp rate, samples them every second, reports.

mod flv_scan;
mod hls;
mod http_flv;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;

use crate::stats::{PlayerCounters, PlayerState, Reporter, Summary};

/// Which protocol a URL is played with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RTMP play.
    Rtmp,
    /// HTTP-FLV: one long GET.
    HttpFlv,
    /// HLS: playlist polling and segment downloads.
    Hls,
}

impl Protocol {
    /// Picks the protocol from the URL's scheme and extension.
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if url.starts_with("rtmp://") {
            Ok(Self::Rtmp)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            if path.ends_with(".m3u8") {
                Ok(Self::Hls)
            } else {
                Ok(Self::HttpFlv)
            }
        } else {
            bail!("unsupported URL {url:?}: expected rtmp://, or http:// ending in .flv or .m3u8")
        }
    }
}

/// Settings of one load run.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The URL reported (the one given on the command line).
    pub url: String,
    /// The URLs played, taken in turn by the players (all of one protocol).
    pub urls: Vec<String>,
    /// Number of players.
    pub players: usize,
    /// Players started per second.
    pub ramp_per_sec: f64,
    /// Length of the whole run.
    pub duration: Duration,
    /// Stream bitrate in kbit/s for stall detection.
    pub stream_kbps: f64,
    /// Stall window in seconds.
    pub stall_window_s: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// HTTP players reuse idle connections (otherwise one connection per request).
    pub keep_alive: bool,
}

/// Runs the fleet and returns the summary.
pub async fn run(config: FleetConfig) -> anyhow::Result<Summary> {
    let Some(first_url) = config.urls.first() else {
        bail!("no URL to play");
    };
    let protocol = Protocol::of_url(first_url)?;
    for url in &config.urls {
        if Protocol::of_url(url)? != protocol {
            bail!("{url:?} is not of the first URL's protocol");
        }
    }
    let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if !config.keep_alive {
        client = client.pool_max_idle_per_host(0);
    }
    let client = client.build()?;
    let bar = if config.progress {
        ProgressBar::with_draw_target(
            Some(config.players as u64),
            ProgressDrawTarget::stderr_with_hz(2),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} playing {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let deadline = started + config.duration;
    let mut players: Vec<Arc<PlayerCounters>> = Vec::with_capacity(config.players);
    let mut tasks = JoinSet::new();
    let mut reporter = Reporter::new(config.stream_kbps, config.stall_window_s);
    let spawn_interval = Duration::from_secs_f64(1.0 / config.ramp_per_sec.max(0.001));
    let mut next_spawn = started;
    let mut next_tick = started + Duration::from_secs(1);

    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        while players.len() < config.players && next_spawn <= now {
            let counters = Arc::new(PlayerCounters::new());
            players.push(counters.clone());
            let turn = players.len().saturating_sub(1) % config.urls.len();
            let url = config.urls.get(turn).unwrap_or(first_url).clone();
            let client = client.clone();
            tasks.spawn(async move {
                let result = match protocol {
                    Protocol::Rtmp => crate::rtmp_player::play(url, counters.clone()).await,
                    Protocol::HttpFlv => http_flv::play(client, url, counters.clone()).await,
                    Protocol::Hls => hls::play(client, url, counters.clone()).await,
                };
                if let Err(error) = result {
                    tracing::debug!(%error, "player failed");
                    counters.set_state(PlayerState::Failed);
                }
            });
            next_spawn += spawn_interval;
        }
        if now >= next_tick {
            let tick = reporter.tick(&players);
            let line = format!(
                "t={:>5.1}s playing={} failed={} aggregate={:.1} Mbps rate p5/p50/p95={:.0}/{:.0}/{:.0} kbps stalled={}",
                tick.t,
                tick.playing,
                tick.failed,
                tick.aggregate_mbps,
                tick.rate_kbps.p5,
                tick.rate_kbps.p50,
                tick.rate_kbps.p95,
                tick.stalled
            );
            bar.set_position(tick.playing as u64);
            bar.set_message(format!(
                "{:.1} Mbps, {} stalled",
                tick.aggregate_mbps, tick.stalled
            ));
            if config.progress {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
            next_tick += Duration::from_secs(1);
        }
        let wake = next_tick.min(if players.len() < config.players {
            next_spawn
        } else {
            next_tick
        });
        tokio::time::sleep_until(wake.min(deadline).into()).await;
    }
    bar.finish_and_clear();
    tasks.abort_all();
    Ok(reporter.finish(&config.url, &players))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_follows_the_url() {
        assert_eq!(Protocol::of_url("rtmp://h/live/k").unwrap(), Protocol::Rtmp);
        assert_eq!(
            Protocol::of_url("http://h/live/k.flv").unwrap(),
            Protocol::HttpFlv
        );
        assert_eq!(
            Protocol::of_url("http://h/live/k.m3u8?x=1").unwrap(),
            Protocol::Hls
        );
        assert!(Protocol::of_url("srt://h").is_err());
    }
}
