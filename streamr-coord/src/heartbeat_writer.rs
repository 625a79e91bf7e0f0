//! Group commit for heartbeats: concurrent requests hand their verified writes to one task,
//! which stores whatever has queued up in a single transaction, so a burst of heartbeats
//! costs one durable commit instead of one each. Every request still waits for its own
//! commit before it is answered.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::StorageError;
use crate::storage::{HeartbeatWrite, Storage, StorageResult};

/// Heartbeats committed together at most.
const MAX_BATCH: usize = 512;
/// Heartbeats waiting for the writer at most; senders wait beyond that (backpressure).
const QUEUE: usize = 4096;

type Pending = (HeartbeatWrite, oneshot::Sender<StorageResult<u64>>);

/// The handle requests use to have a heartbeat written.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatWriter {
    queue: mpsc::Sender<Pending>,
}

impl HeartbeatWriter {
    /// Starts the writer task on the current runtime.
    pub(crate) fn spawn(storage: Arc<dyn Storage>) -> Self {
        let (queue, mut receiver) = mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (writes, replies): (Vec<HeartbeatWrite>, Vec<_>) = batch.drain(..).unzip();
                match storage.record_heartbeats(&writes).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StorageError::Batch {
                                detail: message.clone(),
                            }));
                        }
                    }
                }
            }
        });
        HeartbeatWriter { queue }
    }

    /// Queues a write and waits until it is committed (or refused).
    pub(crate) async fn write(&self, heartbeat: HeartbeatWrite) -> StorageResult<u64> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((heartbeat, reply))
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        answer.await.map_err(|_| StorageError::WriterStopped)?
    }
}
