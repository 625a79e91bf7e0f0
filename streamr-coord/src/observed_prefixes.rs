//! The network prefixes nodes are seen connecting from.
//!
//! A node's prefix for per-prefix and per-operator caps is what the coordinator observes on
//! the connection its heartbeats arrive on (IPv4 /24 or IPv6 /48), never what the node writes
//! in its URLs or a hash of its host name (a loopback address, a node on the coordinator's own
//! host, says nothing and is not recorded). Each prefix is written to storage when a node is
//! first seen on it and then at most once per [`REFRESH_MS`], so heartbeats stay one write.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use streamr_core::SourcePrefixes;

use crate::error::StorageError;
use crate::storage::Storage;

/// A node seen again on the same prefix is written at most this often.
const REFRESH_MS: i64 = 60_000;
/// Nodes remembered at most; a full map is emptied and refills.
const MAX_NODES: usize = 100_000;

/// Which prefix each node was last recorded on, and when.
#[derive(Debug, Default)]
pub(crate) struct ObservedPrefixes {
    recorded: Mutex<HashMap<String, (String, i64)>>,
}

impl ObservedPrefixes {
    /// Notes a heartbeat of `node_id` from `peer` at `now_ms`, writing it to storage when the
    /// prefix is new for the node or its record is older than [`REFRESH_MS`].
    pub(crate) async fn observe(
        &self,
        storage: &dyn Storage,
        node_id: &str,
        peer: IpAddr,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let peer = peer.to_canonical();
        if peer.is_loopback() {
            // A node on the coordinator's own host: its address says nothing of its network.
            return Ok(());
        }
        let prefix = SourcePrefixes::of(peer).wide;
        {
            let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((known, at)) = recorded.get(node_id) {
                if *known == prefix && now_ms.saturating_sub(*at) < REFRESH_MS {
                    return Ok(());
                }
            }
            if recorded.len() >= MAX_NODES {
                recorded.clear();
            }
            recorded.insert(node_id.to_owned(), (prefix.clone(), now_ms));
        }
        storage.record_node_prefix(node_id, &prefix, now_ms).await
    }
}
