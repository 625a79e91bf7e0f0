//! Batched vectored writes of shared byte buffers.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most buffers handed to one `writev` call (well under every platform's `IOV_MAX`).
const MAX_SLICES_PER_WRITE: usize = 64;

/// A queue of shared buffers (chunked frames, session output) written with vectored writes.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    buffers: VecDeque<Bytes>,
    queued_bytes: usize,
}

impl WriteQueue {
    /// Queues `bytes` behind what is already queued.
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued_bytes = self.queued_bytes.saturating_add(bytes.len());
            self.buffers.push_back(bytes);
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Writes everything queued, up to 64 buffers per system call, and returns the byte count.
    pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> io::Result<usize> {
        let mut written_total = 0usize;
        while !self.buffers.is_empty() {
            let mut written = {
                // On the stack: no allocation per write.
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                for (slot, buffer) in slices.iter_mut().zip(&self.buffers) {
                    *slot = IoSlice::new(buffer);
                }
                let count = self.buffers.len().min(MAX_SLICES_PER_WRITE);
                writer.write_vectored(&slices[..count]).await?
            };
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer accepts no more bytes",
                ));
            }
            written_total = written_total.saturating_add(written);
            self.queued_bytes = self.queued_bytes.saturating_sub(written);
            while written > 0 {
                let Some(front) = self.buffers.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    self.buffers.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        writer.flush().await?;
        Ok(written_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_every_buffer_in_order_despite_short_writes() {
        // A duplex pipe with a tiny buffer forces partial vectored writes.
        let (mut client, mut server) = tokio::io::duplex(7);
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for i in 0..200u8 {
            let chunk = vec![i; usize::from(i % 13) + 1];
            expected.extend_from_slice(&chunk);
            queue.push(Bytes::from(chunk));
        }
        let total = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 5];
            while got.len() < total {
                let n = tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                    .await
                    .unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        assert_eq!(queue.write_all(&mut client).await.unwrap(), total);
        assert!(queue.is_empty());
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
