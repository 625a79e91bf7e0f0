//! # streamr-coord
//!
//! The StreamrP2P coordinator service: HTTP API, background workers and storage backends.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
