//! Load-adaptive batching: the batch delay follows the node's CPU load.
//!
//! Waking every viewer once per batch of frames instead of once per frame divides the fan-out's
//! CPU cost by the frames per batch, for up to the batch delay of added latency. A lightly loaded
//! node should not pay that latency; a loaded one should. [`AdaptiveBatch`] turns load samples
//! (the share of the node's CPU capacity it used over the last interval) into a delay: zero
//! while the node has CPU to spare, doubling while it is busier than the high mark, up to a cap,
//! and halving back once it is idler than the low mark. Between the marks the delay holds, so
//! the smaller CPU cost a longer delay brings does not at once undo it. It does no I/O: the
//! server samples `/proc` and hands the result to [`RelayHub::set_batch_delay`](super::RelayHub::set_batch_delay).

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
}

impl Default for AdaptiveBatchConfig {
    fn default() -> Self {
        AdaptiveBatchConfig {
            max_delay: Duration::from_millis(200),
            low: 0.3,
            high: 0.6,
            min_step: Duration::from_millis(5),
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
            self.delay = self
                .delay
                .saturating_mul(2)
                .max(self.config.min_step)
                .min(cap);
        } else if busy <= self.config.low {
            let half = self.delay / 2;
            self.delay = if half < self.config.min_step / 2 {
                Duration::ZERO
            } else {
                half
            };
        }
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run(controller: &mut AdaptiveBatch, samples: &[f64]) -> Vec<Duration> {
        samples.iter().map(|s| controller.observe(*s)).collect()
    }

    #[test]
    fn an_idle_or_moderately_loaded_node_batches_nothing() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::default());
        let curve = run(&mut c, &[0.0, 0.1, 0.29, 0.45, 0.59, 0.3]);
        assert!(curve.iter().all(|d| d.is_zero()), "{curve:?}");
    }

    #[test]
    fn the_delay_doubles_under_load_up_to_the_cap() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(200)));
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
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::default());
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
        let mut last = Duration::ZERO;
        for busy in [0.0, 0.2, 0.3, 0.31, 0.5, 0.6, 0.8, 1.0, 3.0] {
            let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::default());
            run(&mut c, &history);
            let delay = c.observe(busy);
            assert!(delay >= last, "{busy}: {delay:?} < {last:?}");
            last = delay;
        }
    }

    #[test]
    fn odd_samples_are_clamped() {
        let mut c = AdaptiveBatch::new(AdaptiveBatchConfig::with_max_delay(ms(20)));
        assert_eq!(c.observe(f64::NAN), Duration::ZERO);
        assert_eq!(c.observe(f64::INFINITY), ms(5));
        assert_eq!(c.observe(-1.0), Duration::from_micros(2500));
    }
}
