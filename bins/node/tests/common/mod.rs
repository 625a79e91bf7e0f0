//! Test support shared by the node's integration tests: child processes that die with the test,
//! ffmpeg as a publisher (from `streamr-test-support`) and as a player, and polling for a
//! condition.

#![allow(dead_code, unused_imports)]

use std::process::{Command, Stdio};

pub use streamr_test_support::eventually;
pub use streamr_test_support::ffmpeg::ffmpeg_publish;
/// A child process killed (and reaped) when the test drops it, pass or fail.
pub use streamr_test_support::Running as Child;

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
