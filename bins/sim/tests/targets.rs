//! Runs the real `streamr-sim` binary on a small network and checks the targets it reaches.

use std::process::Command;

use serde_json::Value;

fn run_sim(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_streamr-sim"))
        .args(args)
        .output()
        .expect("streamr-sim runs");
    assert!(
        output.status.success(),
        "streamr-sim failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

const SMALL: &[&str] = &[
    "--json",
    "--seed",
    "7",
    "--nodes",
    "30",
    "--viewers",
    "160",
    "--epochs",
    "4",
    "--attackers",
    "2",
    "--receipt-interval-s",
    "300",
    "--probes",
    "60",
];

fn recall(report: &Value, attack: &str) -> f64 {
    report["attacks"]
        .as_array()
        .expect("attacks")
        .iter()
        .find(|a| a["attack"] == attack)
        .and_then(|a| a["recall"].as_f64())
        .unwrap_or_else(|| panic!("no recall for {attack}"))
}

#[test]
fn small_simulation_meets_the_detection_and_fairness_targets() {
    let report = run_sim(SMALL);
    assert_eq!(report["epochs_settled"], 4);
    assert_eq!(
        report["replay_matches"], true,
        "replay must be bit-identical"
    );
    assert!(report["receipts_verified"].as_u64().unwrap_or(0) > 1_000);
    for attack in ["A1", "A4", "A5", "A7"] {
        assert!(recall(&report, attack) >= 0.99, "{attack} recall");
    }
    for attack in ["A2", "A3"] {
        assert!(recall(&report, attack) >= 0.95, "{attack} recall");
    }
    let honest = &report["honest"];
    assert_eq!(honest["penalized_node_epochs"], 0, "honest nodes penalized");
    assert!(honest["gini_difference"].as_f64().unwrap_or(1.0) <= 0.02);
    let a6 = report["attacks"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["attack"] == "A6"))
        .and_then(|a| a["pool_share"].as_f64())
        .unwrap_or(1.0);
    assert!(a6 <= 0.01, "A6 share {a6}");
    let targets = &report["targets"];
    for key in [
        "recall_one_epoch",
        "recall_three_epochs",
        "false_positives",
        "gini",
        "collusion_share",
    ] {
        assert_eq!(targets[key], true, "target {key}");
    }
}

#[test]
fn equal_seeds_give_equal_reports() {
    let tiny = [
        "--json",
        "--seed",
        "3",
        "--nodes",
        "12",
        "--viewers",
        "60",
        "--epochs",
        "2",
        "--attackers",
        "1",
        "--receipt-interval-s",
        "600",
    ];
    let a = run_sim(&tiny);
    let b = run_sim(&tiny);
    assert_eq!(a, b);
    assert!(a["last_merkle_root"]
        .as_str()
        .is_some_and(|r| r.len() == 64));
}
