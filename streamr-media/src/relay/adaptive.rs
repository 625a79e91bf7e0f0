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
//! smaller CPU cost a longer delay brings does not at once undo it. It does no I/O: the server
//! samples `/proc` and hands the result to
//! [`RelayHub::set_batch_delay`](super::RelayHub::set_batch_delay).

use std::time::Duration;

/// Settings of an [`AdaptiveBatch`] controller.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveBatchConfig {
    /// Longest batch delay the controller sets (default 200 ms).
    pub max_delay: Duration,
    /// Busy share (0 to 1 of the node's cores) at or below which the delay shrinks (default 0.3).
    pub low: f64,
    /// Busy share at or above which the delay grows (default 0.6).
    pub high: f64,
    /// First non-zero delay when growing from zero (default 5 ms).
    pub min_step: Duration,
    /// Share of `max_delay` the delay reaches at the high mark while the load is between the
    /// marks, in proportion to how far between them it is (default 0.5: 100 ms of a 200 ms cap
    /// at 60 % busy, 50 ms at 45 %); 0 holds the delay between the marks.
    pub band_share: f64,
}

impl Default for AdaptiveBatchConfig {
    fn default() -> Self {
        AdaptiveBatchConfig {
            max_delay: Duration::from_millis(200),
            low: 0.3,
            high: 0.6,
            min_step: Duration::from_millis(5),
            band_share: 0.5,
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
}

/// The controller: feed it load samples, get the batch delay to use.
#[derive(Debug, Clone)]
pub struct AdaptiveBatch {
    config: AdaptiveBatchConfig,
    delay: Duration,
}

impl AdaptiveBatch {
    /// A controller starting at zero delay.
    pub fn new(config: AdaptiveBatchConfig) -> Self {
        AdaptiveBatch {
            config,
            delay: Duration::ZERO,
        }
    }

    /// The delay now.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Takes one load sample, `busy`: the share of the node's CPU capacity (all its cores) it
    /// used since the previous sample, from 0 to 1 (values outside are clamped, NaN counts as
    /// idle). Returns the new delay.
    pub fn observe(&mut self, busy: f64) -> Duration {
        let busy = if busy.is_nan() {
            0.0
        } else {
            busy.clamp(0.0, 1.0)
        };
        let cap = self.config.max_delay;
        if busy >= self.config.high {
            // At least what the top of the band asks for, so more load never means less delay.
            self.delay = self
                .delay
                .saturating_mul(2)
                .max(self.config.min_step)
                .max(self.band_delay(self.config.high))
                .min(cap);
        } else if busy <= self.config.low {
            let half = self.delay / 2;
            self.delay = if half < self.config.min_step / 2 {
                Duration::ZERO
            } else {
                half
            };
        } else {
            self.delay = self.delay.max(self.band_delay(busy));
        }
        self.delay
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
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::default());
        let curve = run(&mut c, &[0.0, 0.1, 0.29, 0.3, 0.2]);
        assert!(curve.iter().all(|d| d.is_zero()), "{curve:?}");
    }

    #[test]
    fn between_the_marks_the_delay_follows_the_load_in_proportion() {
        // Each sample from zero: the curve busy share -> delay with a 200 ms cap.
        let curve: Vec<_> = [0.3, 0.301, 0.36, 0.45, 0.54, 0.585]
            .iter()
            .map(|busy| AdaptiveBatch::new(AdaptiveBatchConfig::default()).observe(*busy))
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
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::default());
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
            ..AdaptiveBatchConfig::default()
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
        for config in [AdaptiveBatchConfig::default(), doubling_only(ms(200))] {
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
    fn odd_samples_are_clamped() {
        let mut c = AdaptiveBatch::new(doubling_only(ms(20)));
        assert_eq!(c.observe(f64::NAN), Duration::ZERO);
        assert_eq!(c.observe(f64::INFINITY), ms(5));
        assert_eq!(c.observe(-1.0), Duration::from_micros(2500));
    }
}
