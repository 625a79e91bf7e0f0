//! A node's per-session byte accounting: which bytes a heartbeat claims as attested and which
//! as unattested. Sans-IO: the node feeds it each session's served total, the receipts it was
//! handed and the time; the simulator runs the same code, so its claims are the product's.
//!
//! - **Attested**: bytes a receipt of the session's viewer acknowledged (its `bytes_total`),
//!   never more than were served. The coordinator holds this claim against the receipts it
//!   verified.
//! - **Unattested**: served bytes no receipt acknowledged once the session has been silent for
//!   the grace period: since it was admitted (players that cannot sign) or since its last
//!   receipt (a viewer that stopped signing: its silent tail). Rewards bound them by the
//!   grants issued to the node and pay them at a discount.
//!
//! Bytes waiting for a receipt are pending, so a signing viewer's first bytes (served before
//! its first receipt) are counted once, as attested. Bytes already reported as unattested stay
//! so when a late receipt acknowledges them; only bytes beyond them become attested.
//!
//! ```
//! use streamr_core::{SessionAccounting, SessionId, Served};
//!
//! let mut accounting = SessionAccounting::new(10_000);
//! let session = SessionId::from_bytes([1; 16]);
//! accounting.open(session, 600_000, 0);
//! accounting.served(session, 4_000);
//! accounting.receipted(session, 3_000, 1_000);
//! // The receipt acknowledged 3 000 bytes; the other 1 000 wait for the next one ...
//! assert_eq!(accounting.take(2_000, |_| true), Served { attested: 3_000, unattested: 0 });
//! // ... which never comes: after the grace period they are unattested.
//! assert_eq!(accounting.take(11_000, |_| true), Served { attested: 0, unattested: 1_000 });
//! ```

use std::collections::HashMap;

use crate::ids::SessionId;

/// Sessions accounted at most; bytes of sessions beyond this are not claimed.
pub const MAX_ACCOUNTED_SESSIONS: usize = 100_000;

/// What one heartbeat claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Bytes receipts acknowledged.
    pub attested: u64,
    /// Bytes no receipt acknowledged within the grace period.
    pub unattested: u64,
}

/// One granted session's bytes.
#[derive(Debug, Clone)]
struct SessionBytes {
    admitted_ms: u64,
    expiry_ms: u64,
    /// Bytes served so far.
    served: u64,
    /// The highest `bytes_total` a receipt acknowledged.
    acknowledged: u64,
    /// When the last receipt arrived.
    last_receipt_ms: Option<u64>,
    /// Bytes already reported (attested or unattested).
    classified: u64,
}

/// The accounting state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct SessionAccounting {
    grace_ms: u64,
    sessions: HashMap<SessionId, SessionBytes>,
    /// Classified since the last [`SessionAccounting::take`] was handed over.
    pending_report: Served,
}

impl SessionAccounting {
    /// Accounting that waits `grace_ms` of silence before it claims bytes as unattested.
    pub fn new(grace_ms: u64) -> Self {
        Self {
            grace_ms,
            sessions: HashMap::new(),
            pending_report: Served::default(),
        }
    }

    /// Starts accounting `session` (a no-op for a known one); `false` when the table is full.
    pub fn open(&mut self, session: SessionId, expiry_ms: u64, now_ms: u64) -> bool {
        if self.sessions.contains_key(&session) {
            return true;
        }
        if self.sessions.len() >= MAX_ACCOUNTED_SESSIONS {
            return false;
        }
        self.sessions.insert(
            session,
            SessionBytes {
                admitted_ms: now_ms,
                expiry_ms,
                served: 0,
                acknowledged: 0,
                last_receipt_ms: None,
                classified: 0,
            },
        );
        true
    }

    /// Whether `session` is accounted.
    pub fn contains(&self, session: &SessionId) -> bool {
        self.sessions.contains_key(session)
    }

    /// Sessions accounted.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is accounted.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session has been served `total` bytes so far (totals never go down).
    pub fn served(&mut self, session: SessionId, total: u64) {
        if let Some(bytes) = self.sessions.get_mut(&session) {
            bytes.served = bytes.served.max(total);
        }
    }

    /// The session's viewer handed over a receipt acknowledging `bytes_total` bytes.
    pub fn receipted(&mut self, session: SessionId, bytes_total: u64, now_ms: u64) {
        if let Some(bytes) = self.sessions.get_mut(&session) {
            bytes.acknowledged = bytes.acknowledged.max(bytes_total);
            bytes.last_receipt_ms = Some(now_ms);
        }
    }

