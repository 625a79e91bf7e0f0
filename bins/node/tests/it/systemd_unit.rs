//! The shipped systemd unit (`deploy/systemd/streamr-node.service`) verifies cleanly and names
//! only settings the node reads (see `deploy/systemd/tests/unit_check.rs`).

#[path = "../../../../deploy/systemd/tests/unit_check.rs"]
mod unit_check;

#[test]
#[ignore = "interop: needs systemd-analyze"]
fn unit_verifies_cleanly_and_names_real_settings() {
    unit_check::check(&unit_check::UnitUnderTest {
        unit: "streamr-node.service",
        env_example: "node.env.example",
        unit_only: &[],
        binary_name: "streamr-node",
        binary: env!("CARGO_BIN_EXE_streamr-node"),
    });
}
