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

/// A fresh SQLite coordinator database in `dir` (`coordinator.db`).
pub async fn sqlite_storage(dir: &std::path::Path) -> std::sync::Arc<dyn streamr_coord::Storage> {
    streamr_coord::connect(&format!(
        "sqlite://{}",
        dir.join("coordinator.db").display()
    ))
    .await
    .expect("SQLite opens")
}

/// Serves `coordinator` on a loopback port of its own (its URL is the handle's `url()`).
pub async fn serve_on_loopback(
    coordinator: &streamr_coord::Coordinator,
) -> streamr_coord::ServeHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    coordinator.spawn_serve(listener).expect("serve")
}
