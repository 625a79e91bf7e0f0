//! Runs the real `streamr-sim` binary with the threats beyond the classic attacks (framing,
//! fresh-key farms, idle and part-time claims, withholding, an adaptive attacker) and checks the targets:
//! attackers with at most 50 keys and 10 nodes earn at most their true share plus 1 % of the
//! pool, a framed honest node is paid at least 98 % of its fair share and never penalized,
//! idle nodes earn nothing, and the classic attacks are still caught.

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

/// A small honest network with no classic attackers, so a threat's effect is measured alone.
const NETWORK: &[&str] = &[
    "--json",
    "--seed",
    "7",
    "--nodes",
    "40",
    "--viewers",
    "240",
    "--epochs",
    "4",
    "--receipt-interval-s",
    "300",
    "--probes",
    "60",
    "--no-classic",
];

fn threat(extra: &[&str]) -> Value {
    let args: Vec<&str> = NETWORK.iter().chain(extra).copied().collect();
    let report = run_sim(&args);
    assert_eq!(report["epochs_settled"], 4);
    assert_eq!(report["replay_matches"], true);
    report
}

fn num(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

#[test]
fn a_framed_node_keeps_its_fair_share_and_is_never_penalized() {
    // Ten hostile keys with no grant budget to speak of put four sessions each per epoch on
    // one honest node, post their receipts past it (one beyond its grant each), download
    // nothing, and keep to that node so the collusion rule fires on them.
    let report = threat(&[
        "--threat",
        "framing",
        "--threat-keys",
        "10",
        "--threat-requests",
        "5000",
        "--threat-sessions",
        "4",
    ]);
    let t = &report["threat"];
    assert!(
        num(&t["cost"]["sessions_landed"], "sessions landed") >= 100.0,
        "the framers reached their victim: {t}"
    );
    let victim = &t["victim"];
    assert_eq!(victim["penalized_epochs"], 0, "{victim}");
    assert!(
        num(&victim["paid_to_fair"], "paid to fair") >= 0.98,
        "framed node paid below its fair share: {victim}"
    );
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
}

#[test]
fn nodes_without_viewers_earn_nothing() {
    // Three nodes routing never offers claim unattested bytes up to their probe capacity and
    // serve the coordinator's probes (which sign receipts like viewers).
    let report = threat(&["--threat", "idle-claims", "--threat-nodes", "3"]);
    let t = &report["threat"];
    assert_eq!(num(&t["attacker_pool_share"], "pool share"), 0.0, "{t}");
    assert_eq!(num(&t["recall"], "recall"), 1.0, "{t}");
}

#[test]
fn part_time_nodes_claiming_what_their_probes_allow_stay_within_one_percent() {
    // Ten nodes serve the viewers routed to them for the first third of each epoch, are down
    // the rest (their probes time out), and claim unattested bytes up to what their probes'
    // passing share and measured capacity allow: the most ProbeFailuresWhileServing lets by.
    let report = threat(&["--threat", "part-time", "--threat-nodes", "10"]);
    let t = &report["threat"];
    assert!(
        num(&t["attacker_excess"], "excess") <= 0.01,
        "part-time nodes profit: {t}"
    );
    assert!(
        num(&t["attacker_truth_share"], "truth") > 0.0,
        "the part-time nodes served viewers: {t}"
    );
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
}

#[test]
fn hoarding_nodes_claiming_through_silent_epochs_stay_within_one_percent() {
    // Ten nodes send no heartbeat two epochs in three while their viewers post receipts to the
    // coordinator (what a coordinator outage looks like to the rules), then claim what they
    // served since and, as unattested, all that their grants carried through those epochs:
    // the room silent epochs leave for a later claim pays no more than was served.
    let report = threat(&[
        "--threat",
        "hoarding",
        "--threat-nodes",
        "10",
        "--sessions-span-epochs",
    ]);
    let t = &report["threat"];
    assert!(
        num(&t["attacker_excess"], "excess") <= 0.01,
        "hoarding nodes profit: {t}"
    );
    assert!(
        num(&t["attacker_truth_share"], "truth") > 0.0,
        "the hoarding nodes served viewers: {t}"
    );
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
}

#[test]
fn a_fresh_key_farm_with_fifty_keys_and_ten_nodes_stays_within_one_percent() {
    // Fifty fresh keys per epoch from fifty /24s, 512 grant requests each (far beyond the
    // coordinator's budget), two faked sessions each on any of ten nodes in ten /24s.
    let report = threat(&[
        "--threat",
        "fresh-keys",
        "--threat-keys",
        "50",
        "--threat-nodes",
        "10",
        "--threat-requests",
        "512",
        "--threat-prefixes",
        "50",
    ]);
    let t = &report["threat"];
    assert!(
        num(&t["cost"]["sessions_landed"], "sessions landed") >= 200.0,
        "the farm reached its nodes: {t}"
    );
    assert!(
        num(&t["attacker_excess"], "excess") <= 0.01,
        "the farm earned more than its true share + 1 %: {t}"
    );
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
}

/// Eight keys re-request grants until routed to one honest node, watch it for real, send one
/// receipt per session and go silent (with `extra` settings): the targeted node is never
/// penalized and is paid at least 98 % of its fair share, and no honest node is penalized.
fn withholders_cost_their_target_nothing(extra: &[&str]) {
    let args: Vec<&str> = [
        "--threat",
        "withholding",
        "--threat-keys",
        "8",
        "--threat-sessions",
        "4",
        "--threat-requests",
        "5000",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    let report = threat(&args);
    let t = &report["threat"];
    assert!(
        num(&t["cost"]["sessions_landed"], "sessions") >= 100.0,
        "{t}"
    );
    let victim = &t["victim"];
    assert_eq!(victim["penalized_epochs"], 0, "{victim}");
    assert!(
        num(&victim["paid_to_fair"], "paid to fair") >= 0.98,
        "targeted node paid below its fair share: {victim}"
    );
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
}

#[test]
fn receipt_withholders_cost_the_honest_node_they_target_no_penalty() {
    // The node's accounting must not claim the silent tail as attested (ClaimsExceedReceipts
    // would penalize it).
    withholders_cost_their_target_nothing(&[]);
}

#[test]
fn receipt_withholders_across_epochs_cost_their_target_no_penalty() {
    // With sessions running on across ten-minute epochs, the silent tails fall into epochs in
    // which the session signs nothing at all.
    withholders_cost_their_target_nothing(&["--epoch", "10m", "--sessions-span-epochs"]);
}

#[test]
fn the_adaptive_attacker_finds_no_profit_within_its_budget() {
    let args: Vec<&str> = [
        "--json",
        "--seed",
        "5",
        "--nodes",
        "24",
        "--viewers",
        "120",
        "--epochs",
        "3",
        "--receipt-interval-s",
        "600",
        "--probes",
        "30",
        "--no-classic",
        "--threat-keys",
        "50",
        "--threat-nodes",
        "10",
        "--adaptive",
        "12",
    ]
    .to_vec();
    let report = run_sim(&args);
    let trials = report["trials"].as_array().expect("trials");
    assert!(trials.len() >= 6, "{report}");
    for threat in ["fresh-keys", "idle-claims", "part-time", "hoarding"] {
        assert!(
            trials.iter().any(|t| t["threat"]["kind"] == threat),
            "{threat} was not tried: {report}"
        );
    }
    let best = &report["best"];
    assert!(
        num(&best["excess"], "excess") <= 0.01,
        "the adaptive attacker profits: {best}"
    );
}

#[test]
fn the_classic_attacks_are_still_caught_without_honest_penalties() {
    let report = run_sim(&[
        "--json",
        "--seed",
        "11",
        "--nodes",
        "40",
        "--viewers",
        "240",
        "--epochs",
        "4",
        "--attackers",
        "2",
        "--receipt-interval-s",
        "300",
        "--probes",
        "60",
    ]);
    let recall = |attack: &str| {
        report["attacks"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["attack"] == attack))
            .and_then(|a| a["recall"].as_f64())
            .unwrap_or(0.0)
    };
    for attack in ["A1", "A4", "A5", "A7"] {
        assert!(recall(attack) >= 0.99, "{attack} recall {}", recall(attack));
    }
    for attack in ["A2", "A3", "A6", "A10"] {
        assert!(recall(attack) >= 0.95, "{attack} recall {}", recall(attack));
    }
    assert_eq!(report["honest"]["penalized_node_epochs"], 0);
    assert_eq!(report["targets"]["false_positives"], true);
    assert_eq!(report["targets"]["collusion_share"], true);
}
