//! `streamr payouts --node ID`: where a node's rewards are in their lifecycle (unvested, vested,
//! pending, paid, fees) and every payout, pending and sent, from `GET /nodes/{id}/payouts`.

use std::fmt::Write as _;

use anyhow::Context;
use clap::Args;
use streamr_client::wire::NodePayouts;
use streamr_client::CoordinatorClient;

/// Arguments of `streamr payouts`.
#[derive(Debug, Args)]
pub struct PayoutsArgs {
    /// The node (its id, 64 hex characters).
    #[arg(long, env = "STREAMR_NODE_ID")]
    pub node: String,

    /// The coordinator's base URL.
    #[arg(
        long,
        env = "STREAMR_COORDINATOR",
        default_value = "http://127.0.0.1:8090"
    )]
    pub coordinator: String,

    /// Print the coordinator's JSON answer instead of the table.
    #[arg(long, env = "STREAMR_PAYOUTS_JSON")]
    pub json: bool,
}

/// Asks the coordinator and returns the text to print.
pub fn run(args: &PayoutsArgs) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let client = CoordinatorClient::new(&args.coordinator)
        .with_context(|| format!("coordinator URL {}", args.coordinator))?;
    let payouts = runtime
        .block_on(client.node_payouts(&args.node))
        .with_context(|| {
            format!(
                "asking {} for node {}'s payouts",
                args.coordinator, args.node
            )
        })?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&payouts)? + "\n");
    }
    Ok(render(&payouts))
}

/// Micro-units as units with six decimals.
fn units(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let micro = micro.unsigned_abs();
    format!("{sign}{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// The lifecycle and the payouts as a plain-text table.
pub fn render(p: &NodePayouts) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node     {}", p.node_id);
    let _ = writeln!(out, "address  {}", p.payout_address);
    let _ = writeln!(
        out,
        "policy   threshold {}, fee {} + {} ppm",
        units(i64::try_from(p.threshold).unwrap_or(i64::MAX)),
        units(i64::try_from(p.fee_fixed).unwrap_or(i64::MAX)),
        p.fee_ppm
    );
    let _ = writeln!(out);
    for (stage, amount, note) in [
        ("earned", p.earned, "rewards less penalties"),
        ("unvested", p.unvested, "still vesting"),
        ("vested", p.vested, "payable, waiting for the threshold"),
        (
            "pending",
            p.pending,
            "handed to the payout sink, not confirmed",
        ),
        ("paid", p.paid, "confirmed by the payout sink, net of fees"),
        ("fees", p.fees, "withheld from payouts"),
    ] {
        let _ = writeln!(out, "{stage:<9}{:>20}  {note}", units(amount));
    }
    let _ = writeln!(out);
    if p.payouts.is_empty() {
        let _ = writeln!(out, "no payouts yet");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>6}  {:>18}  {:>14}  {:>18}  {:<8}  reference",
        "epoch", "gross", "fees", "net", "status"
    );
    for payout in &p.payouts {
        let _ = writeln!(
            out,
            "{:>6}  {:>18}  {:>14}  {:>18}  {:<8}  {}",
            payout.epoch,
            units(payout.gross),
            units(payout.fees),
            units(payout.net),
            payout.status,
            payout.sink_reference.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_client::wire::PayoutInfo;

    #[test]
    fn the_table_shows_every_stage_and_sent_payouts() {
        let payouts = NodePayouts {
            node_id: "ab".repeat(32),
            payout_address: "0xa11ce".into(),
            earned: 1_500_000,
            unvested: 600_000,
            vested: 100_000,
            pending: 0,
            paid: 791_000,
            fees: 9_000,
            threshold: 500_000,
            fee_fixed: 5_000,
            fee_ppm: 5_000,
            payouts: vec![PayoutInfo {
                node_id: "ab".repeat(32),
                cumulative_net: 791_000,
                epoch: 3,
                payout_address: "0xa11ce".into(),
                gross: 800_000,
                fees: 9_000,
                net: 791_000,
                status: "sent".into(),
                sink_reference: Some("simulated".into()),
                updated_at_ms: 0,
            }],
        };
        let table = render(&payouts);
        for line in [
            "unvested             0.600000",
            "vested               0.100000",
            "paid                 0.791000",
            "fees                 0.009000",
            "threshold 0.500000, fee 0.005000 + 5000 ppm",
        ] {
            assert!(table.contains(line), "{line:?} missing:\n{table}");
        }
        assert!(table.contains("sent"), "{table}");
        assert_eq!(units(-1_234_567), "-1.234567");
    }
}
