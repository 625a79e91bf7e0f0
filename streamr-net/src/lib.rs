//! # streamr-net
//!
//! What every StreamrP2P listener facing the internet shares: [`ConnectionBudget`]s that cap
//! open connections in total and per client, and [`http::serve`], an HTTP/1.1 loop for an axum
//! router with a header-read deadline, a body deadline, a response write deadline and a budget;
//! and [`failure_log`], which logs a failure that repeats (a database or coordinator away) as it
//! starts, now and then while it lasts and as it ends.
//!
//! ```no_run
//! use streamr_net::http::{serve, HttpLimits};
//!
//! # async fn run() -> std::io::Result<()> {
//! let limits = HttpLimits::default();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
//! serve(listener, router, limits.budget(), limits, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod budget;
#[cfg(feature = "cli")]
pub mod cli;
pub mod failure_log;
pub mod forwarded;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod takeover;
#[cfg(feature = "write-clock")]
pub mod write_clock;

/// The shortest deadline or period a setting may have: anything shorter (zero above all) would
/// expire at once or spin, so [`http::HttpLimits::validate`] and the binaries' duration flags
/// ([`cli::positive_duration`], feature `cli`) refuse it.
pub const MIN_DEADLINE: std::time::Duration = std::time::Duration::from_millis(1);

pub use budget::{BudgetLimits, BudgetRefusal, BudgetStats, ConnectionBudget, ConnectionPermit};
pub use forwarded::{client_ip, Cidr, ClientIp, TrustedProxies};
#[cfg(feature = "http")]
pub use http::{HttpLimits, InvalidLimits};
#[cfg(feature = "http")]
pub use takeover::{RawConnection, RawIo, TakeConnection};
#[cfg(feature = "write-clock")]
pub use write_clock::WriteClock;
