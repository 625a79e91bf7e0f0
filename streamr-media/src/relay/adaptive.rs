//! Load-adaptive batching: the batch delay follows the node's CPU load.
//!
//! Waking every viewer once per batch of frames instead of once per frame divides the fan-out's
//! CPU cost by the frames per batch, for up to the batch delay of added latency. A lightly loaded
//! node should not pay that latency; a loaded one should. [`AdaptiveBatch`] turns load samples
//! (the share of the node's CPU capacity it used over the last interval) into a delay: zero
//! while the node has CPU to spare (at or below the low mark), rising in proportion to the load
//! between the low and the high mark (to [`AdaptiveBatchConfig::band_share`] of the cap at the
//! high mark), doubling while the node is busier than the high mark, up to the cap, and halving
//! back once it is idler than the low mark. Between the marks the delay never shrinks, so the
//! smaller CPU cost a longer delay brings does not at once undo it.
//!
//! A second term batches by write rate: each viewer costs about one socket write per wake-up,
//! and a write's fixed cost (system call, TCP segment, on loopback the receiver's processing)
//! outweighs its bytes at live bitrates, so a node waking every viewer per video frame pays
//! more per viewer than one merging writes (SRS merges 350 ms by default) even while its CPU is
//! mostly idle. With [`AdaptiveBatchConfig::write_budget_per_core`] set, once the viewers per
//! core would get more writes a second than that budget, the delay spaces each viewer's writes
//! so they stay within it; below the budget this term adds nothing. It trades hop latency for
//! CPU from a viewer count on, whatever the load: the larger of both terms applies. The term is
//! applied per stream ([`AdaptiveBatchConfig::write_rate_delays`]): the node's budget is shared
//! out max-min fairly between the streams' write rates, so the streams with the most viewers
//! batch first and a small stream on a busy node keeps a write per frame.
//!
//! It does no I/O: the server samples `/proc` and hands the CPU term to
//! [`RelayHub::set_batch_delay`](super::RelayHub::set_batch_delay), and the hub applies the
//! write-rate term to its streams' viewer counts
//! ([`RelayHub::apply_write_rate`](super::RelayHub::apply_write_rate)).

use std::time::Duration;

/// Settings of an [`AdaptiveBatch`] controller.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveBatchConfig {
    /// Longest batch delay the controller sets (default 280 ms).
    pub max_delay: Duration,
    /// Busy share (0 to 1 of the node's cores) at or below which the delay shrinks (default 0.3).
    pub low: f64,
    /// Busy share at or above which the delay grows (default 0.6).
    pub high: f64,
    /// First non-zero delay when growing from zero (default 5 ms).
    pub min_step: Duration,
    /// Share of `max_delay` the delay reaches at the high mark while the load is between the
    /// marks, in proportion to how far between them it is (default 0.5: 140 ms of a 280 ms cap
    /// at 60 % busy, 70 ms at 45 %); 0 holds the delay between the marks.
    pub band_share: f64,
    /// Viewer writes per second per core the write-rate term allows (default 0: off). Above
    /// it, the delay is the interval at which the viewers per core stay within it: with 2000,
    /// 500 viewers on 2 cores get a write every 125 ms.
    pub write_budget_per_core: f64,
    /// Shortest delay the write-rate term sets (default 40 ms): a shorter one merges no video
    /// frames at common frame rates, so it would add latency and save nothing.
    pub min_merge_delay: Duration,
    /// Bytes a viewer's batch needs at most for the write-rate term to pay (default 96 KiB;
    /// 0: no such limit): the term spaces a stream's writes no further apart than the time
    /// the stream takes to bring this many bytes ([`AdaptiveBatchConfig::byte_rate_cap`]).
    /// A write's fixed cost is what batching saves, and it stays the larger part of a large
    /// write's cost too (on a 2-core Xeon, 21 µs of kernel time for an 8 KB write to a loopback
    /// player, 28 µs for 83 KB); but every viewer woken at once takes its large write in turn,
    /// so a longer hold of a high-bitrate stream adds to the hop twice, as wait and as burst.
    /// This keeps a high-bitrate stream's hop short at some CPU: a 232 kbit/s stream is held
    /// up to `max_delay` while a 3 Mbit/s one is held about 260 ms (its hop p50 142-160 ms
    /// at 1000-2000 viewers on 2 cores, SRS's default 177-198 ms).
    pub max_batch_bytes: u64,
}

