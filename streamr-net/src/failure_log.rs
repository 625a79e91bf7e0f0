//! Failures that repeat, logged when they start, now and then while they last, and when they
//! end. While a coordinator's database is away every worker round and every request that needs
//! it fails, and while the coordinator is away every node heartbeat does; a line for each
//! (several a second per worker, one per heartbeat) would bury the line that says what happened.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use streamr_net::failure_log::{FailureRun, Failing, RunEnded};
//!
//! let mut run = FailureRun::default();
//! let start = Instant::now();
//! assert_eq!(run.failed(start), Failing::Started);
//! assert_eq!(run.failed(start + Duration::from_secs(1)), Failing::Quiet);
//! assert_eq!(
//!     run.succeeded(start + Duration::from_secs(2)),
//!     Some(RunEnded { failures: 2, lasted: Duration::from_secs(2) })
//! );
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a failure that goes on is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// What to log after a failed round of a task that fails in runs (a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// Nothing at the usual level.
    Quiet,
    /// The first failure of a run.
    Started,
    /// The run goes on: `failures` so far, for `lasted`.
    Continuing {
        /// Failed rounds in the run so far.
        failures: u64,
        /// Since the run's first failure.
        lasted: Duration,
    },
}

/// A run of failures (more than one) that a success ended: what to log about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnded {
    /// Failed rounds in the run.
    pub failures: u64,
    /// From the run's first failure to the success.
    pub lasted: Duration,
}

/// One task's current run of failed rounds.
#[derive(Debug, Default)]
pub struct FailureRun {
    /// When the run's first failure was, and when it was last logged.
    started: Option<(Instant, Instant)>,
    failures: u64,
}

impl FailureRun {
    /// A round failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Failing {
        self.failures += 1;
        match &mut self.started {
            None => {
                self.started = Some((now, now));
                Failing::Started
            }
            Some((started, logged)) if now.saturating_duration_since(*logged) >= REPEAT_EVERY => {
                *logged = now;
                Failing::Continuing {
                    failures: self.failures,
                    lasted: now.saturating_duration_since(*started),
                }
            }
            Some(_) => Failing::Quiet,
        }
    }

    /// A round succeeded at `now`: the run it ended, if any. A run of one failure ends
    /// quietly (`None`): its one line said it all.
    pub fn succeeded(&mut self, now: Instant) -> Option<RunEnded> {
        let failures = std::mem::take(&mut self.failures);
        match self.started.take() {
            Some((started, _)) if failures > 1 => Some(RunEnded {
                failures,
                lasted: now.saturating_duration_since(started),
            }),
            _ => None,
        }
    }
}

/// A failure that many tasks share (requests failing on storage): logged at most once per
/// [`REPEAT_EVERY`].
#[derive(Debug)]
pub struct Throttle(Mutex<ThrottleState>);

#[derive(Debug)]
struct ThrottleState {
    logged: Option<Instant>,
    unlogged: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    /// A throttle that has logged nothing yet.
    pub const fn new() -> Self {
        Throttle(Mutex::new(ThrottleState {
            logged: None,
            unlogged: 0,
        }))
    }

    /// A failure at `now`: `Some(n)` when it is to be logged, `n` being the failures left
    /// unlogged since the last line; `None` when it is not.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match state.logged {
            Some(logged) if now.saturating_duration_since(logged) < REPEAT_EVERY => {
                state.unlogged += 1;
                None
            }
            _ => {
                state.logged = Some(now);
                Some(std::mem::take(&mut state.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_logged_as_it_starts_every_repeat_period_and_as_it_ends() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut run = FailureRun::default();
        assert_eq!(run.succeeded(at(0)), None);
        assert_eq!(run.failed(at(1_000)), Failing::Started);
        // One round a second: quiet until the repeat period has passed since the first line.
        for s in 2..31 {
            assert_eq!(run.failed(at(s * 1_000)), Failing::Quiet, "second {s}");
        }
        assert_eq!(
            run.failed(at(31_000)),
            Failing::Continuing {
                failures: 31,
                lasted: Duration::from_secs(30)
            }
        );
        assert_eq!(run.failed(at(32_000)), Failing::Quiet);
        assert_eq!(
            run.succeeded(at(33_500)),
            Some(RunEnded {
                failures: 32,
                lasted: Duration::from_millis(32_500)
            })
        );
        assert_eq!(run.succeeded(at(34_000)), None);
        // The next run starts afresh; a run of one failure ends quietly.
        assert_eq!(run.failed(at(35_000)), Failing::Started);
        assert_eq!(run.succeeded(at(36_000)), None);
        assert_eq!(run.failed(at(37_000)), Failing::Started);
    }

    #[test]
    fn a_shared_failure_is_logged_once_per_period_with_the_count_left_unlogged() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let throttle = Throttle::new();
        assert_eq!(throttle.admit(at(0)), Some(0));
        for ms in 1..=500 {
            assert_eq!(throttle.admit(at(ms * 10)), None);
        }
        assert_eq!(throttle.admit(at(30_000)), Some(500));
        assert_eq!(throttle.admit(at(30_001)), None);
        assert_eq!(throttle.admit(at(90_000)), Some(1));
    }
}
