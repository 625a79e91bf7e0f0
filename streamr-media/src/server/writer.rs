//! Batched vectored writes of shared byte buffers.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use streamr_net::WriteClock;
use tokio::io::AsyncWrite;

/// Most buffers handed to one `writev` call (well under every platform's `IOV_MAX`).
const MAX_SLICES_PER_WRITE: usize = 64;

/// Room a player's per-batch vectors keep between batches: a batch of 200 ms carries about 20
/// frames. A player's first batch (the GOP cache, 150 frames and more) grows them far beyond;
/// kept at that size they would cost every player some 10 KiB for good.
pub(crate) const KEEP_BETWEEN_BATCHES: usize = 32;

/// Gives back the room `items` grew to beyond [`KEEP_BETWEEN_BATCHES`] once it is empty (after
/// a player's first batch, or one that caught up): one reallocation then, none per batch.
pub(crate) fn release_burst_room<T>(items: &mut Vec<T>) {
    if items.is_empty() && items.capacity() > 2 * KEEP_BETWEEN_BATCHES {
        items.shrink_to(KEEP_BETWEEN_BATCHES);
    }
}

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

    /// Gives back the room a burst grew the queue to, once it is written (see
    /// [`release_burst_room`]).
    pub(crate) fn release_burst_room(&mut self) {
        if self.buffers.is_empty() && self.buffers.capacity() > 2 * KEEP_BETWEEN_BATCHES {
            self.buffers.shrink_to(KEEP_BETWEEN_BATCHES);
        }
    }

    /// Writes what the writer takes at once, without waiting: returns the bytes written and
    /// whether everything queued went out and was flushed. When it did not, the caller waits
    /// with [`WriteQueue::write_all`] (under its write clock).
    ///
    /// This is the common case of a player keeping up: its socket takes the batch in one
    /// `writev`, and neither a write deadline timer nor a shutdown waiter is set up for it.
    /// The writer is polled with a no-op waker, so a `Pending` registers nothing that matters:
    /// the waiting write polls it again with the task's waker.
    pub(crate) fn write_now<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> io::Result<(usize, bool)> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut written_total = 0usize;
        while !self.buffers.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                for (slot, buffer) in slices.iter_mut().zip(&self.buffers) {
                    *slot = IoSlice::new(buffer);
                }
                let count = self.buffers.len().min(MAX_SLICES_PER_WRITE);
                match Pin::new(&mut *writer).poll_write_vectored(&mut cx, &slices[..count]) {
                    Poll::Ready(written) => written?,
                    Poll::Pending => return Ok((written_total, false)),
                }
            };
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer accepts no more bytes",
                ));
            }
            written_total = written_total.saturating_add(written);
            self.advance(written);
        }
        match Pin::new(writer).poll_flush(&mut cx) {
            Poll::Ready(flushed) => flushed.map(|()| (written_total, true)),
            Poll::Pending => Ok((written_total, false)),
        }
    }

    /// Drops `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) {
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

    /// Writes everything queued, up to 64 buffers per system call, and returns the byte count;
    /// each write and the flush wait under `clock`: fails with [`io::ErrorKind::TimedOut`] once
    /// the writer has taken nothing for the clock's timeout, however long the whole takes while
    /// bytes keep moving. A write the writer takes at once does not touch the clock's timer.
    pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        clock: &mut WriteClock,
    ) -> io::Result<usize> {
        let mut written_total = 0usize;
        while !self.buffers.is_empty() {
            let written = {
                // On the stack: no allocation per write.
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                for (slot, buffer) in slices.iter_mut().zip(&self.buffers) {
                    *slot = IoSlice::new(buffer);
                }
                let count = self.buffers.len().min(MAX_SLICES_PER_WRITE);
                let slices = &slices[..count];
                std::future::poll_fn(|cx| clock.poll_write_vectored(cx, &mut *writer, slices))
                    .await?
            };
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer accepts no more bytes",
                ));
            }
            written_total = written_total.saturating_add(written);
            self.advance(written);
        }
        std::future::poll_fn(|cx| clock.poll_flush(cx, &mut *writer)).await?;
        Ok(written_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A clock no test write comes near.
    fn clock() -> WriteClock {
        WriteClock::new(Duration::from_secs(10))
    }

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
        assert_eq!(
            queue.write_all(&mut client, &mut clock()).await.unwrap(),
            total
        );
        assert!(queue.is_empty());
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn write_now_takes_what_fits_and_write_all_the_rest_in_order() {
        let (mut client, mut server) = tokio::io::duplex(100);
        let mut queue = WriteQueue::default();
        queue.push(Bytes::from(vec![1u8; 60]));
        queue.push(Bytes::from(vec![2u8; 30]));
        // Everything fits: written at once, nothing left, no waiting.
        assert_eq!(queue.write_now(&mut client).unwrap(), (90, true));
        assert!(queue.is_empty());
        // The pipe holds 10 more bytes: the rest stays queued.
        queue.push(Bytes::from(vec![3u8; 25]));
        assert_eq!(queue.write_now(&mut client).unwrap(), (10, false));
        assert_eq!(queue.queued_bytes(), 15);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 115];
            tokio::io::AsyncReadExt::read_exact(&mut server, &mut got)
                .await
                .unwrap();
            got
        });
        assert_eq!(
            queue.write_all(&mut client, &mut clock()).await.unwrap(),
            15
        );
        let got = reader.await.unwrap();
        let mut expected = vec![1u8; 60];
        expected.extend([2u8; 30]);
        expected.extend([3u8; 25]);
        assert_eq!(got, expected);
    }
}
