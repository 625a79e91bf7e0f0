//! Wall-clock time in Unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The system's wall clock as a [`streamr_core::Clock`]: what a running coordinator reads
/// wherever a time must be taken at the moment something happens (a liveness note reaching
/// storage), not when a caller asked for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl streamr_core::Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(now_ms()).unwrap_or(0)
    }
}

/// `clock`'s time as storage keeps times: signed Unix ms.
pub(crate) fn clock_ms(clock: &dyn streamr_core::Clock) -> i64 {
    i64::try_from(clock.now_ms()).unwrap_or(i64::MAX)
}
