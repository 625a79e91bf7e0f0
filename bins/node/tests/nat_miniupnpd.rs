//! `--nat auto` against a real UPnP-IGD router: Debian's miniupnpd (nftables backend) runs in
//! a network namespace of its own ("router", LAN side 10.77.x.1, WAN side 11.77.x.1 on a veth
//! whose other end is in a third, closed namespace), and the node binary runs in a "lan"
//! namespace behind it. The node must find the router over SSDP, map its RTMP and HTTP ports
//! (the router's nftables DNAT rules show them), log the external address, renew the short
//! lease, and remove both mappings when it is stopped with SIGTERM.
//!
//! Needs root (network namespaces), `ip`, `nft` and `miniupnpd`; without them the test is
//! skipped, and with CI=true it fails. No packet leaves the three namespaces.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
}

/// Whether the test can run here; with CI=true a missing piece is a failure.
fn available() -> bool {
    let missing: Vec<&str> = ["ip", "nft", "miniupnpd"]
        .into_iter()
        .filter(|name| tool(name).is_none())
        .collect();
    let root = rustix::process::geteuid().is_root();
    if missing.is_empty() && root {
        return true;
    }
    let why = format!("missing tools {missing:?}, root: {root}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the NAT test cannot run under CI: {why}"
    );
    eprintln!("skipping the miniupnpd test: {why}");
    false
}

fn run(args: &[&str]) {
    let status = Command::new(tool(args[0]).expect("tool"))
        .args(&args[1..])
        .status()
        .expect("run");
    assert!(status.success(), "{args:?} failed: {status}");
}

fn output(args: &[&str]) -> String {
    let out = Command::new(tool(args[0]).expect("tool"))
        .args(&args[1..])
        .output()
        .expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three namespaces and their links; deleted (with miniupnpd) when dropped.
struct Lab {
    names: [String; 3],
    router: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut router) = self.router.take() {
            let _ = router.kill();
            let _ = router.wait();
        }
        for name in &self.names {
            let _ = Command::new(tool("ip").expect("ip"))
                .args(["netns", "delete", name])
                .status();
        }
    }
}

const NFT_RULESET: &str = "table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
";

fn dnat_rules(router: &str) -> String {
    output(&[
        "ip",
        "netns",
        "exec",
        router,
        "nft",
        "list",
        "chain",
        "inet",
        "filter",
        "prerouting_miniupnpd",
    ])
}

#[test]
#[ignore = "interop: needs miniupnpd, nft and ip (root)"]
fn the_node_maps_renews_and_removes_its_ports_on_a_real_igd() {
    round_trip("u", true);
}

/// The same router with UPnP off: the node falls back to PCP (NAT-PMP where PCP is refused)
/// at its default gateway.
#[test]
#[ignore = "interop: needs miniupnpd, nft and ip (root)"]
fn without_upnp_the_node_maps_its_ports_over_pcp() {
    round_trip("p", false);
}

