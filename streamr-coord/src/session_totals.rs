//! Session heartbeats off the durable path: a node session's heartbeats carry running totals
//! (bytes served, unattested bytes) since the session opened, so each one restates the last
//! rather than adding to it. This table keeps, per session, the newest accepted heartbeat in
//! memory and hands the newest of each epoch to a writer that stores them in periodic
//! batches ([`crate::totals_flusher`]). A batch lost to a crash is restated by the node's next
//! heartbeat; the database adds to the epoch's activity only the difference between the
//! stored total and the written one, so nothing is counted twice.
//!
//! Sans-IO: the caller loads a session's stored state when the table asks for it
//! ([`Refusal::NotLoaded`]), and reports which rows a batch stored.
//!
//! Replay protection: a heartbeat is accepted only with a nonce above the newest this table
//! holds for its session, and only while that state agreed with the database at most
//! `max_staleness` ago (loaded, or confirmed by a batch); older state is reloaded first. A
//! heartbeat another replica accepted is therefore refused here once that replica's batch
//! committed and this table's state is fresher than that commit: a replay to a second replica
//! can pass only within the flush interval plus `max_staleness` (plus a commit) after the
//! original was accepted, and even then it changes nothing stored (the batch's row is refused
//! by the database's nonce and cannot raise a total).

use std::collections::{HashMap, HashSet};

use streamr_core::NodeSessionId;

pub(crate) use crate::storage::{
    SessionHeartbeatTotals as TotalsHeartbeat, SessionTotalsWrite as TotalsRow,
    StoredSessionTotals as StoredTotals,
};

/// Why a heartbeat was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The session's state is not here or too old: load it from storage
    /// ([`SessionTotals::load`]) and offer the heartbeat again.
    NotLoaded,
    /// The nonce is not above the newest accepted one.
    Replayed {
        /// The newest accepted nonce.
        last: i64,
    },
    /// A running total went down: `field` is below what the session already reported.
    Decreased {
        /// Which total.
        field: &'static str,
        /// The reported total.
        reported: i64,
        /// The total already accepted.
        accepted: i64,
    },
    /// The session belongs to another node than the heartbeat names.
    OtherNode,
}

#[derive(Debug)]
struct SessionState {
    node_id: String,
    newest: StoredTotals,
    synced_at_ms: i64,
    /// Rows to write, oldest epoch first; at most one per epoch.
    pending: Vec<TotalsRow>,
}

/// The in-memory table of session heartbeats (see the module docs).
#[derive(Debug)]
pub(crate) struct SessionTotals {
    sessions: HashMap<NodeSessionId, SessionState>,
    max_staleness_ms: i64,
    max_sessions: usize,
}

impl SessionTotals {
    /// An empty table whose state is trusted for `max_staleness_ms` after it last agreed with
    /// storage, holding at most `max_sessions` sessions (beyond that, sessions with nothing
    /// left to write are forgotten and reloaded when they send again).
    pub(crate) fn new(max_staleness_ms: i64, max_sessions: usize) -> Self {
        SessionTotals {
            sessions: HashMap::new(),
            max_staleness_ms,
            max_sessions,
        }
    }

    /// Sessions held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `heartbeat` would be accepted for `session` at `now_ms` (nothing changes).
    pub(crate) fn check(
        &self,
        session: &NodeSessionId,
        heartbeat: &TotalsHeartbeat,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let Some(state) = self.sessions.get(session) else {
            return Err(Refusal::NotLoaded);
        };
        if state.node_id != heartbeat.node_id {
            return Err(Refusal::OtherNode);
        }
        // State with rows still to write is newer than the database's: it stays trusted.
        if state.pending.is_empty()
            && now_ms.saturating_sub(state.synced_at_ms) > self.max_staleness_ms
        {
            return Err(Refusal::NotLoaded);
        }
        let newest = state.newest;
        if heartbeat.nonce <= newest.nonce {
            return Err(Refusal::Replayed { last: newest.nonce });
        }
        for (field, reported, accepted) in [
            ("bytes_served", heartbeat.bytes_total, newest.bytes_total),
            (
                "unattested_bytes",
                heartbeat.unattested_total,
                newest.unattested_total,
            ),
        ] {
            if reported < accepted {
                return Err(Refusal::Decreased {
                    field,
                    reported,
                    accepted,
                });
            }
        }
        Ok(())
    }

