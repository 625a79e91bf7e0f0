//! streamr-coord's integration tests in one binary (one link instead of one per file); each file is a
//! module.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod behaviour;
mod client;
mod coord_json_fuzz_seeds;
mod dashboard;
mod epoch_fence;
mod heartbeat_totals;
mod heartbeats;
mod ll_parts;
mod ll_segments;
mod local_trial;
mod node_report;
mod node_sessions;
mod operator_keys;
mod postgres_tls;
mod prober;
mod reachability;
mod relay_tree;
mod replicas;
mod routing;
mod settlement_inputs;
mod steering;
mod stream_keys;
mod trusted_proxies;
