//! Shared fixtures for the StreamrP2P criterion benchmarks.
#![forbid(unsafe_code)]