    /// Accepts `heartbeat` for `session` if [`Self::check`] allows it: it becomes the
    /// session's newest and the row its epoch writes.
    pub(crate) fn accept(
        &mut self,
        session: &NodeSessionId,
        heartbeat: TotalsHeartbeat,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        self.check(session, &heartbeat, now_ms)?;
        let Some(state) = self.sessions.get_mut(session) else {
            return Err(Refusal::NotLoaded);
        };
        state.newest = StoredTotals {
            nonce: heartbeat.nonce,
            bytes_total: heartbeat.bytes_total,
            unattested_total: heartbeat.unattested_total,
        };
        match state.pending.last_mut() {
            Some(row) if row.heartbeat.epoch == heartbeat.epoch => {
                row.heartbeats = row.heartbeats.saturating_add(1);
                row.heartbeat = heartbeat;
            }
            _ => state.pending.push(TotalsRow {
                session_id: session.to_string(),
                heartbeat,
                heartbeats: 1,
            }),
        }
        Ok(())
    }

    /// Takes the session's stored state (read at `now_ms`). State already held is kept
    /// where it is newer; rows still to write are kept.
    pub(crate) fn load(
        &mut self,
        session: NodeSessionId,
        node_id: &str,
        stored: StoredTotals,
        now_ms: i64,
    ) {
        if self.sessions.len() >= self.max_sessions && !self.sessions.contains_key(&session) {
            self.sessions.retain(|_, state| !state.pending.is_empty());
        }
        let state = self
            .sessions
            .entry(session)
            .or_insert_with(|| SessionState {
                node_id: node_id.to_owned(),
                newest: stored,
                synced_at_ms: now_ms,
                pending: Vec::new(),
            });
        if stored.nonce >= state.newest.nonce {
            state.newest = stored;
        }
        state.synced_at_ms = now_ms;
    }

    /// Takes every row still to write, in rounds: each round holds at most one row per
    /// session, and a session's epochs come in order across rounds.
    pub(crate) fn take_rounds(&mut self) -> Vec<Vec<TotalsRow>> {
        let mut rounds: Vec<Vec<TotalsRow>> = Vec::new();
        for state in self.sessions.values_mut() {
            for (index, row) in state.pending.drain(..).enumerate() {
                if rounds.len() <= index {
                    rounds.push(Vec::new());
                }
                if let Some(round) = rounds.get_mut(index) {
                    round.push(row);
                }
            }
        }
        rounds
    }

    /// Reports a written round (at `now_ms`): the sessions in `stored` agree with the
    /// database; the others of `round` were refused there (another replica stored a newer
    /// nonce, or the node or session is gone) and are forgotten, to be reloaded on their
    /// next heartbeat.
    pub(crate) fn written(&mut self, round: &[TotalsRow], stored: &HashSet<String>, now_ms: i64) {
        for row in round {
            let Ok(id) = row.session_id.parse::<NodeSessionId>() else {
                continue;
            };
            if stored.contains(&row.session_id) {
                if let Some(state) = self.sessions.get_mut(&id) {
                    state.synced_at_ms = now_ms;
                }
            } else if self
                .sessions
                .get(&id)
                .is_some_and(|state| state.pending.is_empty())
            {
                self.sessions.remove(&id);
            }
        }
    }

