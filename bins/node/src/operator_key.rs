//! The operator key file behind `--operator-key`, read again at every registration and at every
//! heartbeat interval, so that a node picks up a rotated key without a restart: once an
//! operator rotates its key (`streamr operator-rotation`) and puts the new key file in place of
//! the old one, the node registers again with the new key's membership proof and is grouped
//! under its operator again. A membership the coordinator refuses as signed by a retired key is
//! logged as an error naming the file and what to do; the node keeps serving meanwhile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use streamr_client::client::{ClientError, CoordinatorClient, NodeAdvert};
use streamr_core::{KeyPair, NodeId, OperatorMembership, UNNAMED_OPERATOR};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::identity::{self, IdentityError};

/// The coordinator's error code for a membership signed by a key a rotation retired.
const KEY_RETIRED: &str = "operator_key_retired";

/// The operator key file and what it held when last read.
#[derive(Debug)]
pub(crate) struct OperatorKeyFile {
    path: PathBuf,
    operator: String,
    node: NodeId,
    /// The file's content (trimmed) when last read, or why it could not be read: a change of
    /// either is acted on (and logged) once.
    last: Result<String, std::io::ErrorKind>,
}

impl OperatorKeyFile {
    /// Loads the operator key kept in `path` (created on first start, as the identity is) and
    /// signs `node`'s membership under `operator` with it.
    pub(crate) fn open(
        path: &Path,
        operator: &str,
        node: NodeId,
    ) -> Result<(Self, OperatorMembership), IdentityError> {
        let key = identity::load_or_create(path)?;
        let membership = OperatorMembership::sign(&key, operator, &node);
        let file = OperatorKeyFile {
            path: path.to_owned(),
            operator: operator.to_owned(),
            node,
            last: Ok(hex::encode(key.seed())),
        };
        Ok((file, membership))
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again: `Ok(Some(membership))` signed by the key it holds when its content
    /// changed since the last read, `Ok(None)` when it did not. A file that cannot be read or
    /// holds no key is an error once per change (the node keeps the membership it has).
    pub(crate) fn changed(&mut self) -> Result<Option<OperatorMembership>, IdentityError> {
        let read = std::fs::read_to_string(&self.path)
            .map(|text| text.trim().to_owned())
            .map_err(|error| error.kind());
        if read == self.last {
            return Ok(None);
        }
        self.last = read.clone();
        let text = read.map_err(|kind| IdentityError::Io {
            path: self.path.clone(),
            source: kind.into(),
        })?;
        let key = KeyPair::from_seed_hex(&text).map_err(|_| IdentityError::Malformed {
            path: self.path.clone(),
        })?;
        Ok(Some(OperatorMembership::sign(
            &key,
            &self.operator,
            &self.node,
        )))
    }

    /// Takes the membership of a key the file holds now into `advert` when the file changed;
    /// logs (and otherwise ignores) a file that cannot be read. Whether it changed.
    pub(crate) fn refresh(&mut self, advert: &mut NodeAdvert) -> bool {
        match self.changed() {
            Ok(Some(membership)) => {
                info!(
                    file = %self.path.display(),
                    operator_key = %membership.operator_key,
                    "the operator key file holds another key; registering with it"
                );
                advert.operator_membership = Some(membership);
                true
            }
            Ok(None) => false,
            Err(error) => {
                warn!(%error, "cannot read the operator key file again; keeping the key read before");
                false
            }
        }
    }

    /// Logs, as an error, that the coordinator refused this file's key as retired by a
    /// rotation (`refusal`), and what the operator does about it.
    pub(crate) fn log_retired(&self, refusal: &ClientError) {
        error!(
            file = %self.path.display(),
            operator = %self.operator,
            %refusal,
            "the operator key in {} was retired by a rotation of operator {:?}: this node is \
             not counted among the operator's nodes (it is paid as its own operator) until the \
             file holds the new key. Copy the new key file made by `streamr operator-rotation` \
             over {}; the node registers with it at its next heartbeat, without a restart",
            self.path.display(),
            self.operator,
            self.path.display(),
        );
    }
}

/// Whether `error` is the coordinator's refusal of a membership by a retired operator key.
pub(crate) fn key_retired(error: &ClientError) -> bool {
    error.code() == Some(KEY_RETIRED)
}

/// `advert` as the node's own operator: no operator name, no membership. What a node whose
/// operator key was retired registers as until its key file holds the new key.
pub(crate) fn as_own_operator(advert: &NodeAdvert) -> NodeAdvert {
    NodeAdvert {
        operator: UNNAMED_OPERATOR.to_owned(),
        operator_membership: None,
        ..advert.clone()
    }
}

/// Once registered: reads the operator key file every `interval` until `stop`, and registers
/// the node again (`advert` with the new key's membership) whenever its content changed; a
/// registration without an answer is tried again at the next interval.
pub(crate) async fn follow(
    client: CoordinatorClient,
    node: KeyPair,
    mut advert: NodeAdvert,
    mut file: OperatorKeyFile,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut pending = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        pending |= file.refresh(&mut advert);
        if !pending {
            continue;
        }
        match client.register_node(&node, &advert).await {
            Ok(_) => {
                pending = false;
                info!(
                    file = %file.path().display(),
                    "registered again with the operator key file's new key"
                );
            }
            Err(error) if key_retired(&error) => {
                // Nothing to gain by asking again before the file changes.
                pending = false;
                file.log_retired(&error);
            }
            Err(error) if error.status().is_some_and(|s| s.is_client_error()) => {
                pending = false;
                error!(%error, file = %file.path().display(),
                    "the coordinator refused the operator key file's new key");
            }
            Err(error) => {
                debug!(%error, "registering with the new operator key failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, key: &KeyPair) -> PathBuf {
        let path = dir.join("operator.key");
        std::fs::write(&path, format!("{}\n", hex::encode(key.seed()))).unwrap();
        path
    }

    #[test]
    fn a_replaced_key_file_is_a_new_membership_once() {
        let dir = tempfile::tempdir().unwrap();
        let node = KeyPair::from_seed([1; 32]).node_id();
        let (old, new) = (KeyPair::from_seed([2; 32]), KeyPair::from_seed([3; 32]));
        let path = key_file(dir.path(), &old);
        let (mut file, first) = OperatorKeyFile::open(&path, "acme", node).unwrap();
        assert_eq!(first.operator_key, old.operator_key());
        assert_eq!(file.changed().unwrap(), None);
        // The same key written again (another line ending) is no change.
        std::fs::write(&path, hex::encode(old.seed())).unwrap();
        assert_eq!(file.changed().unwrap(), None);
        key_file(dir.path(), &new);
        let membership = file.changed().unwrap().expect("a new membership");
        assert_eq!(membership.operator_key, new.operator_key());
        membership.verify("acme", &node).unwrap();
        assert_eq!(file.changed().unwrap(), None);
    }

    #[test]
    fn a_missing_or_damaged_file_is_an_error_once_and_the_key_back_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let node = KeyPair::from_seed([1; 32]).node_id();
        let key = KeyPair::from_seed([2; 32]);
        let path = key_file(dir.path(), &key);
        let (mut file, _) = OperatorKeyFile::open(&path, "acme", node).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.changed(), Err(IdentityError::Io { .. })));
        assert_eq!(file.changed().unwrap(), None);
        std::fs::write(&path, "half a key").unwrap();
        assert!(matches!(
            file.changed(),
            Err(IdentityError::Malformed { .. })
        ));
        assert_eq!(file.changed().unwrap(), None);
        key_file(dir.path(), &key);
        let membership = file.changed().unwrap().expect("the key again");
        assert_eq!(membership.operator_key, key.operator_key());
    }
}
