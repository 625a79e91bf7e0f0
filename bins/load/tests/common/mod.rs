//! Shared helpers: real processes (ffmpeg, nginx-rtmp, our binaries) that die with the test.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Generates an H.264 + AAC FLV of `seconds` with ffmpeg (1 s GOP, 25 fps).
pub fn make_flv(dir: &Path, seconds: u32) -> PathBuf {
    let out = dir.join("source.flv");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
        .arg(seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    assert!(status.success(), "ffmpeg failed to generate the source");
    out
}

/// Starts nginx with the RTMP module on `port` (application `live`, metadata copied as sent).
pub fn start_nginx_rtmp(dir: &Path, port: u16) -> Running {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             worker_processes 1; daemon off; master_process off;\n\
             error_log {dir}/error.log warn; pid {dir}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; meta copy; }} }} }}\n",
            dir = dir.display()
        ),
    )
    .expect("writing nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is required (Debian packages nginx-light and libnginx-mod-rtmp)");
    let running = Running(child);
    wait_for_port(port);
    running
}

/// Our load tool binary.
pub fn load_tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamr-load"))
}

/// Runs `streamr-load play` and returns its JSON summary.
pub fn play(url: &str, players: usize, seconds: u64, dir: &Path) -> serde_json::Value {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let json = dir.join(format!(
        "play-{}.json",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let status = load_tool()
        .args([
            "play",
            url,
            "-n",
            &players.to_string(),
            "-d",
            &seconds.to_string(),
        ])
        .args(["--no-progress", "--json"])
        .arg(&json)
        .stderr(Stdio::null())
        .status()
        .expect("running streamr-load play");
    assert!(status.success(), "streamr-load play failed");
    serde_json::from_slice(&std::fs::read(&json).expect("reading the JSON report"))
        .expect("the report is JSON")
}
