//! [`WriteClock`]: a deadline on a writer's progress, not on a write's total time.
//!
//! A write that moves no byte for the clock's timeout fails with
//! [`io::ErrorKind::TimedOut`], so a peer that stops reading (a zero TCP window) loses its
//! connection instead of holding it, and what was queued for it, until it closes. A peer that
//! keeps taking bytes, however slowly, is never cut: an endless streamed response lives as long
//! as its reader moves. A write the writer takes at once costs one flag store; only a write that
//! has to wait starts a timer, which then checks the flag every quarter of the timeout (one
//! timer reset per quarter, none per write), so a stalled peer is failed between one timeout and
//! one and a quarter after its last byte moved.
//!
//! The HTTP loop ([`crate::http`]) puts every connection's writes under one
//! ([`HttpLimits::write_timeout`](crate::http::HttpLimits::write_timeout)); a handler that takes
//! its connection over and writes it itself keeps the same deadline by writing under its own
//! clock, built from the same limit: [`WriteClock::poll_write_vectored`] for writes, or
//! [`WriteClock::check`] around any other write-side operation (a `sendfile`, a readiness wait).
//! One clock serves a connection for its whole life: its timer is allocated the first time a
//! write waits, and reused.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Sleep;

/// Checks of the progress flag per timeout: a stalled writer fails between one timeout and
/// one plus a `1 / TICKS` after its last byte moved.
const TICKS: u8 = 4;

/// The progress clock of one byte stream's writes (see the module docs).
#[derive(Debug)]
pub struct WriteClock {
    tick: Duration,
    /// Allocated the first time a write has to wait (most writers never do).
    sleep: Option<Pin<Box<Sleep>>>,
    /// A write moved bytes since the last check.
    moved: bool,
    /// Checks in a row that found no progress.
    idle: u8,
}

impl WriteClock {
    /// A clock failing writes that move nothing for `timeout` (at least a millisecond).
    pub fn new(timeout: Duration) -> Self {
        WriteClock {
            tick: (timeout / u32::from(TICKS)).max(Duration::from_millis(1)),
            sleep: None,
            moved: false,
            idle: 0,
        }
    }

    /// The timeout: how long a write may move nothing (rounded to whole checks).
    pub fn timeout(&self) -> Duration {
        self.tick * u32::from(TICKS)
    }

    /// Passes on `polled`, the result of polling a write-side operation with `cx`, noting
    /// progress (`moved` says whether a ready result moved bytes); a pending one instead fails
    /// with [`io::ErrorKind::TimedOut`] once nothing has moved for the timeout. A ready result
    /// costs a flag store; a pending one arms the clock's timer (allocated the first time).
    pub fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(value)) => {
                if moved(&value) {
                    self.moved = true;
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match self.stalled(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// Called while a write waits: ready with the error once nothing has moved for `TICKS`
    /// checks in a row; otherwise pending, with the timer armed.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let tick = self.tick;
        let sleep = match &mut self.sleep {
            Some(sleep) => sleep,
            None => {
                self.moved = false;
                self.idle = 0;
                self.sleep.insert(Box::pin(tokio::time::sleep(tick)))
            }
        };
        // A timer that ran out while no write waited finds the progress made since, and only
        // starts the count again.
        while sleep.as_mut().poll(cx).is_ready() {
            if std::mem::take(&mut self.moved) {
                self.idle = 0;
            } else {
                self.idle = self.idle.saturating_add(1);
                if self.idle >= TICKS {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client accepted no response bytes for {:?}",
                            tick * u32::from(TICKS)
                        ),
                    ));
                }
            }
            sleep.as_mut().reset(tokio::time::Instant::now() + tick);
        }
        Poll::Pending
    }

    /// Polls a write of `bufs` on `io` under the clock.
    pub fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(io).poll_write_vectored(cx, bufs);
        self.check(cx, polled, |&n| n > 0)
    }

    /// Polls a flush of `io` under the clock (a completed flush counts as progress).
    pub fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(io).poll_flush(cx);
        self.check(cx, polled, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    /// Writes all of `body` on `io` under `clock`, a vectored write at a time.
    async fn write_all<W: AsyncWrite + Unpin>(
        clock: &mut WriteClock,
        io: &mut W,
        mut body: &[u8],
    ) -> io::Result<()> {
        while !body.is_empty() {
            let n = poll_fn(|cx| clock.poll_write_vectored(cx, io, &[IoSlice::new(body)])).await?;
            body = &body[n..];
        }
        poll_fn(|cx| clock.poll_flush(cx, io)).await
    }

    #[tokio::test]
    async fn one_clock_cuts_a_stall_after_earlier_waits_that_moved() {
        let (mut near, mut far) = tokio::io::duplex(16);
        let mut clock = WriteClock::new(Duration::from_millis(200));
        // A first write that waits for a reader taking 16 bytes every 80 ms: not cut.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                far.read_exact(&mut buf).await.expect("read");
            }
            far
        });
        write_all(&mut clock, &mut near, &[1u8; 16 * 9])
            .await
            .expect("the reader keeps up");
        let _far = reader.await.expect("reader");
        // Then the reader stops: the same clock fails the next write within the deadline.
        let started = tokio::time::Instant::now();
        let error = write_all(&mut clock, &mut near, &[2u8; 64])
            .await
            .expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_millis(800), "{waited:?}");
        assert_eq!(clock.timeout(), Duration::from_millis(200));
    }
}
