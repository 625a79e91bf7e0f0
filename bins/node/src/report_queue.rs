//! The origin's durable queue of segment-hash reports: every segment the origin cuts is written
//! to an append-only journal on disk before it is sent, and leaves the queue only once the
//! coordinator accepted it. A coordinator outage (or an origin crash) therefore loses no
//! report; they are delivered in order when the coordinator is back.
//!
//! Reports are queued with the sequence number the origin's segmenter gave them, per *run* (one
//! run per stream and process, and a new one whenever the segmenter's numbering starts over).
//! When the first report of a run is delivered, the run is placed on the stream's chain: it
//! continues after the newest segment the coordinator holds, so an origin restart (or a standby
//! origin taking over) extends the stream's chain instead of colliding with it. That placement
//! is journaled too, so a crash never moves a run that was already partly delivered.
//!
//! [`ReportJournal`] is the pure state (records in, state out); [`DurableQueue`] writes the
//! records to the journal file.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most reports kept; beyond it the oldest are dropped (and counted). At one segment every
/// 4 s this is more than two days of outage.
pub(crate) const MAX_QUEUED: usize = 50_000;

/// One segment report waiting for the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueuedReport {
    /// Position in the queue (increasing, never reused).
    pub(crate) id: u64,
    /// The stream (its name on the origin).
    pub(crate) stream: String,
    /// The run the segment belongs to.
    pub(crate) run: u64,
    /// The segmenter's sequence number within the run.
    pub(crate) local_sequence: u64,
    /// BLAKE3 hash of the segment, hex.
    pub(crate) hash: String,
    /// When the segment was cut (unix ms).
    pub(crate) published_ms: u64,
    /// The LL-HLS (fMP4) segment's hashes, when that rendition is on. Journals written before
    /// it existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ll: Option<streamr_core::LlSegmentHashes>,
}

/// A run's place on its stream's chain: chain sequence = local sequence + `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunPlacement {
    /// Added to the run's local sequence numbers.
    pub(crate) offset: i64,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// A report was queued.
    Queued(QueuedReport),
    /// The coordinator accepted (or permanently refused) report `id`.
    Done { id: u64 },
    /// A run was placed on its stream's chain.
    Placed {
        stream: String,
        run: u64,
        offset: i64,
    },
    /// A run's placement was withdrawn (the chain moved on; it is placed again).
    Unplaced { stream: String, run: u64 },
}

/// The queue's state, rebuilt from journal records.
#[derive(Debug, Default)]
pub(crate) struct ReportJournal {
    pending: VecDeque<QueuedReport>,
    placements: BTreeMap<(String, u64), RunPlacement>,
    next_id: u64,
    dropped: u64,
}

impl ReportJournal {
    fn apply(&mut self, record: Record) {
        match record {
            Record::Queued(report) => {
                self.next_id = self.next_id.max(report.id.saturating_add(1));
                self.pending.push_back(report);
                while self.pending.len() > MAX_QUEUED {
                    self.pending.pop_front();
                    self.dropped = self.dropped.saturating_add(1);
                }
            }
            Record::Done { id } => {
                if self.pending.front().is_some_and(|front| front.id == id) {
                    self.pending.pop_front();
                } else {
                    self.pending.retain(|report| report.id != id);
                }
            }
            Record::Placed {
                stream,
                run,
                offset,
            } => {
                self.placements
                    .insert((stream, run), RunPlacement { offset });
            }
            Record::Unplaced { stream, run } => {
                self.placements.remove(&(stream, run));
            }
        }
    }

    /// The oldest report not yet delivered.
    pub(crate) fn front(&self) -> Option<&QueuedReport> {
        self.pending.front()
    }

    /// Reports waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Reports dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Where `run` of `stream` sits on the chain, once placed.
    pub(crate) fn placement(&self, stream: &str, run: u64) -> Option<RunPlacement> {
        self.placements.get(&(stream.to_owned(), run)).copied()
    }

