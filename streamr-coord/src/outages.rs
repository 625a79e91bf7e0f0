//! Coordinator outages, and the receipts they held back.
//!
//! A node keeps the receipts a heartbeat could not deliver and hands them in with the next one
//! that gets through; a viewer's client retries too. So when the coordinator (every replica) is
//! down across an epoch's receipt deadline
//! ([`CoordConfig::receipt_deadline_of`]), the receipts for that epoch are still there — but
//! without this module the epoch would be settled, and they refused as late, the moment the
//! coordinator is back, before anyone could hand them in.
//!
//! Every running process notes in storage that it is up (a worker every
//! [`CoordConfig::liveness_interval`]; the settler before a round, and intake before it judges
//! a late receipt, when this process has not noted for a while): see
//! [`Storage::note_alive`]. A stretch longer than [`CoordConfig::outage_gap`] without a note is
//! recorded as an outage by the first note after it. An epoch whose receipt deadline came after
//! an outage began takes its receipts, and waits to be settled, until
//! [`CoordConfig::outage_grace`] after the outage ended. Intake and settlement read the same
//! record, and the settler judges an epoch by the outages read at a note and against that
//! note's time (an outage recorded later began after it), so no receipt is accepted for an
//! epoch already settled.

use std::sync::Arc;
use std::time::Duration;

use streamr_core::Clock;

use crate::clock::clock_ms;
use crate::metrics::Metrics;
use crate::storage::{OutageRecord, Storage, StorageResult};
use crate::CoordConfig;

/// How far back recorded outages are read: an outage that ended longer ago than this extends
/// no deadline of an epoch still unsettled.
const OUTAGE_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The outages on record, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outages(Vec<OutageRecord>);

impl Outages {
    /// Outages from records in any order.
    pub(crate) fn new(mut records: Vec<OutageRecord>) -> Self {
        records.sort_by_key(|o| (o.started_ms, o.ended_ms));
        Outages(records)
    }

    /// The last moment (Unix ms) a receipt signed in `epoch` is accepted, and before which the
    /// epoch is not settled: its fixed deadline, or the outage grace after the end of an
    /// outage that began before that (an outage may begin before the deadline another one
    /// pushed out).
    pub(crate) fn receipt_deadline(&self, config: &CoordConfig, epoch: i64) -> i64 {
        let mut deadline = config.receipt_deadline_of(epoch);
        if config.outage_grace.is_zero() {
            return deadline;
        }
        let grace = millis(config.outage_grace);
        for outage in &self.0 {
            if outage.started_ms <= deadline {
                deadline = deadline.max(outage.ended_ms.saturating_add(grace));
            }
        }
        deadline
    }
}

/// What this process last read of the outage record, and when it noted itself up.
#[derive(Debug, Clone)]
struct Noted {
    at_ms: i64,
    outages: Arc<Outages>,
}

/// This process's view of the outage record (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    noted: tokio::sync::Mutex<Option<Noted>>,
}

