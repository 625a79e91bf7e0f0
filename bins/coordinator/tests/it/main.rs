//! streamr-coordinator's integration tests in one binary (one link instead of one per file); each
//! file is a module. crash and replicas (timing-bound, run alone) and coordinator_tls (it sets
//! SSL_CERT_FILE for the whole process) stay binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod backup_restore;
mod beyond_grant;
mod cli_durations;
mod graceful_stop;
mod http_flood;
mod open_files;
mod systemd_unit;
