//! Fuzzes the HTTP request targets (paths and queries, grant tokens included) and `POST
//! /receipts` bodies the node parses, through its real HTTP app in process: no input makes it
//! panic or answer a server error, and every refusal is a JSON error. Input: a request target,
//! optionally followed by a newline and a `POST` body (see `streamr_node::fuzzing`).
#![no_main]

use std::sync::OnceLock;

use streamr_node::fuzzing::HttpHarness;

static HARNESS: OnceLock<HttpHarness> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| HttpHarness::new().expect("the node harness starts"));
    harness.run_input(data);
});
