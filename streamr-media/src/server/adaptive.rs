//! Drives load-adaptive batching: samples the process's CPU time and sets the hub's batch delay.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::relay::{AdaptiveBatch, AdaptiveBatchConfig, RelayHub};

/// How often the load is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Starts adjusting `hub`'s batch delay ([`RelayHub::set_batch_delay`]) to the process's CPU
/// load every 500 ms with an [`AdaptiveBatch`] controller, until `shutdown` is cancelled. The
/// load is the CPU time the process's threads wanted over the interval, as a share of the cores
/// it may run on: the time they ran plus the time they waited for a core
/// (`/proc/self/task/*/schedstat`), so a node starved by other processes on a shared machine
/// counts as loaded too; without schedstat, the time they ran (`/proc/self/stat`). Where neither
/// can be read (not Linux), the delay stays as it is. The write-rate term
/// ([`AdaptiveBatchConfig::write_budget_per_core`]) is applied per stream from each stream's
/// viewers ([`RelayHub::apply_write_rate`]): a stream with many viewers batches while a small
/// one beside it does not.
pub fn spawn_adaptive_batching(
    hub: RelayHub,
    config: AdaptiveBatchConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let Some(mut last_cpu) = process_cpu_seconds() else {
            info!("no /proc/self/stat: batch delay stays fixed");
            return;
        };
        let mut controller = AdaptiveBatch::new(config);
        let mut last_cpu_delay = controller.delay();
        let mut last_write_delay = hub.apply_write_rate(&config, cores);
        hub.set_batch_delay(last_cpu_delay);
        let mut last_at = Instant::now();
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(cpu) = process_cpu_seconds() else {
                return;
            };
            let now = Instant::now();
            let wall = now.duration_since(last_at).as_secs_f64();
            if wall <= 0.0 {
                continue;
            }
            let busy = (cpu - last_cpu) / wall / cores;
            (last_cpu, last_at) = (cpu, now);
            let cpu_delay = controller.observe(busy);
            if cpu_delay != last_cpu_delay {
                hub.set_batch_delay(cpu_delay);
            }
            let write_delay = hub.apply_write_rate(&config, cores);
            // The longest delay any stream has now.
            let delay = cpu_delay.max(write_delay);
            if (cpu_delay, write_delay) != (last_cpu_delay, last_write_delay) {
                debug!(
                    busy,
                    ?cpu_delay,
                    ?write_delay,
                    ?delay,
                    "batch delay follows the load"
                );
            }
            (last_cpu_delay, last_write_delay) = (cpu_delay, write_delay);
        }
    })
}

/// The CPU time the process's threads ran and waited for a core, in seconds, from
/// `/proc/self/task/*/schedstat`; or its user + system time from `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    if let Some(demand) = schedstat_seconds() {
        return Some(demand);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

/// Run time plus run-queue wait of every thread of the process, in seconds. Threads that ended
/// since the last sample drop out of the sum; the controller clamps the odd negative sample.
fn schedstat_seconds() -> Option<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos = nanos.saturating_add(parse_schedstat(&text)?);
    }
    Some(nanos as f64 / 1e9)
}

/// Run time plus run-queue wait (the first two fields, nanoseconds) of a schedstat line.
fn parse_schedstat(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let run: u64 = fields.next()?.parse().ok()?;
    let wait: u64 = fields.next()?.parse().ok()?;
    Some(run.saturating_add(wait))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_an_odd_command_name() {
        let stat = "4242 (streamr node) R 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn schedstat_gives_run_plus_wait() {
        assert_eq!(parse_schedstat("1500 500 7\n"), Some(2000));
        assert_eq!(parse_schedstat("x"), None);
    }
}
