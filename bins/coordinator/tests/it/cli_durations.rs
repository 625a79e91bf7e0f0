//! The `streamr-coordinator` binary refuses a duration that cannot be zero, from its flag and
//! from its variable alike, naming the flag, before it opens a database or a port.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the coordinator with `args` and `env` in a scratch directory until it exits (within
/// 10 s); its exit code and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("scratch directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamr-coordinator"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn streamr-coordinator");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll streamr-coordinator") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("streamr-coordinator did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    assert!(
        !dir.path().join("streamr-coordinator.db").exists(),
        "a refused command line opened the database"
    );
    (status.code(), stderr)
}

#[test]
fn zero_durations_are_refused_from_the_flag_and_from_its_variable() {
    let (code, stderr) = run_to_exit(&["--http-write-timeout", "0"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--http-write-timeout"), "{stderr}");
    assert!(stderr.contains("at least 1ms"), "{stderr}");
    for (variable, flag) in [
        ("STREAMR_HTTP_WRITE_TIMEOUT", "--http-write-timeout"),
        ("STREAMR_EPOCH", "--epoch"),
        ("STREAMR_RELAY_LIVENESS", "--relay-liveness"),
        (
            "STREAMR_HEARTBEAT_TOTALS_INTERVAL",
            "--heartbeat-totals-interval",
        ),
    ] {
        let (code, stderr) = run_to_exit(&[], &[(variable, "0s")]);
        assert_eq!(code, Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(flag), "{variable}: {stderr}");
        assert!(stderr.contains("at least 1ms"), "{variable}: {stderr}");
    }
    let (code, stderr) = run_to_exit(&[], &[("STREAMR_HTTP_HEADER_TIMEOUT_MS", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--http-header-timeout-ms"), "{stderr}");
}
