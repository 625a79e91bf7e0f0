//! What the coordinator's connect-back check says about this node: whether viewers can reach
//! the addresses it advertises, and which port its operator must forward when not. Logged
//! when it changes and shown by `GET /healthz`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use streamr_client::client::CoordinatorClient;
use streamr_client::wire::ReachabilityReport;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The latest report, shared with `/healthz`.
pub(crate) type ReachabilitySlot = Arc<RwLock<Option<ReachabilityReport>>>;

/// How often the report is fetched before the first check, and after it.
const UNCHECKED_POLL: Duration = Duration::from_secs(2);
const CHECKED_POLL: Duration = Duration::from_secs(30);

/// Fetches the coordinator's report on this node until `stop`, logging each change.
pub(crate) async fn watch(
    client: CoordinatorClient,
    node_id: String,
    slot: ReachabilitySlot,
    stop: CancellationToken,
) {
    let mut last_status = String::new();
    loop {
        let pause = match client.reachability(&node_id).await {
            Ok(report) => {
                if report.status != last_status {
                    announce(&report);
                    last_status.clone_from(&report.status);
                }
                let pause = if report.status == "unchecked" && report.checks_enabled {
                    UNCHECKED_POLL
                } else {
                    CHECKED_POLL
                };
                if let Ok(mut guard) = slot.write() {
                    *guard = Some(report);
                }
                pause
            }
            Err(error) => {
                debug!(%error, "reachability report not fetched");
                CHECKED_POLL
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn announce(report: &ReachabilityReport) {
    match report.status.as_str() {
        "reachable" => info!(
            rtmp = %report.rtmp_url,
            http = %report.http_url,
            "the coordinator reached this node at its advertised addresses"
        ),
        "unreachable" => warn!(
            rtmp = %report.rtmp_url,
            http = %report.http_url,
            rtmp_error = %report.rtmp_error,
            http_error = %report.http_error,
            "NOT REACHABLE: {}",
            report.hint.as_deref().unwrap_or("viewers cannot connect to this node")
        ),
        _ if !report.checks_enabled => {
            debug!("the coordinator does not check reachability")
        }
        _ => debug!("reachability not checked yet"),
    }
}
