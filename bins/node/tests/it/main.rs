//! streamr-node's integration tests in one binary (one link instead of one per file); each file is a
//! module. The timing-bound scenarios (the `timing-bound` group in .config/nextest.toml) stay
//! binaries of their own: e2e_network, e2e_restarts, e2e_fraud, node_accounting, nat_miniupnpd.

#[path = "../common/mod.rs"]
mod common;

mod node_cli;
mod node_coordinator_key;
mod node_hardening;
mod node_http_fuzz_seeds;
mod node_idle;
mod node_network;
mod node_operator_key;
mod node_process;
mod node_reachability;
mod node_tls;
mod origin_play;
mod relay_tree;
mod systemd_unit;
