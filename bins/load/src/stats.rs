//! Per-player counters and the per-second / final reports built from them.
//!
//! Players only bump atomics; the reporter samples them once per tick, so the cost per player is
//! a few relaxed atomic adds per received buffer.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Lifecycle of one simulated player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PlayerState {
    /// Spawned, connection not yet established.
    Connecting = 0,
    /// Connected and receiving (or waiting for) media.
    Playing = 1,
    /// The server ended the stream or closed the connection.
    Ended = 2,
    /// Connecting or playing failed with an error.
    Failed = 3,
}

/// Counters one player updates while it runs.
#[derive(Debug)]
pub struct PlayerCounters {
    started: Instant,
    bytes: AtomicU64,
    /// Microseconds from `started` to the first complete video frame; `u64::MAX` while none.
    first_frame_micros: AtomicU64,
    state: AtomicU8,
    /// Sum of hop-latency samples in microseconds, and their count.
    latency_sum_micros: AtomicU64,
    latency_samples: AtomicU64,
    /// Microseconds from `started` to the last coded video frame; `u64::MAX` while none.
    last_video_micros: AtomicU64,
    /// Longest wait between two coded video frames, in microseconds.
    longest_gap_micros: AtomicU64,
}

impl PlayerCounters {
    /// Counters for a player that starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            first_frame_micros: AtomicU64::new(u64::MAX),
            state: AtomicU8::new(PlayerState::Connecting as u8),
            latency_sum_micros: AtomicU64::new(0),
            latency_samples: AtomicU64::new(0),
            last_video_micros: AtomicU64::new(u64::MAX),
            longest_gap_micros: AtomicU64::new(0),
        }
    }

    /// Adds received media bytes.
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records that the first video frame arrived (only the first call counts).
    pub fn first_frame(&self) {
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let _ = self.first_frame_micros.compare_exchange(
            u64::MAX,
            micros,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Records that a coded video frame arrived now: the longest wait between two of them is
    /// the player's longest stall (a frozen picture).
    pub fn video_frame(&self) {
        let now = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let last = self.last_video_micros.swap(now, Ordering::Relaxed);
        if last != u64::MAX {
            self.longest_gap_micros
                .fetch_max(now.saturating_sub(last), Ordering::Relaxed);
        }
    }

    /// The longest wait between two video frames so far, once two arrived.
    fn longest_gap(&self) -> Option<Duration> {
        (self.last_video_micros.load(Ordering::Relaxed) != u64::MAX)
            .then(|| Duration::from_micros(self.longest_gap_micros.load(Ordering::Relaxed)))
    }

    /// Records one hop-latency sample (publisher send time to arrival here), in milliseconds.
    pub fn add_latency_sample(&self, latency_ms: f64) {
        let micros = (latency_ms.max(0.0) * 1000.0) as u64;
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.latency_samples.fetch_add(1, Ordering::Relaxed);
    }

    /// Mean hop latency in milliseconds, if any sample was recorded.
    fn mean_latency_ms(&self) -> Option<f64> {
        let samples = self.latency_samples.load(Ordering::Relaxed);
        (samples > 0).then(|| {
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / samples as f64 / 1000.0
        })
    }

    /// Whether the first video frame has been seen.
    pub fn has_first_frame(&self) -> bool {
        self.first_frame_micros.load(Ordering::Relaxed) != u64::MAX
    }

    /// Moves the player to `state`.
    pub fn set_state(&self, state: PlayerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    fn state(&self) -> PlayerState {
        match self.state.load(Ordering::Relaxed) {
            0 => PlayerState::Connecting,
            1 => PlayerState::Playing,
            2 => PlayerState::Ended,
            _ => PlayerState::Failed,
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn startup(&self) -> Option<Duration> {
        match self.first_frame_micros.load(Ordering::Relaxed) {
            u64::MAX => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

impl Default for PlayerCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles of a distribution.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted in place); zeros when empty.
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let last = values.len() - 1;
            let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[index.saturating_sub(1).min(last)]
        };
        Self {
            p5: rank(5.0),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
        }
    }
}

/// One line of the per-second report.
#[derive(Clone, Debug, Serialize)]
pub struct Tick {
    /// Seconds since the run started.
    pub t: f64,
    /// Players spawned so far.
    pub spawned: usize,
    /// Players currently connected and playing.
    pub playing: usize,
    /// Players that failed so far.
    pub failed: usize,
    /// Aggregate receive rate over the last tick, in megabits per second.
    pub aggregate_mbps: f64,
    /// Per-player receive rate over the stall window, in kilobits per second.
    pub rate_kbps: Percentiles,
    /// Playing players (past their start-up) below the stall threshold over the stall window.
    pub stalled: usize,
}

/// The final report of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The URL played.
    pub url: String,
    /// Players requested.
    pub players: usize,
    /// Wall-clock length of the run in seconds.
    pub duration_s: f64,
    /// Most players playing at once.
    pub max_playing: usize,
    /// Players that failed.
    pub failed: usize,
    /// Total media bytes received by all players.
    pub total_bytes: u64,
    /// Mean aggregate receive rate over the run, in megabits per second.
    pub mean_aggregate_mbps: f64,
    /// Stream bitrate used for stall detection, in kilobits per second.
    pub stream_kbps: f64,
    /// Share of (player, second) samples that were stalled, 0..=1.
    pub stalled_share: f64,
    /// Per-player mean receive rate over the time it played, in kilobits per second.
    pub rate_kbps: Percentiles,
    /// Start-up time (request to first complete video frame) in milliseconds.
    pub startup_ms: Percentiles,
    /// Players that never received a video frame.
    pub never_started: usize,
    /// Per-player mean hop latency (publisher send to arrival) in milliseconds; present when
    /// the publisher announced its clock (the `publish` mode does) and players speak RTMP.
    pub latency_ms: Option<Percentiles>,
    /// Per-player longest wait between two video frames (the longest frozen picture) in
    /// milliseconds; present when players speak RTMP.
    pub longest_gap_ms: Option<Percentiles>,
    /// The longest of those waits over all players, in milliseconds.
    pub longest_gap_max_ms: Option<f64>,
    /// Every per-second tick.
    pub ticks: Vec<Tick>,
}

/// Samples every player's counters once per tick and builds the reports.
pub struct Reporter {
    started: Instant,
    stream_kbps: f64,
    window_ticks: usize,
    /// Per player: byte totals at the end of each of the last `window_ticks` ticks.
    history: Vec<std::collections::VecDeque<u64>>,
    /// Per player: first tick at which it had a first frame.
    playing_since: Vec<Option<usize>>,
    last_total: u64,
    last_tick_at: Instant,
    ticks: Vec<Tick>,
    stalled_samples: u64,
    playing_samples: u64,
}

impl Reporter {
    /// A reporter judging stalls against `stream_kbps` over a window of `window_ticks` seconds.
    pub fn new(stream_kbps: f64, window_ticks: usize) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            stream_kbps,
            window_ticks: window_ticks.max(1),
            history: Vec::new(),
            playing_since: Vec::new(),
            last_total: 0,
            last_tick_at: now,
            ticks: Vec::new(),
            stalled_samples: 0,
            playing_samples: 0,
        }
    }

    /// Samples `players` and returns the new tick.
    pub fn tick(&mut self, players: &[std::sync::Arc<PlayerCounters>]) -> &Tick {
        let now = Instant::now();
        let tick_index = self.ticks.len();
        let elapsed = now
            .duration_since(self.last_tick_at)
            .as_secs_f64()
            .max(1e-3);
        self.history.resize_with(players.len(), Default::default);
        self.playing_since.resize(players.len(), None);

        let threshold_kbps = self.stream_kbps * 0.9;
        let mut total = 0u64;
        let (mut playing, mut failed, mut stalled) = (0, 0, 0);
        let mut rates = Vec::with_capacity(players.len());
        for (index, player) in players.iter().enumerate() {
            let bytes = player.bytes();
            total += bytes;
            let history = &mut self.history[index];
            history.push_back(bytes);
            if history.len() > self.window_ticks + 1 {
                history.pop_front();
            }
            match player.state() {
                PlayerState::Failed => failed += 1,
                PlayerState::Playing => {
                    playing += 1;
                    if player.has_first_frame() && self.playing_since[index].is_none() {
                        self.playing_since[index] = Some(tick_index);
                    }
                    // Judge only players with a full window since their first frame, so the
                    // initial GOP burst and start-up do not count as either fast or stalled.
                    let judged = self.playing_since[index]
                        .is_some_and(|since| tick_index >= since + self.window_ticks);
                    if judged && history.len() > self.window_ticks {
                        let oldest = history.front().copied().unwrap_or(bytes);
                        let window_s = self.window_ticks as f64;
                        let kbps = (bytes - oldest) as f64 * 8.0 / 1000.0 / window_s;
                        rates.push(kbps);
                        self.playing_samples += 1;
                        if kbps < threshold_kbps {
                            stalled += 1;
                            self.stalled_samples += 1;
                        }
                    }
                }
                PlayerState::Connecting | PlayerState::Ended => {}
            }
        }
        let aggregate_mbps = total.saturating_sub(self.last_total) as f64 * 8.0 / 1e6 / elapsed;
        self.last_total = total;
        self.last_tick_at = now;
        self.ticks.push(Tick {
            t: now.duration_since(self.started).as_secs_f64(),
            spawned: players.len(),
            playing,
            failed,
            aggregate_mbps,
            rate_kbps: Percentiles::of(&mut rates),
            stalled,
        });
        &self.ticks[tick_index]
    }

    /// Builds the final summary.
    pub fn finish(self, url: &str, players: &[std::sync::Arc<PlayerCounters>]) -> Summary {
        let duration_s = self.started.elapsed().as_secs_f64();
        let total_bytes: u64 = players.iter().map(|p| p.bytes()).sum();
        let mut startup: Vec<f64> = players
            .iter()
            .filter_map(|p| p.startup())
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        let never_started = players.len() - startup.len();
        let mut rates: Vec<f64> = players
            .iter()
            .zip(&self.playing_since)
            .filter_map(|(player, since)| {
                let since = (*since)?;
                let seconds = self.ticks.len().saturating_sub(since).max(1) as f64;
                Some(player.bytes() as f64 * 8.0 / 1000.0 / seconds)
            })
            .collect();
        let mut latencies: Vec<f64> = players.iter().filter_map(|p| p.mean_latency_ms()).collect();
        let latency_ms = (!latencies.is_empty()).then(|| Percentiles::of(&mut latencies));
        let mut gaps: Vec<f64> = players
            .iter()
            .filter_map(|p| p.longest_gap())
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        let longest_gap_max_ms = gaps.iter().copied().reduce(f64::max);
        let longest_gap_ms = (!gaps.is_empty()).then(|| Percentiles::of(&mut gaps));
        Summary {
            url: url.to_owned(),
            latency_ms,
            longest_gap_ms,
            longest_gap_max_ms,
            players: players.len(),
            duration_s,
            max_playing: self.ticks.iter().map(|t| t.playing).max().unwrap_or(0),
            failed: players
                .iter()
                .filter(|p| p.state() == PlayerState::Failed)
                .count(),
            total_bytes,
            mean_aggregate_mbps: total_bytes as f64 * 8.0 / 1e6 / duration_s.max(1e-3),
            stream_kbps: self.stream_kbps,
            stalled_share: if self.playing_samples == 0 {
                0.0
            } else {
                self.stalled_samples as f64 / self.playing_samples as f64
            },
            rate_kbps: Percentiles::of(&mut rates),
            startup_ms: Percentiles::of(&mut startup),
            never_started,
            ticks: self.ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut values);
        assert_eq!((p.p5, p.p50, p.p95, p.p99), (5.0, 50.0, 95.0, 99.0));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn a_player_below_ninety_percent_of_the_bitrate_is_stalled() {
        let fast = Arc::new(PlayerCounters::new());
        let slow = Arc::new(PlayerCounters::new());
        for p in [&fast, &slow] {
            p.set_state(PlayerState::Playing);
            p.first_frame();
        }
        let players = vec![fast.clone(), slow.clone()];
        // 1000 kbps stream, judged over a one-tick window.
        let mut reporter = Reporter::new(1000.0, 1);
        reporter.tick(&players);
        fast.add_bytes(125_000); // 1000 kbit in one second
        slow.add_bytes(100_000); // 800 kbit: below 90 %
        let tick = reporter.tick(&players).clone();
        assert_eq!(tick.playing, 2);
        assert_eq!(tick.stalled, 1);
        let summary = reporter.finish("rtmp://x/y/z", &players);
        assert_eq!(summary.never_started, 0);
        assert!((summary.stalled_share - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_players_longest_frozen_picture_is_its_longest_wait_between_video_frames() {
        let frozen = Arc::new(PlayerCounters::new());
        let silent = Arc::new(PlayerCounters::new());
        frozen.video_frame();
        frozen.video_frame();
        std::thread::sleep(Duration::from_millis(60));
        frozen.video_frame();
        frozen.video_frame();
        let summary = Reporter::new(1000.0, 1).finish("rtmp://x/y/z", &[frozen, silent]);
        let gap = summary.longest_gap_max_ms.expect("one player saw frames");
        assert!(gap >= 60.0, "{gap}");
        let per_player = summary.longest_gap_ms.expect("percentiles");
        assert_eq!(per_player.p50, gap, "only players that saw frames count");
    }
}
