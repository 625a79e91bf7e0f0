//! The shipped systemd unit (`deploy/systemd/streamr-coordinator.service`) verifies cleanly and
//! names only settings the coordinator reads (see `deploy/systemd/tests/unit_check.rs`).

#[path = "../../../../deploy/systemd/tests/unit_check.rs"]
mod unit_check;

#[test]
#[ignore = "interop: needs systemd-analyze"]
fn unit_verifies_cleanly_and_names_real_settings() {
    unit_check::check(&unit_check::UnitUnderTest {
        unit: "streamr-coordinator.service",
        env_example: "coordinator.env.example",
        // Set by the unit for its own `ExecStart` line (`--listen` has no variable).
        unit_only: &["STREAMR_LISTEN"],
        binary_name: "streamr-coordinator",
        binary: env!("CARGO_BIN_EXE_streamr-coordinator"),
    });
}
