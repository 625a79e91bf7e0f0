//! The shipped systemd unit (`deploy/systemd/streamr-node.service`) passes
//! `systemd-analyze verify` without a single warning once its `ExecStart` names the built
//! binary, and every `STREAMR_*` variable it or the example environment file sets is one the
//! binary reads.

use std::path::Path;
use std::process::Command;

const UNIT: &str = "streamr-node.service";
const ENV_EXAMPLE: &str = "node.env.example";
/// Set by the unit for its own `ExecStart` line, not read by the binary (none here).
const UNIT_ONLY: &[&str] = &[];

#[test]
fn unit_verifies_cleanly_and_names_real_settings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd");
    let unit = std::fs::read_to_string(dir.join(UNIT)).expect("read the unit");
    let binary = env!("CARGO_BIN_EXE_streamr-node");
    let (stdout, stderr) = verify(&unit, binary);
    assert!(
        stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify {UNIT} complains:\n{stdout}{stderr}"
    );

    let help = Command::new(binary)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let example = std::fs::read_to_string(dir.join(ENV_EXAMPLE)).expect("read the example");
    for name in streamr_variables(&unit).chain(streamr_variables(&example)) {
        assert!(
            UNIT_ONLY.contains(&name.as_str()) || help.contains(&format!("[env: {name}")),
            "{name} (in {UNIT} or {ENV_EXAMPLE}) is not a setting of streamr-node"
        );
    }
}

/// Runs `systemd-analyze verify` on a copy of `unit` whose `ExecStart` is `binary`; returns
/// what it printed.
fn verify(unit: &str, binary: &str) -> (String, String) {
    let temp = tempfile::tempdir().expect("temporary directory");
    let path = temp.path().join(UNIT);
    let unit = unit.replace("/usr/local/bin/streamr-node", binary);
    std::fs::write(&path, unit).expect("write the unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze is required");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        stderr.push_str(&format!("exit status {}\n", output.status));
    }
    (stdout, stderr)
}

/// The `STREAMR_*` names assigned in `text` (`NAME=` after `Environment=`, a `#` or the line start).
fn streamr_variables(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim_start_matches(['#', ' ']);
        let line = line.strip_prefix("Environment=").unwrap_or(line);
        let (name, _) = line.split_once('=')?;
        name.starts_with("STREAMR_").then(|| name.to_owned())
    })
}
