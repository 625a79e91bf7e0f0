//! The signed heartbeat a node holds for sending again (its answer never came, so the
//! coordinator may or may not have counted its claims), kept on disk beside the identity file
//! so that a restart sends it again instead of losing its claims. Written atomically (a temp
//! file renamed over it), removed once the coordinator's answer settles it, and read back at
//! start only when it is small, well formed and this node's own.

use std::io::Write;
use std::path::{Path, PathBuf};

use streamr_core::{NodeHeartbeat, NodeId, Signed};
use tracing::warn;

/// The largest held heartbeat file read back: a heartbeat names the node's streams and
/// upstreams, a few kilobytes; anything larger is not one of ours.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Where a node keeps its held heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct HeldHeartbeatFile {
    path: PathBuf,
    node: NodeId,
}

impl HeldHeartbeatFile {
    /// The file at `path` for `node`'s heartbeats.
    pub(crate) fn new(path: PathBuf, node: NodeId) -> Self {
        HeldHeartbeatFile { path, node }
    }

    /// The held heartbeat left by an earlier run, if the file holds one of this node's. A file
    /// that cannot be read or holds something else is logged and left alone (nothing is held).
    pub(crate) fn load(&self) -> Option<Signed<NodeHeartbeat>> {
        let size = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                warn!(file = %self.path.display(), %error, "cannot read the held heartbeat");
                return None;
            }
        };
        if size > MAX_FILE_BYTES {
            warn!(file = %self.path.display(), size,
                "the held heartbeat file is too large to be one; ignored");
            return None;
        }
        let held = std::fs::read(&self.path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<Signed<NodeHeartbeat>>(&bytes)
                    .map_err(|error| error.to_string())
            });
        match held {
            Ok(held) if held.body.node_id == self.node => Some(held),
            Ok(held) => {
                warn!(file = %self.path.display(), node = %held.body.node_id,
                    "the held heartbeat file is another node's; ignored");
                None
            }
            Err(error) => {
                warn!(file = %self.path.display(), %error,
                    "the held heartbeat file holds no heartbeat; ignored");
                None
            }
        }
    }

    /// Keeps `held` in the file (a temp file beside it, renamed over it).
    pub(crate) fn store(&self, held: &Signed<NodeHeartbeat>) -> std::io::Result<()> {
        let json = serde_json::to_vec(held).map_err(std::io::Error::other)?;
        let temp = temp_path(&self.path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)
    }

    /// Removes the file (nothing held any more); a missing file is no error.
    pub(crate) fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `path` with `.tmp` added to its name.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::KeyPair;

    fn beat(key: &KeyPair) -> Signed<NodeHeartbeat> {
        Signed::sign(
            NodeHeartbeat {
                node_id: key.node_id(),
                timestamp_ms: 1_000,
                nonce: 7,
                streams: Vec::new(),
                viewers: 0,
                bytes_served: 1_234,
                unattested_bytes: 5,
                upstreams: Vec::new(),
                // Kept with the rest: the copy sent after a restart restates its run's totals.
                claim_totals: Some(streamr_core::ClaimTotals {
                    run: 7,
                    bytes_served: 1_234,
                    unattested_bytes: 5,
                }),
            },
            key,
        )
    }

    #[test]
    fn a_stored_heartbeat_is_loaded_back_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::from_seed([3; 32]);
        let file = HeldHeartbeatFile::new(dir.path().join("node.heartbeat"), key.node_id());
        assert_eq!(file.load(), None);
        file.store(&beat(&key)).unwrap();
        assert_eq!(file.load(), Some(beat(&key)));
        assert!(!temp_path(file.path()).exists());
        file.clear().unwrap();
        assert_eq!(file.load(), None);
        file.clear().unwrap();
    }

    #[test]
    fn another_nodes_damaged_or_oversized_file_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::from_seed([3; 32]);
        let path = dir.path().join("node.heartbeat");
        let file = HeldHeartbeatFile::new(path.clone(), key.node_id());
        HeldHeartbeatFile::new(path.clone(), KeyPair::from_seed([4; 32]).node_id())
            .store(&beat(&KeyPair::from_seed([4; 32])))
            .unwrap();
        assert_eq!(file.load(), None);
        std::fs::write(&path, b"{\"body\":").unwrap();
        assert_eq!(file.load(), None);
        let padded = format!(
            "{}{}",
            serde_json::to_string(&beat(&key)).unwrap(),
            " ".repeat(usize::try_from(MAX_FILE_BYTES).unwrap())
        );
        std::fs::write(&path, padded).unwrap();
        assert_eq!(file.load(), None);
    }
}
