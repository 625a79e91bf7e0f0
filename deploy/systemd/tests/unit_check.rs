//! What both unit tests check (included by `bins/{node,coordinator}/tests/systemd_unit.rs`): a
//! shipped unit passes `systemd-analyze verify` without a single warning once its `ExecStart`
//! names the built binary, and every `STREAMR_*` variable it or its example environment file
//! sets is one the binary reads.

use std::path::Path;
use std::process::Command;

/// One shipped unit and the binary it runs.
pub struct UnitUnderTest<'a> {
    /// The unit's file name in `deploy/systemd`.
    pub unit: &'a str,
    /// The example environment file beside it.
    pub env_example: &'a str,
    /// Variables the unit sets for its own `ExecStart` line, not read by the binary.
    pub unit_only: &'a [&'a str],
    /// The binary's name, as `ExecStart` gives it under `/usr/local/bin`.
    pub binary_name: &'a str,
    /// The built binary.
    pub binary: &'a str,
}

/// Fails the test on any complaint of `systemd-analyze verify` or any unknown setting.
pub fn check(case: &UnitUnderTest<'_>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd");
    let unit = std::fs::read_to_string(dir.join(case.unit)).expect("read the unit");
    let (stdout, stderr) = verify(case, &unit);
    assert!(
        stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify {} complains:\n{stdout}{stderr}",
        case.unit
    );

    let help = Command::new(case.binary)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let example = std::fs::read_to_string(dir.join(case.env_example)).expect("read the example");
    for name in streamr_variables(&unit).chain(streamr_variables(&example)) {
        assert!(
            case.unit_only.contains(&name.as_str()) || help.contains(&format!("[env: {name}")),
            "{name} (in {} or {}) is not a setting of {}",
            case.unit,
            case.env_example,
            case.binary_name
        );
    }
}

/// Runs `systemd-analyze verify` on a copy of `unit` whose `ExecStart` is the built binary;
/// returns what it printed.
fn verify(case: &UnitUnderTest<'_>, unit: &str) -> (String, String) {
    let temp = tempfile::tempdir().expect("temporary directory");
    let path = temp.path().join(case.unit);
    let unit = unit.replace(&format!("/usr/local/bin/{}", case.binary_name), case.binary);
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
