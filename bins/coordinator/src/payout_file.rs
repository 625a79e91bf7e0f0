//! A durable payout sink: an append-only file of transfers that survives a crash and can be
//! shared by every replica on one host.
//!
//! Each line records one transfer: `NODE_ID CUMULATIVE_NET TRANSFERRED REPLICA`. A payout takes
//! an exclusive `flock` on the file, reads what the node has been paid so far and appends a line
//! only for the difference up to the item's cumulative total, then syncs the file before it
//! confirms. A payout repeated after a crash, or sent by two replicas at once, therefore pays
//! nothing the second time. A line cut short by a crash was never confirmed and is dropped
//! before the next append.
//!
//! It stands in for a chain or a payment provider in tests and single-host demos; a deployment
//! plugs its own [`PayoutSink`] into `streamr_coord::Coordinator::with_payout_sink`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use streamr_core::{NodeId, PayoutConfirmation, PayoutItem, PayoutSink};

/// Why the payout file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayoutFileError {
    /// Opening, locking, reading, writing or syncing the file failed.
    #[error("payout file {path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A complete line does not hold a transfer.
    #[error("payout file {path}: line {line} is not `NODE CUMULATIVE TRANSFERRED REPLICA`")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// One transfer recorded in the payout file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The node paid.
    pub node_id: String,
    /// The node's paid total after this transfer.
    pub cumulative_net: u64,
    /// What this transfer moved.
    pub transferred: u64,
    /// The replica that sent it.
    pub replica: String,
}

/// Pays by appending transfers to a file; see the module documentation.
#[derive(Debug, Clone)]
pub struct FilePayoutSink {
    path: PathBuf,
    replica: String,
}

impl FilePayoutSink {
    /// A sink writing to `path` (created on the first payout) on behalf of `replica`.
    pub fn new(path: impl Into<PathBuf>, replica: impl Into<String>) -> Self {
        FilePayoutSink {
            path: path.into(),
            // The replica name is one field of a space-separated line.
            replica: replica.into().replace(char::is_whitespace, "_"),
        }
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> PayoutFileError + '_ {
        move |source| PayoutFileError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn pay_locked(&self, item: &PayoutItem) -> Result<PayoutConfirmation, PayoutFileError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(self.io("opening"))?;
        // Released when `file` is closed, also when the process dies.
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| self.io("locking")(std::io::Error::from(e)))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(self.io("reading"))?;
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        if complete < text.len() {
            // A line cut short by a crash: it was never synced and confirmed.
            file.set_len(complete as u64)
                .map_err(self.io("dropping a torn line"))?;
            file.seek(SeekFrom::End(0)).map_err(self.io("seeking"))?;
        }
        let node = item.node_id.to_string();
        let already = paid_totals(&self.path, text.get(..complete).unwrap_or_default())?
            .get(&node)
            .copied()
            .unwrap_or(0);
        let transferred = item.cumulative_net.saturating_sub(already);
        if transferred > 0 {
            let line = format!(
                "{node} {} {transferred} {}\n",
                item.cumulative_net, self.replica
            );
            file.write_all(line.as_bytes())
                .map_err(self.io("appending"))?;
            file.sync_data().map_err(self.io("syncing"))?;
        }
        Ok(PayoutConfirmation {
            node_id: item.node_id,
            cumulative_net: already.max(item.cumulative_net),
            transferred,
        })
    }
}

impl PayoutSink for FilePayoutSink {
    fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String> {
        self.pay_locked(item).map_err(|e| e.to_string())
    }
}

/// Every complete transfer line in `text` (the contents of the file at `path`).
fn parse(path: &Path, text: &str) -> Result<Vec<Transfer>, PayoutFileError> {
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            let malformed = || PayoutFileError::Malformed {
                path: path.to_owned(),
                line: index + 1,
            };
            let mut fields = line.split(' ');
            let (Some(node), Some(cumulative), Some(transferred), Some(replica), None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(malformed());
            };
            node.parse::<NodeId>().map_err(|_| malformed())?;
            Ok(Transfer {
                node_id: node.to_owned(),
                cumulative_net: cumulative.parse().map_err(|_| malformed())?,
                transferred: transferred.parse().map_err(|_| malformed())?,
                replica: replica.to_owned(),
            })
        })
        .collect()
}

/// The paid total per node: the highest cumulative total any of its transfers reached.
fn paid_totals(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, PayoutFileError> {
    let mut totals = BTreeMap::new();
    for transfer in parse(path, text)? {
        let total = totals.entry(transfer.node_id).or_insert(0);
        *total = transfer.cumulative_net.max(*total);
    }
    Ok(totals)
}

/// Every complete transfer in the payout file at `path`, in the order they were made (an absent
/// file holds none).
pub fn read_transfers(path: &Path) -> Result<Vec<Transfer>, PayoutFileError> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_string(&mut text)
                .map_err(|source| PayoutFileError::Io {
                    path: path.to_owned(),
                    action: "reading",
                    source,
                })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PayoutFileError::Io {
                path: path.to_owned(),
                action: "opening",
                source,
            })
        }
    }
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    parse(path, text.get(..complete).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::KeyPair;

    fn item(node: &KeyPair, net: u64, cumulative_net: u64) -> PayoutItem {
        PayoutItem {
            node_id: node.node_id(),
            gross: net,
            fixed_fee: 0,
            proportional_fee: 0,
            net,
            cumulative_net,
        }
    }

    #[test]
    fn a_repeated_payout_transfers_nothing() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("payouts");
        let node = KeyPair::from_seed([3; 32]);
        let mut a = FilePayoutSink::new(&path, "a");
        let mut b = FilePayoutSink::new(&path, "b");
        assert_eq!(a.pay(&item(&node, 10, 10)).expect("pay").transferred, 10);
        assert_eq!(b.pay(&item(&node, 10, 10)).expect("repeat").transferred, 0);
        assert_eq!(b.pay(&item(&node, 5, 15)).expect("next").transferred, 5);
        let transfers = read_transfers(&path).expect("read");
        assert_eq!(transfers.iter().map(|t| t.transferred).sum::<u64>(), 15);
        assert_eq!(transfers[1].replica, "b");
    }

    #[test]
    fn a_torn_last_line_is_dropped_before_the_next_transfer() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("payouts");
        let node = KeyPair::from_seed([4; 32]);
        let mut sink = FilePayoutSink::new(&path, "a");
        sink.pay(&item(&node, 10, 10)).expect("pay");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        write!(file, "{} 20 1", node.node_id()).expect("torn write");
        assert_eq!(read_transfers(&path).expect("read").len(), 1);
        assert_eq!(sink.pay(&item(&node, 10, 20)).expect("pay").transferred, 10);
        let transfers = read_transfers(&path).expect("read");
        assert_eq!(transfers.len(), 2, "{transfers:?}");
    }

    #[test]
    fn an_unwritable_path_refuses_the_payout() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("missing").join("payouts");
        let node = KeyPair::from_seed([5; 32]);
        let error = FilePayoutSink::new(&path, "a")
            .pay(&item(&node, 1, 1))
            .expect_err("no directory");
        assert!(error.contains("opening"), "{error}");
    }
}
