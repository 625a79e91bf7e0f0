//! Fuzzes the JSON bodies the coordinator's API takes (streams, nodes, heartbeats, receipts,
//! probes, segment reports, reward simulations) through its real router over in-memory SQLite:
//! no body makes it panic or answer a server error, and every refusal is a JSON error. Input:
//! one byte choosing the endpoint, then the body (see `streamr_coord::fuzzing`).
#![no_main]

use std::sync::OnceLock;

use streamr_coord::fuzzing::JsonHarness;

static HARNESS: OnceLock<JsonHarness> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| JsonHarness::new().expect("the coordinator harness starts"));
    harness.run_input(data);
});
