//! # streamr-core
//!
//! The StreamrP2P domain model: identities, session grants and viewer receipts, verified
//! contribution accounting, fraud detection, rewards and the payout ledger. No I/O: storage and
//! clocks are traits that the embedding service implements.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
