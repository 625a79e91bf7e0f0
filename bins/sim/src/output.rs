//! The human table and the SVG scatter plot.

use std::fmt::Write as _;

use crate::adaptive::AdaptiveReport;
use crate::metrics::SimReport;
use crate::run::NodeRecord;

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

/// The report as a plain-text table.
pub fn table(report: &SimReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} epochs settled, {} receipts verified, replay identical: {}",
        report.epochs_settled, report.receipts_verified, report.replay_matches
    );
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>7} {:>7} {:>9} {:>10} {:>10}  rules",
        "attack", "identities", "window", "recall", "precision", "pool share", "truth"
    );
    for a in &report.attacks {
        let rules: Vec<String> = a.rules.iter().map(|r| format!("{r:?}")).collect();
        let _ = writeln!(
            out,
            "{:<6} {:>10} {:>7} {:>7} {:>9} {:>10.4} {:>10.4}  {}",
            format!("{:?}", a.attack),
            a.identities,
            a.window_epochs,
            opt(a.recall),
            opt(a.precision),
            a.pool_share,
            a.truth_share,
            rules.join(",")
        );
    }
    let h = &report.honest;
    let _ = writeln!(
        out,
        "honest: {} node-epochs, {} penalized; false positives {:.5}/epoch, {:.4}/month",
        h.node_epochs,
        h.penalized_node_epochs,
        h.false_positive_rate_per_epoch,
        h.false_positive_rate_per_month
    );
    if !h.penalized_by_rule.is_empty() {
        let rules: Vec<String> = h
            .penalized_by_rule
            .iter()
            .map(|(rule, n)| format!("{rule:?} {n}"))
            .collect();
        let _ = writeln!(out, "  honest penalties by rule: {}", rules.join(", "));
    }
    let _ = writeln!(
        out,
        "honest reward error p50 {:.4} p95 {:.4}; Gini rewards {:.4} vs truth {:.4} (diff {:.4})",
        h.reward_error_p50, h.reward_error_p95, h.gini_rewards, h.gini_truth, h.gini_difference
    );
    let _ = writeln!(
        out,
        "attackers' pool share {:.4}; alpha {:.3}, beta {:.6}; penalty range for the median reward {:?}",
        report.attackers_pool_share, report.alpha, report.beta, report.penalty_range_for_median_reward
    );
    let t = &report.targets;
    let _ = writeln!(
        out,
        "targets: recall 1 epoch {} | recall 3 epochs {} | false positives {} | reward error {} | Gini {} | A6 share {}",
        t.recall_one_epoch, t.recall_three_epochs, t.false_positives, t.reward_error, t.gini, t.collusion_share
    );
    if let Some(threat) = &report.threat {
        let _ = writeln!(
            out,
            "threat {:?}: attacker pool share {:.4} vs true {:.4} (excess {:+.4}); honest loss {:.4}; recall {}",
            threat.threat,
            threat.attacker_pool_share,
            threat.attacker_truth_share,
            threat.attacker_excess,
            threat.honest_loss,
            opt(threat.recall)
        );
        if !threat.rules.is_empty() || threat.dropped_node_epochs > 0 {
            let rules: Vec<String> = threat
                .rules
                .iter()
                .map(|(rule, n)| format!("{rule:?} (penalized {n})"))
                .collect();
            let _ = writeln!(
                out,
                "  flagged by: {}; bytes mostly dropped in {} node-epochs",
                if rules.is_empty() {
                    "no rule".to_owned()
                } else {
                    rules.join(", ")
                },
                threat.dropped_node_epochs
            );
        }
        let c = &threat.cost;
        let _ = writeln!(
            out,
            "  cost: {} keys, {} grant requests, {} sessions landed, {} bytes of bandwidth",
            c.keys, c.grant_requests, c.sessions_landed, c.bandwidth_bytes
        );
        if let Some(v) = &threat.victim {
            let _ = writeln!(
                out,
                "  framed node: paid {:.5} of the pool vs fair {:.5} ({:.3} of fair; median honest node {:.3}); penalized in {} epochs",
                v.pool_share, v.truth_share, v.paid_to_fair, v.honest_median_paid_to_fair, v.penalized_epochs
            );
        }
    }
    out
}

/// The adaptive attacker's search as a table.
pub fn adaptive_table(report: &AdaptiveReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "adaptive attacker, at most {} keys and {} nodes: {} tries",
        report.max_keys,
        report.max_nodes,
        report.trials.len()
    );
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:>5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}",
        "threat", "keys", "nodes", "requests", "prefixes", "sessions", "pool", "truth", "excess"
    );
    for t in &report.trials {
        let p = &t.threat;
        let _ = writeln!(
            out,
            "{:<12} {:>5} {:>5} {:>8} {:>8} {:>8} {:>10.4} {:>10.4} {:>+9.4}",
            p.kind.map(|k| format!("{k:?}")).unwrap_or_default(),
            p.keys,
            p.nodes,
            p.requests,
            p.prefixes,
            p.sessions,
            t.pool_share,
            t.truth_share,
            t.excess
        );
    }
    if let Some(best) = &report.best {
        let _ = writeln!(
            out,
            "most profitable: excess {:+.4} of the pool",
            best.excess
        );
    }
    out
}

/// A scatter plot of each identity's reward share against its true-contribution share.
pub fn svg(records: &[NodeRecord]) -> String {
    let reward_total: f64 = records
        .iter()
        .map(|r| r.earned as f64)
        .sum::<f64>()
        .max(1.0);
    let truth_total: f64 = records.iter().map(|r| r.truth_all).sum::<f64>().max(1.0);
    let points: Vec<(f64, f64, bool)> = records
        .iter()
        .map(|r| {
            (
                r.truth_all / truth_total,
                r.earned as f64 / reward_total,
                r.role.is_none(),
            )
        })
        .collect();
    let max = points
        .iter()
        .fold(0.0f64, |m, (x, y, _)| m.max(*x).max(*y))
        .max(1e-9)
        * 1.05;
    let (size, margin) = (600.0, 60.0);
    let scale = |v: f64| v / max * (size - 2.0 * margin);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let (x0, y0, x1, y1) = (margin, size - margin, size - margin, margin);
    let _ = writeln!(
        out,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 4"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">true contribution share (max {max:.4})</text>"#,
        size / 2.0,
        size - 20.0
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{}" transform="rotate(-90 20 {})" text-anchor="middle">reward share</text>"#,
        size / 2.0,
        size / 2.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="30"><tspan fill="#1f77b4">● honest</tspan>  <tspan fill="#d62728">● attacker</tspan></text>"##,
        margin
    );
    for (x, y, honest) in points {
        let color = if honest { "#1f77b4" } else { "#d62728" };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}" fill-opacity="0.7"/>"#,
            x0 + scale(x),
            y0 - scale(y)
        );
    }
    out.push_str("</svg>\n");
    out
}
