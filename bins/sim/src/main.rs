//! `streamr-sim`: runs the real StreamrP2P reward and fraud pipeline (signed grants and
//! receipts, batch verification, probes, fraud rules, settlement, Merkle statements, payouts) on
//! a synthetic network with honest behaviours, the attacks A1–A10 and the threats of
//! `--threat` (framing, fresh-key farms, idle claims, receipt withholding), and reports how
//! well the rules did. `--adaptive` lets the attacker search its parameters for profit.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod adaptive;
mod metrics;
mod output;
mod run;
mod scenario;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Simulate the StreamrP2P reward and fraud pipeline.
#[derive(Parser, Debug)]
#[command(name = "streamr-sim", version)]
struct Cli {
    #[command(flatten)]
    config: scenario::SimConfig,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Write a scatter plot of reward vs true contribution to this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run the adaptive attacker instead: try up to this many parameter sets (within
    /// `--threat-keys` keys and `--threat-nodes` nodes) and report the most profitable.
    #[arg(long)]
    adaptive: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(budget) = cli.adaptive {
        let report = adaptive::search(
            &cli.config,
            cli.config.threat.keys,
            cli.config.threat.nodes,
            budget,
        )?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", output::adaptive_table(&report));
        }
        return Ok(());
    }
    let progress = ProgressBar::new(cli.config.epochs);
    if std::io::stderr().is_terminal() {
        progress.set_style(
            ProgressStyle::with_template("{bar:40} epoch {pos}/{len} {elapsed}")
                .context("progress bar template")?,
        );
    } else {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let outcome = run::run(&cli.config, &progress)?;
    progress.finish_and_clear();
    let report = metrics::report(&cli.config, &outcome, cli.config.epoch_s);
    if let Some(path) = &cli.svg {
        std::fs::write(path, output::svg(&outcome.records))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", output::table(&report));
    }
    Ok(())
}
