//! `streamr-sim`: runs the real StreamrP2P reward and fraud pipeline (signed grants and
//! receipts, batch verification, probes, fraud rules, settlement, Merkle statements, payouts) on
//! a synthetic network with honest behaviours, the attacks A1–A10 and the threats of
//! `--threat` (framing, fresh-key farms, idle, part-time and hoarded claims, receipt
//! withholding), and reports how well the rules did. `--relay-scenarios`, `--probe-scenarios`
//! and `--reward-scenarios` run the relay-tree, the prober's and the reward split's scenarios
//! instead. `--adaptive` lets
//! the attacker search its parameters for profit.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod adaptive;
mod metrics;
mod output;
mod probes;
mod relay;
mod rewards;
mod run;
mod scenario;
mod tree;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Simulate the StreamrP2P reward and fraud pipeline.
#[derive(Parser, Debug)]
#[command(name = "streamr-sim", version)]
struct Cli {
    /// A TOML file of settings whose keys are these long flag names (`epoch = "1h"`); flags
    /// and variables override it.
    #[arg(long = "config", env = "STREAMR_CONFIG")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    config: scenario::SimConfig,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long, env = "STREAMR_SIM_JSON")]
    json: bool,
    /// Write a scatter plot of reward vs true contribution to this SVG file.
    #[arg(long, env = "STREAMR_SIM_SVG")]
    svg: Option<PathBuf>,
    /// Run the adaptive attacker instead: try up to this many parameter sets (within
    /// `--threat-keys` keys and `--threat-nodes` nodes) and report the most profitable.
    #[arg(long, env = "STREAMR_SIM_ADAPTIVE")]
    adaptive: Option<usize>,
    /// Run the relay-tree scenarios instead (relays paid on their children's receipts, and the
    /// attacks on that) and report each attacker's gain against its bound.
    #[arg(long, env = "STREAMR_SIM_RELAY_SCENARIOS")]
    relay_scenarios: bool,
    /// Run the probe scenarios instead (the prober's judge rule against honest relays through
    /// outages and origin restarts, and against relays lying to it) and report each relay's
    /// availability and reward against the honest baseline.
    #[arg(long, env = "STREAMR_SIM_PROBE_SCENARIOS")]
    probe_scenarios: bool,
    /// Run the relay-tree placement scenarios instead (lying and colluding children,
    /// flapping, heartbeat-named upstreams, parents feeding none of their children, through the coordinator's tree rules) and report
    /// what each attacker gains in position and relay credit against its bound.
    #[arg(long, env = "STREAMR_SIM_TREE_SCENARIOS")]
    tree_scenarios: bool,
    /// Run the reward-split scenarios instead (throwaway nodes under another operator's name,
    /// squatting an operator's cap, grants claimed beyond their sessions as unattested, bots
    /// pulling the measured bitrate down, shared-/24 whitewashing, idle spare identities,
    /// water-filling around a capped operator's node, colluders hidden by idle registrations or
    /// renamed operators) and report what each attacker gains and what the honest nodes lose.
    #[arg(long, env = "STREAMR_SIM_REWARD_SCENARIOS")]
    reward_scenarios: bool,
}

/// Prints scenario outcomes as JSON or as their table.
fn print_outcomes<T: serde::Serialize>(
    json: bool,
    outcomes: &[T],
    table: fn(&[T]) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcomes)?);
    } else {
        print!("{}", table(outcomes));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let argv = streamr_net::cli::with_config_file(&Cli::command(), std::env::args_os().collect())?;
    let cli = Cli::parse_from(argv);
    if cli.relay_scenarios {
        return print_outcomes(cli.json, &relay::run_all(), relay::table);
    }
    if cli.probe_scenarios {
        return print_outcomes(cli.json, &probes::run_all(), probes::table);
    }
    if cli.tree_scenarios {
        return print_outcomes(cli.json, &tree::run_all(), tree::table);
    }
    if cli.reward_scenarios {
        return print_outcomes(cli.json, &rewards::run_all(), rewards::table);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_its_variable_and_its_row_in_the_docs() {
        let command = Cli::command();
        streamr_test_support::cli::assert_documented(
            &command,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md"),
        );
    }

    #[test]
    fn epochs_take_humantime_and_the_old_seconds() {
        let cli = Cli::try_parse_from(["streamr-sim", "--epoch", "90s"]).unwrap();
        assert_eq!(cli.config.epoch_s, 90);
        let old = Cli::try_parse_from([
            "streamr-sim",
            "--epoch-s",
            "60",
            "--receipt-interval-s",
            "30",
        ])
        .unwrap();
        assert_eq!(
            (old.config.epoch_s, old.config.receipt_interval_s),
            (60, 30)
        );
        assert_eq!(
            Cli::try_parse_from(["streamr-sim"]).unwrap().config.epoch_s,
            3600
        );
    }
}