    /// Puts back the rows of a round that could not be written (the database failed): they
    /// go before anything accepted since, merged into it where the epoch is the same.
    pub(crate) fn restore(&mut self, round: Vec<TotalsRow>) {
        for row in round {
            let Ok(id) = row.session_id.parse::<NodeSessionId>() else {
                continue;
            };
            let Some(state) = self.sessions.get_mut(&id) else {
                continue;
            };
            match state.pending.first_mut() {
                Some(newer) if newer.heartbeat.epoch == row.heartbeat.epoch => {
                    newer.heartbeats = newer.heartbeats.saturating_add(row.heartbeats);
                }
                _ => state.pending.insert(0, row),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(byte: u8) -> NodeSessionId {
        NodeSessionId::from_bytes([byte; 16])
    }

    fn beat(nonce: i64, bytes: i64, epoch: i64) -> TotalsHeartbeat {
        TotalsHeartbeat {
            node_id: "node".into(),
            nonce,
            timestamp_ms: nonce,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
            viewers: 1,
            bytes_total: bytes,
            unattested_total: bytes / 2,
            epoch,
        }
    }

    fn loaded() -> SessionTotals {
        let mut table = SessionTotals::new(1_000, 16);
        table.load(session(1), "node", StoredTotals::default(), 0);
        table
    }

    #[test]
    fn an_unknown_or_stale_session_is_loaded_first() {
        let mut table = SessionTotals::new(1_000, 16);
        assert_eq!(
            table.accept(&session(1), beat(1, 10, 0), 0),
            Err(Refusal::NotLoaded)
        );
        table.load(
            session(1),
            "node",
            StoredTotals {
                nonce: 4,
                bytes_total: 40,
                unattested_total: 20,
            },
            0,
        );
        assert_eq!(
            table.accept(&session(1), beat(4, 40, 0), 10),
            Err(Refusal::Replayed { last: 4 })
        );
        // Nothing to write and not confirmed for longer than the bound: reloaded first.
        assert_eq!(
            table.accept(&session(1), beat(5, 50, 0), 1_001),
            Err(Refusal::NotLoaded)
        );
        assert_eq!(table.accept(&session(1), beat(5, 50, 0), 1_000), Ok(()));
    }

    #[test]
    fn replays_decreases_and_other_nodes_are_refused() {
        let mut table = loaded();
        table.accept(&session(1), beat(3, 300, 0), 0).unwrap();
        assert_eq!(
            table.accept(&session(1), beat(3, 300, 0), 0),
            Err(Refusal::Replayed { last: 3 })
        );
        assert_eq!(
            table.accept(&session(1), beat(2, 200, 0), 0),
            Err(Refusal::Replayed { last: 3 })
        );
        assert_eq!(
            table.accept(&session(1), beat(4, 299, 0), 0),
            Err(Refusal::Decreased {
                field: "bytes_served",
                reported: 299,
                accepted: 300
            })
        );
        let mut other = beat(5, 400, 0);
        other.node_id = "another".into();
        assert_eq!(table.accept(&session(1), other, 0), Err(Refusal::OtherNode));
        // Equal totals are a heartbeat that served nothing new.
        assert_eq!(table.accept(&session(1), beat(6, 300, 0), 0), Ok(()));
    }

    #[test]
    fn one_row_per_session_and_epoch_in_epoch_order() {
        let mut table = loaded();
        table.load(session(2), "node", StoredTotals::default(), 0);
        for nonce in 1..=3 {
            table
                .accept(&session(1), beat(nonce, nonce * 10, 7), 0)
                .unwrap();
        }
        table.accept(&session(1), beat(4, 45, 8), 0).unwrap();
        table.accept(&session(2), beat(1, 5, 8), 0).unwrap();
        let rounds = table.take_rounds();
        assert_eq!(rounds.len(), 2);
        let first: Vec<(i64, i64, i64)> = {
            let mut rows: Vec<_> = rounds[0]
                .iter()
                .map(|r| (r.heartbeat.epoch, r.heartbeat.bytes_total, r.heartbeats))
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(first, vec![(7, 30, 3), (8, 5, 1)]);
        let second: Vec<(i64, i64, i64)> = rounds[1]
            .iter()
            .map(|r| (r.heartbeat.epoch, r.heartbeat.bytes_total, r.heartbeats))
            .collect();
        assert_eq!(second, vec![(8, 45, 1)]);
        assert!(table.take_rounds().is_empty());
    }

    #[test]
    fn a_refused_row_forgets_the_session_and_a_failed_one_is_written_again() {
        let mut table = loaded();
        table.accept(&session(1), beat(1, 10, 0), 0).unwrap();
        let round = table.take_rounds().remove(0);
        table.restore(round);
        table.accept(&session(1), beat(2, 20, 0), 0).unwrap();
        let round = table.take_rounds().remove(0);
        assert_eq!(round.len(), 1);
        assert_eq!((round[0].heartbeat.nonce, round[0].heartbeats), (2, 2));
        table.written(&round, &HashSet::new(), 5);
        assert_eq!(table.len(), 0);
        assert_eq!(
            table.accept(&session(1), beat(3, 30, 0), 5),
            Err(Refusal::NotLoaded)
        );
    }

    #[test]
    fn a_load_never_moves_the_newest_state_back() {
        let mut table = loaded();
        table.accept(&session(1), beat(5, 50, 0), 0).unwrap();
        table.load(
            session(1),
            "node",
            StoredTotals {
                nonce: 2,
                bytes_total: 20,
                unattested_total: 10,
            },
            0,
        );
        assert_eq!(
            table.accept(&session(1), beat(5, 50, 0), 0),
            Err(Refusal::Replayed { last: 5 })
        );
    }
}