impl Liveness {
    /// The outage record as of this process's last note, and that note's time: noted now
    /// (rereading the record) unless the last note is at most `max_age` old by `clock`.
    /// Whatever it answers holds as of the note's time (an outage recorded later began after
    /// it), so a caller judges deadlines against that time, not the time it asked. A note is
    /// timed when it reached storage ([`Storage::note_alive`] reads `clock` then), so one that
    /// waited through an outage (for a connection, or behind this process's note in progress)
    /// is not taken for a sign of life from before it. With the outage grace off, notes
    /// nothing and answers no outages. An outage this note records is counted in `metrics`.
    pub(crate) async fn outages(
        &self,
        config: &CoordConfig,
        storage: &dyn Storage,
        clock: &dyn Clock,
        metrics: &Metrics,
        max_age: Duration,
    ) -> StorageResult<(i64, Arc<Outages>)> {
        if config.outage_grace.is_zero() {
            return Ok((clock_ms(clock), Arc::default()));
        }
        let gap = millis(config.outage_gap());
        // Held across the note: concurrent requests after an outage wait for one note.
        let mut noted = self.noted.lock().await;
        let now_ms = clock_ms(clock);
        if let Some(last) = noted.as_ref() {
            if now_ms.saturating_sub(last.at_ms) <= millis(max_age) {
                return Ok((last.at_ms, last.outages.clone()));
            }
        }
        let since = now_ms.saturating_sub(millis(OUTAGE_HORIZON));
        let note = storage.note_alive(clock, gap, since).await?;
        if let Some(outage) = note.recorded {
            Metrics::inc(&metrics.coordinator_outages_total);
            tracing::warn!(
                from_ms = outage.started_ms,
                to_ms = outage.ended_ms,
                down_for_s = outage.ended_ms.saturating_sub(outage.started_ms) / 1000,
                grace_s = config.outage_grace.as_secs(),
                "the coordinator was down (no process of it reached the database): epochs \
                 whose receipts were due meanwhile take them, and wait to be settled, until the \
                 outage grace has passed"
            );
        }
        let outages = Arc::new(Outages::new(note.outages));
        *noted = Some(Noted {
            at_ms: note.at_ms,
            outages: outages.clone(),
        });
        Ok((note.at_ms, outages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CoordConfig {
        CoordConfig {
            epoch_length: Duration::from_secs(100),
            settlement_grace: Duration::from_secs(5),
            outage_grace: Duration::from_secs(60),
            ..CoordConfig::default()
        }
    }

    fn outage(started_s: i64, ended_s: i64) -> OutageRecord {
        OutageRecord {
            started_ms: started_s * 1000,
            ended_ms: ended_s * 1000,
        }
    }

    #[test]
    fn without_outages_the_deadline_is_the_epochs_end_plus_the_settlement_grace() {
        let config = config();
        assert_eq!(Outages::default().receipt_deadline(&config, 2), 305_000);
    }

    #[test]
    fn an_outage_begun_before_the_deadline_moves_it_to_the_grace_after_the_outage() {
        let config = config();
        let outages = Outages::new(vec![outage(290, 1_000)]);
        assert_eq!(outages.receipt_deadline(&config, 2), 1_060_000);
        // Begun exactly at the deadline: receipts held then were still due.
        let at_deadline = Outages::new(vec![outage(305, 400)]);
        assert_eq!(at_deadline.receipt_deadline(&config, 2), 460_000);
        // An epoch that ended after the outage, with its deadline after the grace, keeps it.
        assert_eq!(outages.receipt_deadline(&config, 20), 2_105_000);
        // The epoch that ended while the grace ran: the later of the two.
        assert_eq!(outages.receipt_deadline(&config, 9), 1_060_000);
    }

    #[test]
    fn an_outage_that_ended_before_the_epochs_end_or_began_after_its_deadline_changes_nothing() {
        let config = config();
        let earlier = Outages::new(vec![outage(100, 150)]);
        assert_eq!(earlier.receipt_deadline(&config, 2), 305_000);
        let later = Outages::new(vec![outage(306, 1_000)]);
        assert_eq!(later.receipt_deadline(&config, 2), 305_000);
    }

    #[test]
    fn a_second_outage_during_the_first_ones_grace_moves_the_deadline_again() {
        let config = config();
        let outages = Outages::new(vec![outage(1_050, 1_500), outage(290, 1_000)]);
        assert_eq!(outages.receipt_deadline(&config, 2), 1_560_000);
        // More than the grace apart: the second one came after the deadline.
        let apart = Outages::new(vec![outage(290, 1_000), outage(1_061, 1_500)]);
        assert_eq!(apart.receipt_deadline(&config, 2), 1_060_000);
    }

    /// A database stop of 34 s under a running coordinator: the note begun 19 s into it waits
    /// for the database until it is back. Timed when it began, it claimed the process up
    /// through half the outage, and the note after it recorded the rest as a second outage.
    #[tokio::test]
    async fn a_note_that_waited_through_an_outage_records_it_once() {
        use sqlx::Connection as _;
        use std::sync::atomic::Ordering;
        use streamr_core::ManualClock;

        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("coordinator.db").display());
        let storage = crate::connect(&url).await.expect("storage");
        let config = config();
        let liveness = Liveness::default();
        let metrics = Metrics::default();
        let clock = ManualClock::new(1_000);
        let note = || liveness.outages(&config, storage.as_ref(), &clock, &metrics, Duration::ZERO);
        note().await.expect("the first note");

        // The database stops answering (here: another connection holds its write lock).
        let mut holder = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("second connection");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("lock");
        clock.set(20_000);
        let back = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            clock.set(35_000);
            sqlx::query("COMMIT")
                .execute(&mut holder)
                .await
                .expect("unlock");
        };
        let (stalled, ()) = tokio::join!(note(), back);
        let (noted_ms, outages) = stalled.expect("the stalled note");
        assert_eq!(noted_ms, 35_000, "timed when it reached the database");
        assert_eq!(*outages, Outages::new(vec![outage(1, 35)]));

        clock.set(36_000);
        let (_, outages) = note().await.expect("the next note");
        assert_eq!(
            *outages,
            Outages::new(vec![outage(1, 35)]),
            "one outage on record"
        );
        assert_eq!(metrics.coordinator_outages_total.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_zero_outage_grace_keeps_every_deadline_fixed() {
        let config = CoordConfig {
            outage_grace: Duration::ZERO,
            ..config()
        };
        let outages = Outages::new(vec![outage(290, 1_000)]);
        assert_eq!(outages.receipt_deadline(&config, 2), 305_000);
    }
}
