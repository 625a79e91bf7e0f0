//! Who may play at an origin that joined a coordinator. With
//! [`OriginPlay::RelaysAndGranted`] (the default) only the network's relays (a
//! [`relay_token`] signed by a node registered with the coordinator) and
//! viewers holding a coordinator grant for this node may play, so viewers cannot bypass the
//! friend nodes and their accounting, and at most the relay tree's fan-out k of relays play
//! each stream over RTMP (the private `origin_slots` module counts them); [`OriginPlay::Public`] serves anyone.

use std::collections::HashSet;
use std::time::Duration;

use streamr_client::client::CoordinatorClient;
use streamr_core::NodeId;
use tokio::time::Instant;

use crate::relay_token::{self, RelayTokenError};
use streamr_core::{GrantChecker, GrantRefusal};

/// Who may play streams at an origin that joined a coordinator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPlay {
    /// Relays registered with the coordinator and viewers with a grant for this node.
    #[default]
    RelaysAndGranted,
    /// Anyone (viewers can then bypass the network and its accounting).
    Public,
}

/// The coordinator's node list is asked again for an unknown relay at most this often.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Why a play at the origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginRefusal {
    /// The relay token does not verify.
    #[error("relay refused: {0}")]
    RelayToken(RelayTokenError),
    /// The token is well signed, but its node is not registered with the coordinator.
    #[error("relay refused: node {0} is not registered with this origin's coordinator")]
    UnknownRelay(NodeId),
    /// The viewer's grant is missing or does not verify.
    #[error("this origin serves only the network's relays and granted viewers: {0}")]
    Grant(GrantRefusal),
    /// The origin feeds its most relays on the stream already (the relay tree's fan-out).
    #[error("relay refused: this origin feeds {0} relays on this stream, its most")]
    RelaySlotsFull(usize),
}

/// Who played: a relay, or a viewer with a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A registered relay.
    Relay(NodeId),
    /// A viewer with a grant naming this node.
    Viewer,
}

/// The registered nodes the origin knows, and when it last asked.
#[derive(Debug, Default)]
struct KnownRelays {
    nodes: HashSet<NodeId>,
    fetched: Option<Instant>,
}

/// The origin's play check (see the module docs).
#[derive(Debug)]
pub(crate) struct OriginGate {
    client: CoordinatorClient,
    grants: GrantChecker,
    relays: tokio::sync::Mutex<KnownRelays>,
    /// The relays playing each stream, at most the fan-out.
    pub(crate) slots: std::sync::Arc<crate::origin_slots::OriginSlots>,
}

impl OriginGate {
    /// A gate asking `client` about relays and checking viewers' grants with `grants`.
    pub(crate) fn new(client: CoordinatorClient, grants: GrantChecker) -> Self {
        OriginGate {
            client,
            grants,
            relays: tokio::sync::Mutex::default(),
            slots: std::sync::Arc::default(),
        }
    }

    /// Admits a relay's RTMP play of `stream` from `peer` when the origin feeds fewer relays
    /// on it than its fan-out (the private `origin_slots` module counts them).
    pub(crate) fn take_relay_slot(
        &self,
        stream: &str,
        node: NodeId,
        peer: std::net::SocketAddr,
    ) -> Result<(), OriginRefusal> {
        self.slots
            .take(stream, node, peer, std::time::Instant::now())
            .map_err(|full| OriginRefusal::RelaySlotsFull(full.relays))
    }

    /// Admits a relay (`relay=` token) or a granted viewer (`grant=` token) for `stream`.
    pub(crate) async fn admit(
        &self,
        query: &str,
        stream: &str,
        now_ms: u64,
    ) -> Result<Admission, OriginRefusal> {
        if let Some(token) = relay_token::from_query(query) {
            let node =
                relay_token::verify(token, stream, now_ms).map_err(OriginRefusal::RelayToken)?;
            return if self.is_registered(node).await {
                Ok(Admission::Relay(node))
            } else {
                Err(OriginRefusal::UnknownRelay(node))
            };
        }
        self.grants
            .check(query, stream, now_ms)
            .map(|_| Admission::Viewer)
            .map_err(OriginRefusal::Grant)
    }

    /// Whether `node` is a registered (not deregistered) node, asking the coordinator when it
    /// is not known yet (at most every [`REFRESH_EVERY`]; the last list is kept while the
    /// coordinator is unreachable).
    async fn is_registered(&self, node: NodeId) -> bool {
        let mut known = self.relays.lock().await;
        if known.nodes.contains(&node) {
            return true;
        }
        if known.fetched.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return false;
        }
        known.fetched = Some(Instant::now());
        match self.client.nodes().await {
            Ok(nodes) => {
                known.nodes = nodes
                    .iter()
                    .filter(|record| record.status != "deregistered")
                    .filter_map(|record| record.id.parse().ok())
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot ask the coordinator for its nodes; \
                    a relay it does not know yet is refused");
            }
        }
        known.nodes.contains(&node)
    }
}

/// Asks the coordinator for its public key until it answers, then lets `grants` check
/// viewers' grants with it (an origin started while its coordinator is down), and `slots`
/// admit as many relays per stream as the coordinator's fan-out.
pub(crate) async fn learn_coordinator_key(
    client: CoordinatorClient,
    grants: Option<GrantChecker>,
    slots: Option<std::sync::Arc<crate::origin_slots::OriginSlots>>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match client.coordinator_info().await {
            Ok(info) => {
                if let Some(grants) = &grants {
                    grants.set_key(info.coordinator_key);
                }
                if let (Some(slots), Some(fanout)) = (&slots, info.relay_fanout) {
                    slots.set_cap(usize::try_from(fanout).unwrap_or(usize::MAX));
                }
                tracing::info!("coordinator reached: the origin now checks viewers' grants");
                return;
            }
            Err(error) => tracing::debug!(%error, "the coordinator is still unreachable"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
