//! `streamr demo` runs the whole network by itself and stops after `--duration`; meanwhile
//! `streamr watch` plays the demo stream through it into a file ffprobe reads back, over
//! MPEG-TS and, at the same time, over LL-HLS (`--ll`, fMP4).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A base port with the next eight ports free (the demo uses base..base+8).
///
/// Bases are drawn below Linux's ephemeral range (32768 and up by default): ports handed out
/// for outgoing connections are never there, so a machine busy with thousands of client
/// connections still has free runs of nine ports to offer.
fn free_base_port() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos() as u64)
            .unwrap_or(0);
    for attempt in 0..500u64 {
        // A step coprime with the range's size visits every base once.
        let base = 20_000 + ((seed + attempt * 7_919) % 12_000) as u16;
        let listeners: Vec<_> = (0..9)
            .map_while(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        if listeners.len() == 9 {
            return base;
        }
    }
    panic!("no free port range");
}

fn video_packets(file: &std::path::Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe is required (Debian package ffmpeg)");
    // MPEG-TS lists the stream under its program too: take the largest count.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Collects the demo's output line by line until `done` holds for what was printed so far.
fn wait_for_output(
    lines: &std::sync::mpsc::Receiver<String>,
    text: &mut String,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(_) => panic!("waited 120 s for {what}:\n{text}"),
        }
    }
}

/// A demo viewer line showing verified segments.
fn a_viewer_verified(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("viewer ") && l.contains("verified") && !l.contains("(0 verified"))
}

/// A friend line whose earnings column is above zero.
fn a_friend_earned(text: &str) -> bool {
    text.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|n| n.starts_with("friend-"))
            && l.split_whitespace()
                .last()
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|n| n > 0)
    })
}

#[test]
#[ignore = "interop: needs ffprobe"]
fn demo_serves_viewers_through_friends_and_pays_them_while_watch_records_the_stream() {
    let base = free_base_port();
    let dir = tempfile::tempdir().expect("temp dir");
    // Runs until Ctrl-C: the test stops it once it has seen what it checks, however slowly a
    // loaded machine gets there.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["demo", "--epoch-secs", "10", "--refresh-secs", "2"])
        .args(["--base-port", &base.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamr demo starts");
    let demo_out = demo.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(demo_out).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();

    // Watch through the network once the demo's own viewers verify segments.
    let coordinator = format!("http://127.0.0.1:{base}");
    wait_for_output(
        &lines,
        &mut text,
        "a demo viewer to verify segments",
        a_viewer_verified,
    );
    let recording = dir.path().join("watched.ts");
    // The LL-HLS rendition in the same 20 s: fMP4 segments checked against the origin's fMP4
    // hashes, receipts bound to them.
    let ll_recording = dir.path().join("watched.mp4");
    let ll_watch = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["watch", "demo", "--ll", "--coordinator", &coordinator])
        .args(["--duration", "20"])
        .arg("-o")
        .arg(&ll_recording)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamr watch --ll starts");
    let watch = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args([
            "watch",
            "demo",
            "--coordinator",
            &coordinator,
            "--duration",
            "20",
        ])
        .arg("-o")
        .arg(&recording)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("streamr watch runs");
    let watch_log = String::from_utf8_lossy(&watch.stderr);
    assert!(watch.status.success(), "watch failed: {watch_log}");
    let packets = video_packets(&recording);
    let size = std::fs::metadata(&recording).map_or(0, |m| m.len());
    assert!(
        packets >= 150,
        "recorded {packets} video packets ({size} bytes) in 20 s: {watch_log}"
    );
    let last = watch_log.lines().last().unwrap_or_default();
    assert!(
        last.contains("verified") && !last.contains("(0 verified"),
        "{last}"
    );
    let ll_watch = ll_watch
        .wait_with_output()
        .expect("streamr watch --ll ends");
    let ll_log = String::from_utf8_lossy(&ll_watch.stderr);
    assert!(ll_watch.status.success(), "watch --ll failed: {ll_log}");
    let ll_packets = video_packets(&ll_recording);
    assert!(
        ll_packets >= 100,
        "recorded {ll_packets} video packets over LL-HLS in 20 s: {ll_log}"
    );
    let ll_last = ll_log.lines().last().unwrap_or_default();
    assert!(
        ll_last.contains(" 0 unverified") && !ll_last.contains("(0 verified"),
        "{ll_last}"
    );
    assert!(
        !ll_last.contains("receipts 0/"),
        "LL-HLS receipts accepted: {ll_last}"
    );

    // Stop once a settled epoch has paid a friend.
    wait_for_output(&lines, &mut text, "a friend to earn", a_friend_earned);
    let sent = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    wait_for_output(&lines, &mut text, "the demo to stop", |t| {
        t.contains("demo stopped")
    });
    let status = demo.wait().expect("demo exits");
    assert!(status.success(), "demo failed:\n{text}");
    assert!(text.contains(&format!("{coordinator}/dashboard")), "{text}");
    assert!(text.contains("ffplay \"rtmp://"), "{text}");

    // The final table: three friends, offload, and earnings for those that served.
    let final_table = text.rsplit("stopping...").next().unwrap_or_default();
    let offload: f64 = final_table
        .lines()
        .find_map(|l| l.strip_prefix("origin offload: "))
        .and_then(|rest| rest.split('%').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("an offload line");
    assert!(offload >= 90.0, "offload {offload}%:\n{final_table}");
    let friends: Vec<&str> = final_table
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.starts_with("friend-"))
        })
        .collect();
    assert_eq!(friends.len(), 3, "{final_table}");
    let earned: i64 = friends
        .iter()
        .filter_map(|l| l.split_whitespace().last()?.parse::<i64>().ok())
        .sum();
    assert!(earned > 0, "no friend earned anything:\n{final_table}");
    let viewers = final_table
        .lines()
        .filter(|l| l.starts_with("viewer "))
        .count();
    assert_eq!(viewers, 3, "{final_table}");
    for line in final_table.lines().filter(|l| l.starts_with("viewer ")) {
        assert!(
            !line.contains("(0 verified"),
            "a demo viewer verified nothing: {line}"
        );
    }
}

#[test]
fn ctrl_c_stops_the_demo_cleanly() {
    let base = free_base_port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["demo", "--friends", "1", "--viewers", "1"])
        .args(["--base-port", &base.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamr demo starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", base)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo never came up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let sent = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            panic!("the demo did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = String::new();
    let _ = demo
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut text);
    assert!(status.success(), "{status}:\n{text}");
    assert!(text.contains("demo stopped"), "{text}");
}
