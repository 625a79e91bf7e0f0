//! # streamr-test-support
//!
//! What the workspace's integration tests share, so each crate's `tests/common` keeps only its
//! own helpers: child processes killed with the test ([`Running`]), our binaries started without
//! the `STREAMR_*` settings of the shell that runs the tests ([`our_binary`]), free loopback
//! ports, waits that always have a deadline, throwaway PostgreSQL databases (feature
//! `postgres`), ffmpeg as a publisher, the fuzz targets' seed corpora ([`fuzz_corpus`]) and the
//! checks of a binary's command line against the docs and the flag conventions (feature `cli`).
//!
//! Used only as a dev-dependency; never published. Helpers panic with what went wrong, as
//! test code does.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod ffmpeg;
pub mod fuzz_corpus;
pub mod net;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod process;
pub mod wait;

pub use net::{free_addr, free_port, wait_for_port};
pub use process::{our_binary, require_tool, Running};
pub use wait::{eventually, wait_until};

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
