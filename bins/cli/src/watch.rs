//! `streamr watch <stream-id>`: watch a stream through the friend-node network with the viewer
//! library, verifying every segment and signing receipts, and write it where a player reads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use streamr_client::viewer::{ReceiptDelivery, Viewer, ViewerConfig, ViewerOutput, ViewerStats};
use streamr_client::CoordinatorClient;

/// Where receipts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiptsTo {
    /// The coordinator's `POST /receipts` (the serving node's when the coordinator does not
    /// answer).
    Coordinator,
    /// The serving node's `POST /receipts` (it forwards them with its heartbeats; the
    /// coordinator's when the node does not answer).
    Node,
}

/// Arguments of `streamr watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The stream to watch.
    pub stream_id: String,

    /// The coordinator's base URL.
    #[arg(
        long,
        env = "STREAMR_COORDINATOR",
        default_value = "http://127.0.0.1:8090"
    )]
    pub coordinator: String,

    /// Write the stream (MPEG-TS; fMP4 with `--ll`) to this file; `-` writes to stdout, e.g.
    /// `streamr watch show -o - | ffplay -`.
    #[arg(short, long, env = "STREAMR_WATCH_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Stop after this long (`90s`, `5m`; a bare number is seconds; default: until Ctrl-C or
    /// the stream ends).
    #[arg(long, env = "STREAMR_WATCH_DURATION", value_parser = streamr_net::cli::seconds_or_duration)]
    pub duration: Option<std::time::Duration>,

    /// Where signed receipts are sent.
    #[arg(long, env = "STREAMR_WATCH_RECEIPTS", value_enum, default_value_t = ReceiptsTo::Coordinator)]
    pub receipts: ReceiptsTo,

    /// Play the node's LL-HLS rendition part by part with blocking playlist reload (each fMP4
    /// part checked against the hash the origin reported as it cut it before it is written; a
    /// part not reported within 3 s is not written and another node is tried; receipts bind
    /// the fMP4 segments) instead of the MPEG-TS playlist.
    #[arg(long, env = "STREAMR_WATCH_LL")]
    pub ll: bool,
}

/// Runs `streamr watch` until Ctrl-C, `--duration` or the end of the stream; returns the
/// viewer's final counters. An unreachable coordinator, a stream it does not know (or that
/// ended), and a run that verified no segment at all are errors (non-zero exit).
pub fn run(args: &WatchArgs) -> anyhow::Result<ViewerStats> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(watch(args))
}

async fn watch(args: &WatchArgs) -> anyhow::Result<ViewerStats> {
    let output: Option<ViewerOutput> = match &args.output {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(Box::new(tokio::io::stdout())),
        Some(path) => Some(Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?,
        )),
    };
    check_stream(&args.coordinator, &args.stream_id).await?;
    let delivery = match args.receipts {
        ReceiptsTo::Coordinator => ReceiptDelivery::Coordinator,
        ReceiptsTo::Node => ReceiptDelivery::Node,
    };
    let config = ViewerConfig::new(&args.coordinator, &args.stream_id)
        .with_receipts(delivery)
        .with_low_latency(args.ll);
    let viewer = Viewer::start(config, output)?;
    eprintln!(
        "watching {} via {} as viewer {}",
        args.stream_id,
        args.coordinator,
        viewer.stats().viewer
    );
    let deadline = async {
        match args.duration {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    // One listener for the whole run, so a Ctrl-C during a refresh is not missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = &mut deadline => break,
            _ = report.tick() => {
                eprintln!("{}", status_line(&viewer.stats()));
                if viewer.is_finished() {
                    break;
                }
            }
        }
    }
    let stats = viewer.stop().await?;
    eprintln!("{}", status_line(&stats));
    if stats.verified_segments == 0 {
        bail!(
            "no segment of {} could be played and verified{}",
            args.stream_id,
            stats
                .last_error
                .as_deref()
                .map(|error| format!(" (last problem: {error})"))
                .unwrap_or_default()
        );
    }
    Ok(stats)
}

/// Fails with a message saying what is wrong when the coordinator cannot be reached or does
/// not have `stream_id` live.
async fn check_stream(coordinator: &str, stream_id: &str) -> anyhow::Result<()> {
    let client = CoordinatorClient::new(coordinator)?;
    match client.stream(stream_id).await {
        Ok(stream) if stream.status == "live" => Ok(()),
        Ok(stream) => bail!(
            "stream {stream_id} is {} on the coordinator at {coordinator}; nothing to watch",
            stream.status
        ),
        Err(error) if error.status().map(|status| status.as_u16()) == Some(404) => bail!(
            "the coordinator at {coordinator} knows no stream {stream_id:?} (see GET /streams)"
        ),
        Err(error) if error.status().is_none() => Err(anyhow::Error::new(error).context(format!(
            "cannot reach the coordinator at {coordinator} (--coordinator or \
                 STREAMR_COORDINATOR)"
        ))),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "asking the coordinator at {coordinator} about stream {stream_id}"
        ))),
    }
}

/// One line of viewer counters.
pub fn status_line(stats: &ViewerStats) -> String {
    let node = stats
        .node
        .map_or_else(|| "-".to_owned(), |n| short(&n.to_string()));
    let startup = stats
        .startup
        .map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
    // LL-HLS: parts, and how many the node had listed after the one output last.
    let parts = if stats.parts > 0 {
        format!(
            " | parts {} ({} verified: {} by the node's reports, {} asked; {} unverified, {} reports refused, {} behind live, checked in {:.0} ms avg)",
            stats.parts,
            stats.verified_parts,
            stats.parts_checked_by_report,
            stats.parts_checked_by_coordinator,
            stats.unverified_parts,
            stats.part_reports_refused,
            stats
                .last_part_behind
                .map_or_else(|| "-".to_owned(), |behind| behind.to_string()),
            stats.part_check_wait.total.as_secs_f64() * 1_000.0
                / stats.verified_parts.max(1) as f64,
        )
    } else {
        String::new()
    };
    format!(
        "node {node} | segments {} ({} verified, {} unverified){parts} | {} KiB | receipts {}/{} accepted | start-up {startup} | failovers {}",
        stats.segments,
        stats.verified_segments,
        stats.unverified_segments,
        stats.bytes / 1024,
        stats.receipts_accepted,
        stats.receipts_sent,
        stats.failovers,
    )
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
