//! Receipt intake: what the coordinator does with the viewer receipts a node or a viewer
//! posts, independent of HTTP. It reads the configuration, storage and counters it is given
//! ([`ReceiptIntake`]) and fails only with an [`IntakeError`]; a receipt that does not verify
//! is not an error but a refusal with its reason, in [`receipts::Verified`]. The HTTP layer
//! maps [`IntakeError`] to its answers in one place (`api`).

pub(crate) mod receipts;

#[cfg(test)]
mod tests;

use crate::config::CoordConfig;
use crate::error::StorageError;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// What receipt intake reads: the rules (epochs, deadlines, clock skew, verifier limits), the
/// stored sessions, segments and receipts, and the counters of refused receipts.
#[derive(Clone, Copy)]
pub(crate) struct ReceiptIntake<'a> {
    /// The coordinator's configuration.
    pub(crate) config: &'a CoordConfig,
    /// Where sessions, segments and earlier receipts are read from.
    pub(crate) storage: &'a dyn Storage,
    /// Counts late and future receipts.
    pub(crate) metrics: &'a Metrics,
    /// The outage record, read when a receipt's fixed deadline has passed.
    pub(crate) liveness: &'a crate::outages::Liveness,
    /// What times this process's liveness notes.
    pub(crate) clock: &'a dyn streamr_core::Clock,
}

/// Why a batch of receipts could not be judged at all (a receipt that does not verify is
/// refused, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum IntakeError {
    /// Storage failed while reading sessions, segments or receipts.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Something stored does not parse: a session's grant, a receipt or a segment digest.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Which record, and what the parser said.
        detail: String,
    },
}