fn round_trip(tag: &str, upnp: bool) {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = format!("{}{tag}", std::process::id() % 100_000);
    let subnet = 1 + std::process::id() % 120 + if upnp { 0 } else { 120 };
    let (router, lan, wan) = (
        format!("sp-router-{id}"),
        format!("sp-lan-{id}"),
        format!("sp-wan-{id}"),
    );
    let mut lab = Lab {
        names: [router.clone(), lan.clone(), wan.clone()],
        router: None,
    };
    for name in &lab.names {
        run(&["ip", "netns", "add", name]);
    }
    let (lan_if, rlan_if, wan_if, inet_if) = (
        format!("l{id}"),
        format!("rl{id}"),
        format!("w{id}"),
        format!("i{id}"),
    );
    run(&[
        "ip", "link", "add", &lan_if, "netns", &lan, "type", "veth", "peer", "name", &rlan_if,
        "netns", &router,
    ]);
    run(&[
        "ip", "link", "add", &wan_if, "netns", &router, "type", "veth", "peer", "name", &inet_if,
        "netns", &wan,
    ]);
    let lan_ip = format!("10.77.{subnet}.2");
    let gateway_ip = format!("10.77.{subnet}.1");
    // A public-looking WAN address (miniupnpd refuses private ones); the namespace it faces
    // holds nothing but the other end of the link.
    let external_ip = format!("11.77.{subnet}.1");
    run(&[
        "ip",
        "-n",
        &lan,
        "addr",
        "add",
        &format!("{lan_ip}/24"),
        "dev",
        &lan_if,
    ]);
    run(&[
        "ip",
        "-n",
        &router,
        "addr",
        "add",
        &format!("{gateway_ip}/24"),
        "dev",
        &rlan_if,
    ]);
    run(&[
        "ip",
        "-n",
        &router,
        "addr",
        "add",
        &format!("{external_ip}/24"),
        "dev",
        &wan_if,
    ]);
    for (ns, link) in [
        (&lan, &lan_if),
        (&lan, &"lo".to_owned()),
        (&router, &rlan_if),
        (&router, &wan_if),
        (&router, &"lo".to_owned()),
        (&wan, &inet_if),
    ] {
        run(&["ip", "-n", ns, "link", "set", link, "up"]);
    }
    run(&[
        "ip",
        "-n",
        &lan,
        "route",
        "add",
        "default",
        "via",
        &gateway_ip,
    ]);
    let ruleset = dir.path().join("router.nft");
    std::fs::write(&ruleset, NFT_RULESET).unwrap();
    run(&[
        "ip",
        "netns",
        "exec",
        &router,
        "nft",
        "-f",
        ruleset.to_str().unwrap(),
    ]);
    let config = dir.path().join("miniupnpd.conf");
    std::fs::write(
        &config,
        format!(
            "ext_ifname={wan_if}\nlistening_ip={rlan_if}\nport=5000\nenable_upnp={}\n\
             enable_natpmp=yes\nsecure_mode=yes\nsystem_uptime=yes\nmin_lifetime=1\n\
             uuid=3e7d5e4c-1111-4c2e-9a0b-0123456789ab\n\
             upnp_table_name=filter\nupnp_nat_table_name=filter\n\
             upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n\
             upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             allow 1024-65535 10.77.{subnet}.0/24 1024-65535\n\
             deny 0-65535 0.0.0.0/0 0-65535\n",
            if upnp { "yes" } else { "no" }
        ),
    )
    .unwrap();
    lab.router = Some(
        Command::new(tool("ip").unwrap())
            .args(["netns", "exec", &router])
            .arg(tool("miniupnpd").unwrap())
            .arg("-d")
            .arg("-f")
            .arg(&config)
            .arg("-P")
            .arg(dir.path().join("miniupnpd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("miniupnpd.log")).unwrap())
            .spawn()
            .expect("start miniupnpd"),
    );
    std::thread::sleep(Duration::from_millis(500));

    let (rtmp_port, http_port) = (19_350, 18_080);
    let mut node = Command::new(tool("ip").unwrap())
        .args(["netns", "exec", &lan])
        .arg(env!("CARGO_BIN_EXE_streamr-node"))
        .args(["--rtmp-listen", &format!("{lan_ip}:{rtmp_port}")])
        .args(["--http-listen", &format!("{lan_ip}:{http_port}")])
        .arg("--identity")
        .arg(dir.path().join("node.key"))
        .args(["--nat", "auto", "--nat-lease", "2s", "--log-format", "json"])
        .env("RUST_LOG", "info,streamr_node::nat=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the node");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = node.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                let hit = pred(&line);
                seen.push(line);
                if hit {
                    return;
                }
            }
        }
        let log = std::fs::read_to_string(dir.path().join("miniupnpd.log")).unwrap_or_default();
        panic!(
            "no {what} in the node's log:\n{}\nminiupnpd:\n{log}",
            seen.join("\n")
        );
    };
    for (what, port) in [("RTMP", rtmp_port), ("HTTP", http_port)] {
        let external = format!("{external_ip}:{port}");
        wait_for(&format!("{what} mapped to {external}"), &|line| {
            line.contains("port mapped")
                && line.contains(&external)
                && line.contains(what)
                && (upnp || line.contains("PCP") || line.contains("NAT-PMP"))
        });
    }
    let rules = dnat_rules(&router);
    for port in [rtmp_port, http_port] {
        assert!(
            rules.contains(&format!("dport {port} dnat ip to {lan_ip}:{port}")),
            "the router forwards {port}: {rules}"
        );
    }
    wait_for("a renewed lease", &|line| line.contains("lease renewed"));

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&node),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    for what in ["RTMP", "HTTP"] {
        wait_for(&format!("{what} mapping removed"), &|line| {
            line.contains("port mapping removed") && line.contains(what)
        });
    }
    assert!(node.wait().expect("node exit").success());
    let rules = dnat_rules(&router);
    assert!(
        !rules.contains("dnat"),
        "no mapping left on the router: {rules}"
    );
}