    /// The records that rebuild this state: pending reports and the placements they use.
    fn compacted(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .placements
            .iter()
            .filter(|((stream, run), _)| {
                self.pending
                    .iter()
                    .any(|report| &report.stream == stream && report.run == *run)
            })
            .map(|((stream, run), placement)| Record::Placed {
                stream: stream.clone(),
                run: *run,
                offset: placement.offset,
            })
            .collect();
        records.extend(self.pending.iter().cloned().map(Record::Queued));
        records
    }
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportQueueError {
    /// Reading, writing or syncing the journal failed.
    #[error("segment report journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded (cannot happen for these types).
    #[error("segment report journal {path}: encoding a record: {source}")]
    Encode {
        /// The journal file.
        path: PathBuf,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The journal file and the state it holds.
#[derive(Debug)]
pub(crate) struct DurableQueue {
    path: PathBuf,
    file: File,
    state: ReportJournal,
    /// Lines in the file; the file is compacted when it holds many more than the state needs.
    lines: usize,
}

impl DurableQueue {
    /// Opens the journal at `path` (created when missing), replays it and compacts it. A line
    /// that does not parse (a write cut short by a crash) is skipped with a warning.
    pub(crate) fn open(path: &Path) -> Result<DurableQueue, ReportQueueError> {
        let io = |source| ReportQueueError::Io {
            path: path.to_owned(),
            source,
        };
        let mut state = ReportJournal::default();
        match File::open(path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Record>(&line) {
                        Ok(record) => state.apply(record),
                        Err(error) => tracing::warn!(
                            journal = %path.display(),
                            line = number + 1,
                            %error,
                            "skipping an unreadable segment report record"
                        ),
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        let file = Self::rewrite(path, &state)?;
        let lines = state.compacted().len();
        if state.len() > 0 {
            tracing::info!(
                journal = %path.display(),
                reports = state.len(),
                "segment reports from before the restart are queued for the coordinator"
            );
        }
        Ok(DurableQueue {
            path: path.to_owned(),
            file,
            state,
            lines,
        })
    }

    /// Writes `state`'s compacted records to a fresh file and swaps it in atomically.
    fn rewrite(path: &Path, state: &ReportJournal) -> Result<File, ReportQueueError> {
        let io = |source| ReportQueueError::Io {
            path: path.to_owned(),
            source,
        };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut text = String::new();
        for record in state.compacted() {
            text.push_str(&encode(path, &record)?);
        }
        let mut file = File::create(&temporary).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)?;
        OpenOptions::new().append(true).open(path).map_err(io)
    }

    /// Appends `record` (synced to disk when `sync`) and applies it.
    fn append(&mut self, record: Record, sync: bool) -> Result<(), ReportQueueError> {
        let io = |source| ReportQueueError::Io {
            path: self.path.clone(),
            source,
        };
        let line = encode(&self.path, &record)?;
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if sync {
            self.file.sync_data().map_err(io)?;
        }
        self.state.apply(record);
        self.lines = self.lines.saturating_add(1);
        if self.lines > 2 * self.state.len() + 1_000 {
            self.file = Self::rewrite(&self.path, &self.state)?;
            self.lines = self.state.compacted().len();
        }
        Ok(())
    }

    /// Queues a report of segment `local_sequence` of `run`; synced before it returns.
    pub(crate) fn push(
        &mut self,
        stream: &str,
        run: u64,
        local_sequence: u64,
        hash: String,
        ll: Option<streamr_core::LlSegmentHashes>,
        published_ms: u64,
    ) -> Result<(), ReportQueueError> {
        let report = QueuedReport {
            id: self.state.next_id,
            stream: stream.to_owned(),
            run,
            local_sequence,
            hash,
            published_ms,
            ll,
        };
        self.append(Record::Queued(report), true)
    }

    /// Report `id` left the queue (delivered, or refused for good). Not synced: after a crash
    /// it is sent again, which the coordinator accepts as the same report.
    pub(crate) fn done(&mut self, id: u64) -> Result<(), ReportQueueError> {
        self.append(Record::Done { id }, false)
    }

    /// Places `run` of `stream` on the chain; synced, so a crash never moves it.
    pub(crate) fn place(
        &mut self,
        stream: &str,
        run: u64,
        offset: i64,
    ) -> Result<(), ReportQueueError> {
        let record = Record::Placed {
            stream: stream.to_owned(),
            run,
            offset,
        };
        self.append(record, true)
    }

    /// Withdraws `run`'s placement: its next report is placed after the chain's newest segment.
    pub(crate) fn unplace(&mut self, stream: &str, run: u64) -> Result<(), ReportQueueError> {
        let record = Record::Unplaced {
            stream: stream.to_owned(),
            run,
        };
        self.append(record, true)
    }

    /// The queue's state.
    pub(crate) fn state(&self) -> &ReportJournal {
        &self.state
    }
}

fn encode(path: &Path, record: &Record) -> Result<String, ReportQueueError> {
    let mut line = serde_json::to_string(record).map_err(|source| ReportQueueError::Encode {
        path: path.to_owned(),
        source,
    })?;
    line.push('\n');
    Ok(line)
}

/// Where a run whose first undelivered segment is `local_sequence` goes on a chain whose
/// newest segment is `newest` (`None`: an empty chain keeps the segmenter's numbering). `None`
/// when the numbers do not fit.
pub(crate) fn placement_after(newest: Option<i64>, local_sequence: u64) -> Option<i64> {
    let local = i64::try_from(local_sequence).ok()?;
    match newest {
        None => Some(0),
        Some(newest) => newest.checked_add(1)?.checked_sub(local),
    }
}

/// The chain sequence of `report` under `placement`; `None` when it would not be a valid
/// (non-negative) sequence number.
pub(crate) fn chain_sequence(report: &QueuedReport, placement: RunPlacement) -> Option<u64> {
    let local = i64::try_from(report.local_sequence).ok()?;
    u64::try_from(local.checked_add(placement.offset)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> String {
        hex::encode([n; 32])
    }

    #[test]
    fn reports_survive_a_restart_in_order_and_delivered_ones_do_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.jsonl");
        let mut queue = DurableQueue::open(&path).unwrap();
        for sequence in 0..5 {
            queue
                .push("show", 7, sequence, hash(sequence as u8), None, 1_000)
                .unwrap();
        }
        queue.place("show", 7, 40).unwrap();
        let first = queue.state().front().unwrap().id;
        queue.done(first).unwrap();
        drop(queue);

        let queue = DurableQueue::open(&path).unwrap();
        let sequences: Vec<u64> = queue
            .state()
            .pending
            .iter()
            .map(|r| r.local_sequence)
            .collect();
        assert_eq!(sequences, vec![1, 2, 3, 4]);
        assert_eq!(
            queue.state().placement("show", 7),
            Some(RunPlacement { offset: 40 })
        );
        // New reports get ids after the old ones even though the old ones were compacted.
        let mut queue = queue;
        queue.push("show", 8, 0, hash(9), None, 2_000).unwrap();
        let ids: Vec<u64> = queue.state().pending.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.jsonl");
        let mut queue = DurableQueue::open(&path).unwrap();
        queue.push("show", 1, 0, hash(1), None, 1).unwrap();
        drop(queue);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"queued\":{\"id\":1,\"str").unwrap();
        drop(file);
        let queue = DurableQueue::open(&path).unwrap();
        assert_eq!(queue.state().len(), 1);
    }

    #[test]
    fn a_run_continues_after_the_newest_segment_on_the_chain() {
        assert_eq!(placement_after(None, 3), Some(0));
        assert_eq!(placement_after(Some(41), 0), Some(42));
        assert_eq!(placement_after(Some(41), 5), Some(37));
        let report = QueuedReport {
            id: 0,
            stream: "show".into(),
            run: 1,
            local_sequence: 0,
            hash: hash(0),
            published_ms: 0,
            ll: None,
        };
        assert_eq!(
            chain_sequence(&report, RunPlacement { offset: 42 }),
            Some(42)
        );
        assert_eq!(chain_sequence(&report, RunPlacement { offset: -1 }), None);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let mut journal = ReportJournal::default();
        for id in 0..(MAX_QUEUED as u64 + 3) {
            journal.apply(Record::Queued(QueuedReport {
                id,
                stream: "s".into(),
                run: 0,
                local_sequence: id,
                hash: String::new(),
                published_ms: 0,
                ll: None,
            }));
        }
        assert_eq!(journal.len(), MAX_QUEUED);
        assert_eq!(journal.dropped(), 3);
        assert_eq!(journal.front().map(|r| r.id), Some(3));
    }
}
