//! `streamr`: the StreamrP2P command line.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

#[cfg(feature = "demo")]
mod demo;
mod operator_rotation;
mod payouts;
mod progress;
mod remux;
mod remux_ts;
mod watch;

/// StreamrP2P command line tools.
#[derive(Debug, Parser)]
#[command(name = "streamr", version, about)]
struct Cli {
    /// A TOML file of settings whose keys are the subcommand's long flag names; flags and
    /// variables override it.
    #[arg(long, env = "STREAMR_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Remux an FLV file into an HLS playlist with MPEG-TS segments.
    Remux(remux::RemuxArgs),
    /// Remux an FLV file into one continuous MPEG-TS file.
    RemuxTs(remux_ts::RemuxTsArgs),
    /// Run a whole network on loopback: coordinator, origin, friend nodes, a looping sample
    /// stream and viewers, with a live table of offload and earnings.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Watch a stream through the friend-node network, verifying segments and signing receipts.
    Watch(watch::WatchArgs),
    /// Show a node's rewards by stage (unvested, vested, pending, paid, fees) and its payouts.
    Payouts(payouts::PayoutsArgs),
    /// Sign the statement that binds an operator name to a new operator key (for the
    /// coordinator's `POST /operators/rotations`).
    OperatorRotation(operator_rotation::OperatorRotationArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let argv = streamr_net::cli::with_config_file(&Cli::command(), std::env::args_os().collect())?;
    let cli = Cli::parse_from(argv);
    match cli.command {
        Command::Remux(args) => {
            let segments = remux::run(&args)?;
            println!(
                "wrote {segments} segments and {} to {}",
                args.playlist_name,
                args.out_dir.display()
            );
        }
        Command::RemuxTs(args) => {
            let bytes = remux_ts::run(&args)?;
            println!("wrote {bytes} bytes to {}", args.output.display());
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            if let Some(secs) = args.epoch_secs {
                eprintln!("--epoch-secs is deprecated; use --epoch {secs}s");
            }
            if let Some(secs) = args.refresh_secs {
                eprintln!("--refresh-secs is deprecated; use --refresh {secs}s");
            }
            demo::run(&args)?;
        }
        Command::Watch(args) => {
            watch::run(&args)?;
        }
        Command::Payouts(args) => {
            print!("{}", payouts::run(&args)?);
        }
        Command::OperatorRotation(args) => {
            print!("{}", operator_rotation::run(&args)?);
        }
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
    #[cfg(feature = "demo")]
    fn durations_take_humantime_and_the_old_seconds() {
        let cli =
            Cli::try_parse_from(["streamr", "demo", "--epoch", "1m", "--duration", "90"]).unwrap();
        let Command::Demo(demo) = cli.command else {
            panic!("demo")
        };
        assert_eq!(demo.epoch, std::time::Duration::from_secs(60));
        assert_eq!(demo.duration, Some(std::time::Duration::from_secs(90)));
        let old = Cli::try_parse_from(["streamr", "demo", "--epoch-secs", "10"]).unwrap();
        let Command::Demo(demo) = old.command else {
            panic!("demo")
        };
        assert_eq!(demo.epoch_secs, Some(10));
    }
}
