//! Support code shared by the `streamr-coordinator` binaries and their tests: a minimal
//! keep-alive HTTP/1.1 JSON client over hyper for talking to a running coordinator, and a
//! durable file payout sink ([`FilePayoutSink`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), streamr_coordinator::ClientError> {
//! let mut client = streamr_coordinator::HttpClient::connect("127.0.0.1:8090".parse().unwrap()).await?;
//! let (status, body) = client.get("/healthz").await?;
//! assert_eq!(status, 200);
//! assert_eq!(body["status"], "ok");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod payout_file;

pub use client::{ClientError, HttpClient};
pub use payout_file::{read_transfers, FilePayoutSink, PayoutFileError, Transfer};