impl Default for AdaptiveBatchConfig {
    fn default() -> Self {
        AdaptiveBatchConfig {
            max_delay: Duration::from_millis(280),
            low: 0.3,
            high: 0.6,
            min_step: Duration::from_millis(5),
            band_share: 0.5,
            write_budget_per_core: 0.0,
            min_merge_delay: Duration::from_millis(40),
            max_batch_bytes: 96 * 1024,
        }
    }
}

impl AdaptiveBatchConfig {
    /// The default marks with `max_delay` as the cap.
    pub fn with_max_delay(max_delay: Duration) -> Self {
        AdaptiveBatchConfig {
            max_delay,
            ..AdaptiveBatchConfig::default()
        }
    }

    /// Sets the write-rate term's budget: viewer writes per second per core (0: off).
    pub fn with_write_budget(mut self, writes_per_second_per_core: f64) -> Self {
        self.write_budget_per_core = writes_per_second_per_core;
        self
    }

    /// Sets the bytes a viewer's batch needs at most
    /// ([`AdaptiveBatchConfig::max_batch_bytes`]; 0: no limit).
    pub fn with_max_batch_bytes(mut self, bytes: u64) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// The longest write-rate delay for a stream bringing `bytes_per_second`: the time it
    /// takes to bring [`AdaptiveBatchConfig::max_batch_bytes`], between
    /// [`AdaptiveBatchConfig::min_merge_delay`] and [`AdaptiveBatchConfig::max_delay`]; the cap
    /// itself when the limit is off or the rate is unknown (zero, negative or not finite).
    pub fn byte_rate_cap(&self, bytes_per_second: f64) -> Duration {
        // NaN compares false too: unknown.
        if self.max_batch_bytes == 0 || !(bytes_per_second > 0.0 && bytes_per_second.is_finite()) {
            return self.max_delay;
        }
        let fill = self.max_batch_bytes as f64 / bytes_per_second;
        if fill >= self.max_delay.as_secs_f64() {
            return self.max_delay;
        }
        Duration::from_secs_f64(fill)
            .max(self.min_merge_delay)
            .min(self.max_delay)
    }

    /// The delay the write-rate term asks for with `viewers_per_core` viewers per core.
    pub fn write_rate_delay(&self, viewers_per_core: f64) -> Duration {
        let budget = self.write_budget_per_core;
        // NaN compares false too: off.
        let positive = |x: f64| x > 0.0;
        if !positive(budget) || !positive(viewers_per_core) {
            return Duration::ZERO;
        }
        let interval = viewers_per_core / budget;
        if !interval.is_finite() || interval >= self.max_delay.as_secs_f64() {
            return self.max_delay;
        }
        let interval = Duration::from_secs_f64(interval);
        if interval < self.min_merge_delay {
            Duration::ZERO
        } else {
            interval
        }
    }
}

