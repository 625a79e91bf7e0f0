//! `streamr`: the StreamrP2P command line.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use clap::{Parser, Subcommand};

mod demo;
mod payouts;
mod progress;
mod remux;
mod remux_ts;
mod watch;

/// StreamrP2P command line tools.
#[derive(Debug, Parser)]
#[command(name = "streamr", version, about)]
struct Cli {
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
    Demo(demo::DemoArgs),
    /// Watch a stream through the friend-node network, verifying segments and signing receipts.
    Watch(watch::WatchArgs),
    /// Show a node's rewards by stage (unvested, vested, pending, paid, fees) and its payouts.
    Payouts(payouts::PayoutsArgs),
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
    let cli = Cli::parse();
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
        Command::Demo(args) => {
            demo::run(&args)?;
        }
        Command::Watch(args) => {
            watch::run(&args)?;
        }
        Command::Payouts(args) => {
            print!("{}", payouts::run(&args)?);
        }
    }
    Ok(())
}
