//! Test support shared by the node's integration tests: child processes that die with the test,
//! ffmpeg as a publisher and as a player, and polling for a condition.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// A child process killed (and reaped) when the test drops it, pass or fail.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg publishing a 320x180 H.264/AAC test pattern to `url` in real time for `seconds`.
pub fn ffmpeg_publish(url: &str, seconds: u32) -> Child {
    let child = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    Child(child)
}

/// Plays `url` with ffmpeg for `frames` video frames (30 s at most); whether it succeeded.
pub fn ffmpeg_plays(url: &str, frames: u32) -> bool {
    Command::new("timeout")
        .args(["30", "ffmpeg", "-v", "error", "-i", url])
        .args(["-frames:v", &frames.to_string(), "-f", "null", "-"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits (up to a minute) until `check` returns something.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
