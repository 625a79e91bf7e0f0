//! Shared helpers: real processes (ffmpeg, nginx-rtmp, our binaries) that die with the test.

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use streamr_test_support::ffmpeg::make_flv;
pub use streamr_test_support::{free_port, wait_for_port, Running};

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
    streamr_test_support::our_binary(env!("CARGO_BIN_EXE_streamr-load"))
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
