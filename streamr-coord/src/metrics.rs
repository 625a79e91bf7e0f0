//! Counters exported at `/metrics` in the Prometheus text exposition format.
//!
//! A dozen monotonic counters do not justify a metrics registry dependency; each is an atomic
//! and the exposition is written by hand.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::Totals;

macro_rules! counters {
    ($($field:ident => $help:literal),* $(,)?) => {
        /// The coordinator's counters since process start.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $field: AtomicU64,)*
        }

        impl Metrics {
            fn write_counters(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP streamr_{} {}", stringify!($field), $help);
                    let _ = writeln!(out, "# TYPE streamr_{} counter", stringify!($field));
                    let _ = writeln!(
                        out,
                        "streamr_{} {}",
                        stringify!($field),
                        self.$field.load(Ordering::Relaxed)
                    );
                )*
            }
        }
    };
}

counters! {
    http_requests_total => "HTTP requests answered.",
    http_client_errors_total => "HTTP requests answered with a 4xx status.",
    http_server_errors_total => "HTTP requests answered with a 5xx status.",
    rate_limited_total => "Requests refused by the per-IP rate limit.",
    heartbeats_accepted_total => "Heartbeats accepted (signed or session-authenticated).",
    heartbeats_rejected_total => "Heartbeats rejected (signature, MAC, session, skew, replay, unknown node).",
    node_sessions_opened_total => "Node sessions opened (signed handshakes accepted).",
    node_session_rows_refused_total => "Stored node sessions whose sealed key did not open (altered row, another coordinator key, or malformed): the node was told unknown_session.",
    receipts_accepted_total => "Viewer receipts accepted.",
    receipts_rejected_total => "Viewer receipts rejected by verification.",
    grants_issued_total => "Session grants issued.",
    grants_over_budget_total => "Play requests refused because a viewer key or source prefix spent its epoch's grant budget.",
    receipts_late_total => "Viewer receipts refused because their epoch's submission deadline had passed.",
    receipts_future_total => "Viewer receipts refused because they were signed in the future.",
    epochs_settled_total => "Epochs settled by this replica.",
    settlement_races_lost_total => "Epochs this replica computed but another replica stored first.",
    payouts_sent_total => "Payouts handed to the payout sink.",
    worker_errors_total => "Worker iterations that failed.",
    coordinator_outages_total => "Coordinator outages this process recorded on coming back: no process had noted itself up for longer than the outage gap.",
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders all counters plus storage-wide gauges.
    pub fn render(&self, totals: Option<&Totals>) -> String {
        let mut out = String::with_capacity(2048);
        self.write_counters(&mut out);
        if let Some(totals) = totals {
            for (name, help, value) in [
                (
                    "live_streams",
                    "Streams currently live.",
                    totals.live_streams,
                ),
                (
                    "active_nodes",
                    "Registered active nodes.",
                    totals.active_nodes,
                ),
                ("receipts_stored", "Receipts in storage.", totals.receipts),
                ("settled_epochs", "Epochs settled.", totals.settled_epochs),
                (
                    "paid_out",
                    "Micro-units paid out to nodes.",
                    totals.paid_out,
                ),
            ] {
                let _ = writeln!(out, "# HELP streamr_{name} {help}");
                let _ = writeln!(out, "# TYPE streamr_{name} gauge");
                let _ = writeln!(out, "streamr_{name} {value}");
            }
        }
        out
    }
}
