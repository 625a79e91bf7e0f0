//! The `streamr-node` binary: it listens for RTMP where told, logs JSON when asked, and shuts down
//! cleanly on Ctrl-C (SIGINT).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn connect_within(addr: &str, limit: Duration) -> TcpStream {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("streamr-node never listened on {addr}: {err}"),
        }
    }
}

#[test]
fn node_answers_the_rtmp_handshake_and_exits_cleanly_on_ctrl_c() {
    let addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut node = Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args([
            "--rtmp-listen",
            &addr,
            "--http-listen",
            &http,
            "--log-format",
            "json",
            "--gop-cache",
            "false",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start streamr-node");

    let mut socket = connect_within(&addr, Duration::from_secs(10));
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut c0c1 = vec![3u8];
    c0c1.resize(1 + 1536, 0);
    socket.write_all(&c0c1).expect("send C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    socket
        .read_exact(&mut s0s1s2)
        .expect("S0+S1+S2 from the node");
    assert_eq!(s0s1s2[0], 3, "RTMP version 3");
    drop(socket);

    let interrupted = Command::new("kill")
        .args(["-INT", &node.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let (status, logs) = wait_for_exit(&mut node, "of Ctrl-C");
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with('{') && line.ends_with('}')),
        "JSON logs expected:\n{logs}"
    );
    assert!(logs.contains("RTMP relay listening"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
}

/// Runs `streamr-node` with `args` and `env` until it exits (it must, within 10 s); its exit
/// status and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamr-node"));
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut node = command.spawn().expect("start streamr-node");
    wait_for_exit(&mut node, "of its start")
}

/// Waits for `node` to exit (killing it and failing the test when it has not within 10 s
/// `after`); its exit status and stderr.
fn wait_for_exit(
    node: &mut std::process::Child,
    after: &str,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.try_wait().expect("poll streamr-node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("streamr-node did not exit within 10 s {after}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = node.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    (status, stderr)
}

#[test]
fn a_zero_write_timeout_is_refused_from_the_flag_and_from_its_variable() {
    let (status, stderr) = run_to_exit(&["--http-write-timeout", "0"], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--http-write-timeout"), "{stderr}");
    assert!(stderr.contains("at least 1ms"), "{stderr}");
    for (variable, flag) in [
        ("STREAMR_HTTP_WRITE_TIMEOUT", "--http-write-timeout"),
        ("STREAMR_RTMP_HANDSHAKE_TIMEOUT", "--rtmp-handshake-timeout"),
        ("STREAMR_HEARTBEAT_INTERVAL", "--heartbeat-interval"),
    ] {
        let (status, stderr) = run_to_exit(&[], &[(variable, "0s")]);
        assert_eq!(status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(flag), "{variable}: {stderr}");
        assert!(stderr.contains("at least 1ms"), "{variable}: {stderr}");
    }
    // A documented zero (a write per video frame) and a short deadline from their variables
    // still start a node.
    let rtmp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut node = Command::new(env!("CARGO_BIN_EXE_streamr-node"))
        .args([
            "--rtmp-listen",
            &rtmp,
            "--http-listen",
            &http,
            "--nat",
            "off",
        ])
        .env("STREAMR_BATCH_DELAY", "0s")
        .env("STREAMR_HTTP_WRITE_TIMEOUT", "1ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start streamr-node");
    drop(connect_within(&rtmp, Duration::from_secs(10)));
    let _ = node.kill();
    let _ = node.wait();
}
