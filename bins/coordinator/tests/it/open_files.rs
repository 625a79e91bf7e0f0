//! The real `streamr-coordinator` binary raises its open-file limit's soft value to the hard
//! one at start and logs the result.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The coordinator process, killed when dropped.
struct Coordinator(std::process::Child);

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let hard = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("sh");
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    let hard: u64 = match hard.parse() {
        Ok(hard) if hard > 256 => hard,
        // An unlimited or tiny hard limit leaves nothing to raise to.
        _ => return,
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_streamr-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--database", &database])
        .args(["--log-format", "json", "--probe-interval-secs", "0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn streamr-coordinator");
    let mut coordinator = Coordinator(child);
    let stderr = coordinator.0.stderr.take().expect("stderr");
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &record["fields"];
        if fields["message"] == "open-file limit" {
            assert_eq!(fields["from"], 256, "{line}");
            assert_eq!(fields["to"], hard, "{line}");
            return;
        }
        assert!(Instant::now() < deadline, "no open-file limit line");
    }
    panic!("the coordinator exited without logging its open-file limit");
}
