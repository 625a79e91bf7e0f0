//! Counters of an RTMP server, for an operator's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::connection::ConnectionError;

const COUNTER: Ordering = Ordering::Relaxed;

/// Why the server closed a connection it had accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// No handshake and `connect` in time.
    HandshakeTimeout,
    /// Connected, but neither published nor played in time.
    SetupTimeout,
    /// Played a stream that had no publisher for too long.
    PlayWaitTimeout,
    /// A publisher sent nothing for too long.
    PublisherIdle,
    /// The peer stopped reading what it was sent.
    WriteTimeout,
    /// The peer broke the protocol or sent an invalid app or stream name.
    ProtocolError,
}

impl CloseReason {
    /// Every reason, in a stable order.
    pub const ALL: [CloseReason; 6] = [
        CloseReason::HandshakeTimeout,
        CloseReason::SetupTimeout,
        CloseReason::PlayWaitTimeout,
        CloseReason::PublisherIdle,
        CloseReason::WriteTimeout,
        CloseReason::ProtocolError,
    ];

    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::SetupTimeout => "setup_timeout",
            CloseReason::PlayWaitTimeout => "play_wait_timeout",
            CloseReason::PublisherIdle => "publisher_idle",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::ProtocolError => "protocol_error",
        }
    }

    /// The reason behind `error`, when the server (not the peer or the network) ended it.
    pub(crate) fn of(error: &ConnectionError) -> Option<CloseReason> {
        match error {
            ConnectionError::HandshakeTimeout(_) | ConnectionError::TlsHandshakeTimeout(_) => {
                Some(CloseReason::HandshakeTimeout)
            }
            ConnectionError::SetupTimeout(_) => Some(CloseReason::SetupTimeout),
            ConnectionError::PlayWaitTimeout(_) => Some(CloseReason::PlayWaitTimeout),
            ConnectionError::PublisherIdle(_) => Some(CloseReason::PublisherIdle),
            ConnectionError::WriteTimeout(..) => Some(CloseReason::WriteTimeout),
            ConnectionError::Session(_) | ConnectionError::InvalidName(_) => {
                Some(CloseReason::ProtocolError)
            }
            ConnectionError::Io(_)
            | ConnectionError::ClosedDuringHandshake(_)
            | ConnectionError::TlsHandshake(_) => None,
        }
    }
}

/// A snapshot of an RTMP server's counters ([`RelayServer::metrics`](super::RelayServer::metrics)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtmpMetrics {
    /// Connections open now.
    pub connections_open: usize,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused on accept because the server held its limit.
    pub refused_connection_limit: u64,
    /// Connections refused on accept because their client held its limit.
    pub refused_client_limit: u64,
    /// Connections the server closed, per reason.
    pub closed: Vec<(CloseReason, u64)>,
    /// Connections publishing now.
    pub publishers: u64,
    /// Connections playing now.
    pub players: u64,
    /// Bytes read from RTMP peers.
    pub bytes_in: u64,
    /// Bytes written to RTMP peers.
    pub bytes_out: u64,
    /// Bytes of players' frames sent with `sendfile` from a stream's shared in-memory file
    /// instead of copied per player, part of `bytes_out`.
    pub bytes_shared: u64,
    /// Frames RTMP players skipped because they fell behind.
    pub frames_dropped: u64,
    /// Times an RTMP player fell behind and skipped ahead to a keyframe.
    pub slow_viewer_skips: u64,
}

/// The live counters behind [`RtmpMetrics`].
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) publishers: AtomicU64,
    pub(crate) players: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_shared: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) slow_viewer_skips: AtomicU64,
}

impl ServerCounters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, COUNTER);
    }

    /// Lowers a gauge raised earlier by [`ServerCounters::add`].
    pub(crate) fn sub(gauge: &AtomicU64) {
        // Never below zero, even if a bug paired them wrongly.
        let _ = gauge.fetch_update(COUNTER, COUNTER, |v| Some(v.saturating_sub(1)));
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        if let Some(slot) = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.closed.get(i))
        {
            slot.fetch_add(1, COUNTER);
        }
    }

    pub(crate) fn snapshot(&self, budget: &streamr_net::BudgetStats) -> RtmpMetrics {
        RtmpMetrics {
            connections_open: budget.open,
            connections_accepted: budget.admitted,
            refused_connection_limit: budget.refused_full,
            refused_client_limit: budget.refused_client,
            closed: CloseReason::ALL
                .iter()
                .zip(&self.closed)
                .map(|(reason, count)| (*reason, count.load(COUNTER)))
                .collect(),
            publishers: self.publishers.load(COUNTER),
            players: self.players.load(COUNTER),
            bytes_in: self.bytes_in.load(COUNTER),
            bytes_out: self.bytes_out.load(COUNTER),
            bytes_shared: self.bytes_shared.load(COUNTER),
            frames_dropped: self.frames_dropped.load(COUNTER),
            slow_viewer_skips: self.slow_viewer_skips.load(COUNTER),
        }
    }
}