impl AdaptiveBatchConfig {
    /// The write-rate term per stream: the delay for each stream given the viewers of every
    /// stream (`viewers[i]` of stream `i`) on a node of `cores` cores.
    ///
    /// The node's budget (`write_budget_per_core` × `cores` writes a second) is shared out
    /// max-min fairly between the streams' write rates: a stream written unbatched asks for a
    /// write per viewer every [`AdaptiveBatchConfig::min_merge_delay`] (about one per video
    /// frame); the streams asking for less than an equal share of what is left get what they
    /// ask for and no delay, and the others share the rest equally, each spacing its viewers'
    /// writes to stay within its share (its viewers ÷ the share, capped by
    /// [`AdaptiveBatchConfig::max_delay`]). So a small stream on a busy node is not delayed,
    /// and with one stream this is [`AdaptiveBatchConfig::write_rate_delay`] of its viewers
    /// per core. A capped stream may write more than its share.
    pub fn write_rate_delays(&self, viewers: &[usize], cores: f64) -> Vec<Duration> {
        let mut delays = vec![Duration::ZERO; viewers.len()];
        let budget = self.write_budget_per_core * cores;
        // NaN compares false too: off.
        if !(budget > 0.0 && budget.is_finite()) {
            return delays;
        }
        // Writes a second per viewer while unbatched; a zero floor counts as one write a
        // millisecond.
        let unbatched = 1.0 / self.min_merge_delay.as_secs_f64().max(1e-3);
        let mut order: Vec<usize> = (0..viewers.len()).collect();
        order.sort_by_key(|&i| viewers[i]);
        // The write rate each batched stream may use: none is batched while every stream's
        // unbatched rate fits.
        let mut level = f64::INFINITY;
        let mut left = budget;
        for (taken, &i) in order.iter().enumerate() {
            let demand = viewers[i] as f64 * unbatched;
            let share = left / (order.len() - taken) as f64;
            if demand <= share {
                left -= demand;
            } else {
                level = share;
                break;
            }
        }
        if !level.is_finite() {
            return delays;
        }
        for (delay, &count) in delays.iter_mut().zip(viewers) {
            if count as f64 * unbatched > level {
                let interval = count as f64 / level;
                *delay = if interval.is_finite() && interval < self.max_delay.as_secs_f64() {
                    Duration::from_secs_f64(interval)
                } else {
                    self.max_delay
                };
            }
        }
        delays
    }
}

/// The controller: feed it load samples, get the batch delay to use.
#[derive(Debug, Clone)]
pub struct AdaptiveBatch {
    config: AdaptiveBatchConfig,
    /// The CPU-load term's delay.
    cpu_delay: Duration,
    /// The delay in force: the larger of both terms.
    delay: Duration,
}

