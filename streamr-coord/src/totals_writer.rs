//! The I/O around [`SessionTotals`]: loads a session's stored state when the table asks for
//! it, and writes the table's rows every interval (and on demand) with one statement per
//! round ([`Storage::record_session_totals`]).

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use streamr_core::NodeSessionId;

use crate::error::{ApiError, StorageError};
use crate::session_totals::{Refusal, SessionTotals, TotalsHeartbeat};
use crate::storage::{Storage, StorageResult};

/// Sessions the table holds at most (beyond, idle ones are forgotten and reloaded).
const MAX_SESSIONS: usize = 200_000;

/// The shared table and the storage it is written to.
pub(crate) struct TotalsWriter {
    table: Arc<Mutex<SessionTotals>>,
    storage: Arc<dyn Storage>,
    /// One write at a time (the periodic one or one asked for), so rounds stay in order.
    writing: tokio::sync::Mutex<()>,
}

impl TotalsWriter {
    /// A writer over `storage` whose periodic task writes every `interval`, and trusts a
    /// session's state for `interval` after it last agreed with the database. The task ends
    /// when the writer is dropped, without writing what is left (as a killed process would).
    pub(crate) fn spawn(storage: Arc<dyn Storage>, interval: Duration) -> Arc<Self> {
        let staleness_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let writer = Arc::new(TotalsWriter {
            table: Arc::new(Mutex::new(SessionTotals::new(staleness_ms, MAX_SESSIONS))),
            storage,
            writing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&writer);
        tokio::spawn(write_every(weak, interval));
        writer
    }

    fn table(&self) -> std::sync::MutexGuard<'_, SessionTotals> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `heartbeat` would be taken for `session` (loading its stored state first when
    /// the table asks for it). Nothing is taken.
    pub(crate) async fn check(
        &self,
        session: &NodeSessionId,
        heartbeat: &TotalsHeartbeat,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let first = self.table().check(session, heartbeat, now_ms);
        match first {
            Err(Refusal::NotLoaded) => {
                self.load(session, heartbeat, now_ms).await?;
                let again = self.table().check(session, heartbeat, now_ms);
                again.map_err(|refusal| to_error(refusal, heartbeat))
            }
            other => other.map_err(|refusal| to_error(refusal, heartbeat)),
        }
    }

    /// Takes `heartbeat` for `session` (checked as [`Self::check`] does).
    pub(crate) async fn accept(
        &self,
        session: &NodeSessionId,
        heartbeat: TotalsHeartbeat,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        self.check(session, &heartbeat, now_ms).await?;
        let taken = self.table().accept(session, heartbeat.clone(), now_ms);
        taken.map_err(|refusal| to_error(refusal, &heartbeat))
    }

    async fn load(
        &self,
        session: &NodeSessionId,
        heartbeat: &TotalsHeartbeat,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let stored = self.storage.session_totals(&session.to_string()).await?;
        let Some((node_id, totals)) = stored else {
            return Err(ApiError::Storage(StorageError::UnknownNode {
                node_id: heartbeat.node_id.clone(),
            }));
        };
        self.table().load(*session, &node_id, totals, now_ms);
        Ok(())
    }

    /// Writes every row the table holds now, round by round. A round the database fails
    /// is put back for the next write.
    pub(crate) async fn write_now(&self) -> StorageResult<()> {
        let _one_at_a_time = self.writing.lock().await;
        let rounds = self.table().take_rounds();
        let mut rounds = rounds.into_iter();
        while let Some(round) = rounds.next() {
            match self.storage.record_session_totals(&round).await {
                Ok(stored) => {
                    let now = crate::clock::now_ms();
                    self.table().written(&round, &stored, now);
                }
                Err(error) => {
                    // Later rounds hold newer epochs of the same sessions: back in order.
                    let mut table = self.table();
                    for later in rounds.rev() {
                        table.restore(later);
                    }
                    table.restore(round);
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// The periodic task: writes every `interval` while the writer lives.
async fn write_every(writer: Weak<TotalsWriter>, interval: Duration) {
    let period = interval.max(Duration::from_millis(10));
    // The first write one period after the first heartbeat, not at once.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        if let Err(error) = writer.write_now().await {
            tracing::warn!(%error, "session heartbeat totals not written; retried next round");
        }
    }
}

fn to_error(refusal: Refusal, heartbeat: &TotalsHeartbeat) -> ApiError {
    match refusal {
        Refusal::Replayed { last } => ApiError::Storage(StorageError::ReplayedNonce {
            node_id: heartbeat.node_id.clone(),
            nonce: heartbeat.nonce,
            last,
        }),
        Refusal::Decreased {
            field,
            reported,
            accepted,
        } => ApiError::InvalidField {
            field: if field == "bytes_served" {
                "heartbeat.bytes_served"
            } else {
                "heartbeat.unattested_bytes"
            },
            reason: format!(
                "a session's running total cannot go down: {reported} after {accepted}"
            ),
        },
        // The MAC check already tied the session to the node; a stored row naming another
        // node (or a table that could not load it) is a session to open again.
        Refusal::OtherNode | Refusal::NotLoaded => ApiError::Storage(StorageError::UnknownNode {
            node_id: heartbeat.node_id.clone(),
        }),
    }
}