    /// Classifies what was served since the last call and is no longer pending, forgets
    /// expired sessions with nothing left to count (`counting` says whether a session still has
    /// a response or play running), and hands over the totals for a heartbeat.
    pub fn take(&mut self, now_ms: u64, counting: impl Fn(&SessionId) -> bool) -> Served {
        let report = &mut self.pending_report;
        for bytes in self.sessions.values_mut() {
            let acknowledged = bytes.acknowledged.min(bytes.served);
            if acknowledged > bytes.classified {
                report.attested = report
                    .attested
                    .saturating_add(acknowledged - bytes.classified);
                bytes.classified = acknowledged;
            }
            let silent_since = bytes.last_receipt_ms.unwrap_or(bytes.admitted_ms);
            if bytes.served > bytes.classified
                && now_ms.saturating_sub(silent_since) >= self.grace_ms
            {
                report.unattested = report
                    .unattested
                    .saturating_add(bytes.served - bytes.classified);
                bytes.classified = bytes.served;
            }
        }
        self.sessions.retain(|session, bytes| {
            bytes.expiry_ms > now_ms || counting(session) || bytes.served > bytes.classified
        });
        std::mem::take(&mut self.pending_report)
    }

    /// Puts back what a failed heartbeat could not deliver.
    pub fn restore(&mut self, served: Served) {
        let report = &mut self.pending_report;
        report.attested = report.attested.saturating_add(served.attested);
        report.unattested = report.unattested.saturating_add(served.unattested);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(attested: u64, unattested: u64) -> Served {
        Served {
            attested,
            unattested,
        }
    }

    fn session(i: u8) -> SessionId {
        SessionId::from_bytes([i; 16])
    }

    #[test]
    fn bytes_wait_for_a_receipt_then_are_attested_or_unattested() {
        let mut a = SessionAccounting::new(4_000);
        a.open(session(1), 100_000, 1_000);
        a.open(session(2), 100_000, 1_000);
        a.served(session(1), 700);
        a.served(session(2), 500);
        // Within the grace period nothing is claimed yet.
        assert_eq!(a.take(3_000, |_| false), served(0, 0));
        a.receipted(session(1), 700, 3_500);
        assert_eq!(a.take(4_000, |_| false), served(700, 0));
        // The grace period is over: the silent session's bytes so far are unattested.
        assert_eq!(a.take(5_000, |_| false), served(0, 500));
        a.served(session(1), 1_000);
        a.receipted(session(1), 1_000, 5_500);
        a.served(session(2), 700);
        assert_eq!(a.take(6_000, |_| false), served(300, 200));
        assert_eq!(a.take(7_000, |_| false), served(0, 0));
    }

    #[test]
    fn a_silent_tail_after_the_last_receipt_is_never_attested() {
        // A viewer sends one receipt, then keeps watching without signing (a receipt
        // withholder). Only what it acknowledged is attested; the tail turns unattested once
        // it has been silent for the grace period.
        let mut a = SessionAccounting::new(10_000);
        a.open(session(3), 1_000_000, 0);
        a.served(session(3), 1_000);
        a.receipted(session(3), 1_000, 2_000);
        assert_eq!(a.take(3_000, |_| true), served(1_000, 0));
        a.served(session(3), 50_000);
        assert_eq!(a.take(11_000, |_| true), served(0, 0), "still within grace");
        assert_eq!(a.take(12_000, |_| true), served(0, 49_000));
        a.served(session(3), 80_000);
        assert_eq!(a.take(13_000, |_| true), served(0, 30_000));
        // A late receipt attests only bytes beyond those already claimed.
        a.served(session(3), 90_000);
        a.receipted(session(3), 85_000, 14_000);
        assert_eq!(a.take(15_000, |_| true), served(5_000, 0));
    }

    #[test]
    fn receipts_never_attest_more_than_was_served() {
        let mut a = SessionAccounting::new(0);
        a.open(session(4), 100_000, 0);
        a.served(session(4), 100);
        a.receipted(session(4), 1_000_000, 1);
        assert_eq!(a.take(2, |_| true), served(100, 0));
    }

    #[test]
    fn a_failed_heartbeat_gives_its_claims_back() {
        let mut a = SessionAccounting::new(0);
        a.open(session(5), 100_000, 0);
        a.served(session(5), 900);
        let taken = a.take(10, |_| true);
        assert_eq!(taken, served(0, 900));
        a.restore(taken);
        assert_eq!(a.take(20, |_| true), served(0, 900));
        assert_eq!(a.take(30, |_| true), served(0, 0));
    }

    #[test]
    fn expired_sessions_are_forgotten_once_nothing_counts() {
        let mut a = SessionAccounting::new(0);
        a.open(session(6), 1_000, 0);
        a.served(session(6), 10);
        // Still counting (a response streaming) keeps it past its grant's expiry.
        assert_eq!(a.take(2_000, |_| true), served(0, 10));
        a.served(session(6), 15);
        assert_eq!(a.take(3_000, |_| true), served(0, 5));
        assert_eq!(a.take(4_000, |_| false), served(0, 0));
        assert!(a.is_empty());
    }
}