impl AdaptiveBatch {
    /// A controller starting at zero delay.
    pub fn new(config: AdaptiveBatchConfig) -> Self {
        AdaptiveBatch {
            config,
            cpu_delay: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }

    /// The delay now.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Takes one load sample, `busy`: the share of the node's CPU capacity (all its cores) it
    /// used since the previous sample, from 0 to 1 (values outside are clamped, NaN counts as
    /// idle). Returns the new delay (the CPU-load term alone).
    pub fn observe(&mut self, busy: f64) -> Duration {
        self.observe_load(busy, 0.0)
    }

    /// Takes one load sample as [`AdaptiveBatch::observe`] does, with the node's viewers per
    /// core now for a node-wide write-rate term, and returns the new delay: the larger of both
    /// terms. (The node applies the write-rate term per stream instead:
    /// [`AdaptiveBatchConfig::write_rate_delays`].)
    pub fn observe_load(&mut self, busy: f64, viewers_per_core: f64) -> Duration {
        let cpu = self.observe_cpu(busy);
        self.delay = cpu.max(self.config.write_rate_delay(viewers_per_core));
        self.delay
    }

    fn observe_cpu(&mut self, busy: f64) -> Duration {
        let busy = if busy.is_nan() {
            0.0
        } else {
            busy.clamp(0.0, 1.0)
        };
        let cap = self.config.max_delay;
        if busy >= self.config.high {
            // At least what the top of the band asks for, so more load never means less delay.
            self.cpu_delay = self
                .cpu_delay
                .saturating_mul(2)
                .max(self.config.min_step)
                .max(self.band_delay(self.config.high))
                .min(cap);
        } else if busy <= self.config.low {
            let half = self.cpu_delay / 2;
            self.cpu_delay = if half < self.config.min_step / 2 {
                Duration::ZERO
            } else {
                half
            };
        } else {
            self.cpu_delay = self.cpu_delay.max(self.band_delay(busy));
        }
        self.cpu_delay
    }

    /// The delay the load `busy` (between the marks) asks for: in proportion to how
    /// far between the marks it is, [`AdaptiveBatchConfig::band_share`] of the cap at the high
    /// mark; never below [`AdaptiveBatchConfig::min_step`] once above zero.
    fn band_delay(&self, busy: f64) -> Duration {
        let config = &self.config;
        let width = config.high - config.low;
        if width <= 0.0 || config.band_share <= 0.0 {
            return Duration::ZERO;
        }
        let share = (busy - config.low) / width * config.band_share;
        if !share.is_finite() {
            return Duration::ZERO;
        }
        let share = share.clamp(0.0, 1.0);
        let delay = config.max_delay.mul_f64(share);
        if delay.is_zero() {
            delay
        } else {
            delay.max(config.min_step).min(config.max_delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The curve without the proportional band: hold between the marks, double above them.
    fn doubling_only(max_delay: Duration) -> AdaptiveBatchConfig {
        AdaptiveBatchConfig {
            band_share: 0.0,
            ..AdaptiveBatchConfig::with_max_delay(max_delay)
        }
    }

    fn run(controller: &mut AdaptiveBatch, samples: &[f64]) -> Vec<Duration> {
        samples.iter().map(|s| controller.observe(*s)).collect()
    }

    #[test]
    fn a_node_with_cpu_to_spare_batches_nothing() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(200)));
        let curve = run(&mut c, &[0.0, 0.1, 0.29, 0.3, 0.2]);
        assert!(curve.iter().all(|d| d.is_zero()), "{curve:?}");
    }

    #[test]
    fn between_the_marks_the_delay_follows_the_load_in_proportion() {
        // Each sample from zero: the curve busy share -> delay with a 200 ms cap.
        let curve: Vec<_> = [0.3, 0.301, 0.36, 0.45, 0.54, 0.585]
            .iter()
            .map(|busy| {
                AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(200))).observe(*busy)
            })
            .collect();
        assert_eq!(
            curve,
            [
                Duration::ZERO,
                ms(5), // the smallest step, not a few hundred microseconds
                ms(20),
                ms(50),
                ms(80),
                ms(95)
            ]
        );
    }

    #[test]
    fn between_the_marks_the_delay_grows_but_never_shrinks() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(200)));
        // Load rising through the band raises the delay; the lower load batching brings keeps it.
        assert_eq!(
            run(&mut c, &[0.36, 0.45, 0.4, 0.31]),
            [ms(20), ms(50), ms(50), ms(50)]
        );
        // Below the low mark it halves.
        assert_eq!(c.observe(0.2), ms(25));
    }

    #[test]
    fn a_zero_band_share_holds_the_delay_between_the_marks() {
        let config = AdaptiveBatchConfig {
            band_share: 0.0,
            ..AdaptiveBatchConfig::with_max_delay(ms(200))
        };
        let mut c = AdaptiveBatch::new(config);
        assert_eq!(run(&mut c, &[0.45, 0.59]), [Duration::ZERO; 2]);
    }

    #[test]
    fn a_small_cap_bounds_the_band_too() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(8)));
        // Half of 8 ms near the high mark is under the smallest step: the step it is.
        assert_eq!(c.observe(0.59), ms(5));
        assert_eq!(c.observe(0.9), ms(8));
        // A cap under the smallest step bounds it.
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(3)));
        assert_eq!(c.observe(0.4), ms(3));
        assert_eq!(c.observe(0.9), ms(3));
    }

    #[test]
    fn the_delay_doubles_under_load_up_to_the_cap() {
        let mut c = AdaptiveBatch::new(doubling_only(ms(200)));
        let curve = run(&mut c, &[0.7; 8]);
        assert_eq!(
            curve,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(200),
                ms(200)
            ]
        );
    }

    #[test]
    fn the_delay_holds_between_the_marks_and_shrinks_to_zero_when_idle() {
        let mut c = AdaptiveBatch::new(doubling_only(ms(200)));
        run(&mut c, &[0.9; 4]);
        assert_eq!(c.delay(), ms(40));
        // Batching brought the load into the band: keep the delay.
        assert_eq!(run(&mut c, &[0.5, 0.4, 0.55]), [ms(40); 3]);
        // Load went away: back to zero in a few samples.
        assert_eq!(
            run(&mut c, &[0.1; 5]),
            [
                ms(20),
                ms(10),
                ms(5),
                Duration::from_micros(2500),
                Duration::ZERO
            ]
        );
    }

    #[test]
    fn more_load_never_gives_a_shorter_delay() {
        // From the same history, a busier sample never yields a shorter delay.
        let history = [0.7, 0.7, 0.5, 0.2];
        for config in [
            AdaptiveBatchConfig::with_max_delay(ms(200)),
            doubling_only(ms(200)),
        ] {
            let mut last = Duration::ZERO;
            for busy in [0.0, 0.2, 0.3, 0.31, 0.5, 0.59, 0.6, 0.8, 1.0, 3.0] {
                let mut c = AdaptiveBatch::new(config);
                run(&mut c, &history);
                let delay = c.observe(busy);
                assert!(delay >= last, "{busy}: {delay:?} < {last:?}");
                last = delay;
            }
        }
    }

    proptest::proptest! {
        /// From any history, a busier sample never yields a shorter delay; the delay never
        /// passes the cap; and a node at or below the low mark long enough batches nothing.
        #[test]
        fn the_curve_is_monotonic_bounded_and_settles_when_idle(
            history in proptest::collection::vec(0.0f64..1.5, 0..24),
            a in 0.0f64..1.5,
            b in 0.0f64..1.5,
            cap_ms in 1u64..1000,
        ) {
            let config = AdaptiveBatchConfig::with_max_delay(ms(cap_ms));
            let mut c = AdaptiveBatch::new(config);
            run(&mut c, &history);
            let (low, high) = (a.min(b), a.max(b));
            let at_low = c.clone().observe(low);
            let at_high = c.clone().observe(high);
            proptest::prop_assert!(at_low <= at_high, "{low}: {at_low:?} > {high}: {at_high:?}");
            proptest::prop_assert!(at_high <= ms(cap_ms));
            let settled = run(&mut c, &[config.low; 16]);
            proptest::prop_assert_eq!(settled.last().copied(), Some(Duration::ZERO));
        }
    }

    #[test]
    fn the_write_rate_term_spaces_writes_once_viewers_exceed_the_budget() {
        let config = AdaptiveBatchConfig::with_max_delay(ms(200)).with_write_budget(2000.0);
        // Viewers per core -> delay: nothing while a write per viewer every 40 ms fits the
        // budget (80 viewers per core), then the interval that keeps them within it, capped.
        let curve: Vec<_> = [0.0, 50.0, 79.0, 80.0, 250.0, 500.0, 1000.0, 1e9]
            .iter()
            .map(|v| config.write_rate_delay(*v))
            .collect();
        assert_eq!(
            curve,
            [
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                ms(40),
                ms(125),
                ms(200),
                ms(200),
                ms(200)
            ]
        );
        // Off by default, and for odd inputs.
        assert_eq!(
            AdaptiveBatchConfig::with_max_delay(ms(200)).write_rate_delay(1e6),
            Duration::ZERO
        );
        assert_eq!(config.write_rate_delay(f64::NAN), Duration::ZERO);
        assert_eq!(config.write_rate_delay(-5.0), Duration::ZERO);
    }

    #[test]
    fn the_larger_term_applies_and_the_cpu_term_keeps_its_own_course() {
        let config = AdaptiveBatchConfig::with_max_delay(ms(200)).with_write_budget(2000.0);
        let mut c = AdaptiveBatch::new(config);
        // An idle node with 250 viewers per core: the write-rate term's 125 ms.
        assert_eq!(c.observe_load(0.1, 250.0), ms(125));
        // A busy one: the CPU term passes it once it grew enough.
        assert_eq!(c.observe_load(0.9, 250.0), ms(125));
        assert_eq!(c.observe_load(0.9, 250.0), ms(200));
        // Viewers leave and the load drops: the CPU term halves from where it was.
        assert_eq!(c.observe_load(0.1, 0.0), ms(100));
        assert_eq!(c.observe_load(0.1, 0.0), ms(50));
    }

    proptest::proptest! {
        /// More viewers never give a shorter delay, and the cap holds.
        #[test]
        fn the_write_rate_term_is_monotonic_and_capped(
            a in 0.0f64..10_000.0,
            b in 0.0f64..10_000.0,
            budget in 0.0f64..20_000.0,
            cap_ms in 1u64..1000,
        ) {
            let config = AdaptiveBatchConfig::with_max_delay(ms(cap_ms)).with_write_budget(budget);
            let (few, many) = (a.min(b), a.max(b));
            proptest::prop_assert!(config.write_rate_delay(few) <= config.write_rate_delay(many));
            proptest::prop_assert!(config.write_rate_delay(many) <= ms(cap_ms));
        }
    }

    #[test]
    fn a_small_stream_on_a_busy_node_is_not_delayed() {
        // 2 cores at 2000 writes a second each: 4000 a second for the node.
        let config = AdaptiveBatchConfig::with_max_delay(ms(200)).with_write_budget(2000.0);
        // One big stream: the node-wide term of its viewers per core.
        assert_eq!(config.write_rate_delays(&[500], 2.0), [ms(125)]);
        assert_eq!(
            config.write_rate_delays(&[500], 2.0)[0],
            config.write_rate_delay(250.0)
        );
        // Beside it, a 10-viewer stream (250 writes a second unbatched) keeps writing per
        // frame; the big one gets the rest of the budget: 3750 a second, a write each 133 ms.
        assert_eq!(
            config.write_rate_delays(&[500, 10], 2.0),
            [Duration::from_secs_f64(500.0 / 3750.0), Duration::ZERO]
        );
        // Two equal streams share equally: as one stream of both.
        assert_eq!(
            config.write_rate_delays(&[250, 250], 2.0),
            [ms(125), ms(125)]
        );
        // Streams whose unbatched writes all fit the budget: nothing is delayed.
        assert_eq!(
            config.write_rate_delays(&[79, 60, 0], 2.0),
            [Duration::ZERO; 3]
        );
        // Past the cap, the cap.
        assert_eq!(
            config.write_rate_delays(&[5000, 1], 2.0),
            [ms(200), Duration::ZERO]
        );
        // Off, and odd inputs.
        assert_eq!(
            AdaptiveBatchConfig::with_max_delay(ms(200)).write_rate_delays(&[5000], 2.0),
            [Duration::ZERO]
        );
        assert_eq!(
            config.write_rate_delays(&[5000], f64::NAN),
            [Duration::ZERO]
        );
        assert_eq!(config.write_rate_delays(&[5000], 0.0), [Duration::ZERO]);
        assert!(config.write_rate_delays(&[], 2.0).is_empty());
    }

    /// Writes a second the streams get with `delays` (a write per viewer every delay, at most
    /// one per `floor`).
    fn write_rate(viewers: &[usize], delays: &[Duration], floor: Duration) -> f64 {
        viewers
            .iter()
            .zip(delays)
            .map(|(v, d)| *v as f64 / d.max(&floor).as_secs_f64())
            .sum()
    }

    proptest::proptest! {
        /// Per stream: the node stays within its budget unless a stream is capped; a stream
        /// with more viewers never gets a shorter delay than one with fewer; a delayed stream
        /// is delayed at least the floor; adding viewers to one stream never shortens its delay.
        #[test]
        fn the_per_stream_term_keeps_the_budget_and_delays_the_biggest_first(
            viewers in proptest::collection::vec(0usize..3000, 0..12),
            budget in 1.0f64..20_000.0,
            cores in 1u32..16,
            extra in 1usize..1000,
            cap_ms in 40u64..1000,
        ) {
            let config = AdaptiveBatchConfig::with_max_delay(ms(cap_ms)).with_write_budget(budget);
            let cores = f64::from(cores);
            let delays = config.write_rate_delays(&viewers, cores);
            proptest::prop_assert_eq!(delays.len(), viewers.len());
            let floor = config.min_merge_delay;
            let capped = delays.iter().any(|d| *d >= ms(cap_ms));
            if !capped {
                let rate = write_rate(&viewers, &delays, floor);
                proptest::prop_assert!(rate <= budget * cores * (1.0 + 1e-6) + 1e-6,
                    "{rate} writes a second over {}", budget * cores);
            }
            for (i, a) in viewers.iter().enumerate() {
                proptest::prop_assert!(delays[i].is_zero() || delays[i] >= floor.min(ms(cap_ms)));
                proptest::prop_assert!(delays[i] <= ms(cap_ms));
                for (j, b) in viewers.iter().enumerate() {
                    if a < b {
                        proptest::prop_assert!(delays[i] <= delays[j]);
                    }
                }
            }
            if !viewers.is_empty() {
                let mut more = viewers.clone();
                more[0] += extra;
                proptest::prop_assert!(config.write_rate_delays(&more, cores)[0] >= delays[0]);
            }
        }
    }

    #[test]
    fn the_byte_rate_caps_the_write_rate_delay_at_the_time_its_batch_bytes_take() {
        let config = AdaptiveBatchConfig::default();
        assert_eq!(config.max_delay, ms(280));
        // 232 kbit/s: the default 96 KiB take seconds, so the cap applies.
        assert_eq!(config.byte_rate_cap(232_000.0 / 8.0), ms(280));
        // 3 Mbit/s: 96 KiB take about 262 ms; 80 KiB about 218 ms.
        let three = config.byte_rate_cap(3_000_000.0 / 8.0);
        assert!(three > ms(262) && three < ms(263), "{three:?}");
        let smaller = config
            .with_max_batch_bytes(80 * 1024)
            .byte_rate_cap(3_000_000.0 / 8.0);
        assert!(smaller > ms(218) && smaller < ms(219), "{smaller:?}");
        // Very high rates stop at the shortest merging delay.
        assert_eq!(config.byte_rate_cap(1e12), ms(40));
        // An unknown rate, or the limit off: the cap.
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(config.byte_rate_cap(rate), ms(280));
        }
        assert_eq!(config.with_max_batch_bytes(0).byte_rate_cap(1e9), ms(280));
    }

    proptest::proptest! {
        #[test]
        fn a_faster_stream_is_never_held_longer(a in 0.0f64..1e8, b in 0.0f64..1e8, bytes in 0u64..1_000_000) {
            let config = AdaptiveBatchConfig::default().with_max_batch_bytes(bytes);
            let (slow, fast) = if a <= b { (a, b) } else { (b, a) };
            let (slow_cap, fast_cap) = (config.byte_rate_cap(slow), config.byte_rate_cap(fast));
            if slow > 0.0 {
                proptest::prop_assert!(fast_cap <= slow_cap);
            }
            proptest::prop_assert!(fast_cap <= config.max_delay);
        }
    }

    #[test]
    fn odd_samples_are_clamped() {
        let mut c = AdaptiveBatch::new(doubling_only(ms(20)));
        assert_eq!(c.observe(f64::NAN), Duration::ZERO);
        assert_eq!(c.observe(f64::INFINITY), ms(5));
        assert_eq!(c.observe(-1.0), Duration::from_micros(2500));
    }
}
