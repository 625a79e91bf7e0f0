//! Deadlines on a connection's byte stream that hyper's own timers do not give.
//!
//! - [`WriteDeadline`]: the connection's writes under a [`WriteClock`]: a write that moves no
//!   byte for [`HttpLimits::write_timeout`] fails with [`io::ErrorKind::TimedOut`], so a client
//!   that stops reading (a zero TCP window) loses its connection instead of holding it, and the
//!   response's buffers, until it closes. The deadline is on progress, not on a response's
//!   total time: an endless streamed response lives as long as the client keeps taking bytes
//!   (see [`crate::write_clock`] for its cost and precision).
//! - [`FirstHeadBy`]: a hyper timer that ends the first request head's timer at a given
//!   instant, so a head the direct loop began reading is bounded by the deadline set when it
//!   began, not one deadline in the loop and another in hyper.
//!
//! [`HttpLimits::write_timeout`]: super::HttpLimits::write_timeout

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::write_clock::WriteClock;

/// `inner` with its writes under a [`WriteClock`] (reads go straight through).
pub(crate) struct WriteDeadline<T> {
    inner: T,
    clock: WriteClock,
}

impl<T> WriteDeadline<T> {
    /// Wraps `inner`: a write that moves nothing for `timeout` fails.
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            clock: WriteClock::new(timeout),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.clock.check(cx, polled, |&n| n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.clock.poll_write_vectored(cx, &mut this.inner, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.clock.poll_flush(cx, &mut this.inner)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.clock.check(cx, polled, |_| true)
    }
}

/// hyper's timer for a connection the direct loop hands over: the first sleep hyper asks for
/// (its timer for the first request head) ends no later than `by`; later ones are as asked.
#[derive(Debug)]
pub(crate) struct FirstHeadBy {
    by: Instant,
    spent: AtomicBool,
}

impl FirstHeadBy {
    /// A timer ending the first request head's timer by `by`.
    pub(crate) fn new(by: Instant) -> Self {
        FirstHeadBy {
            by,
            spent: AtomicBool::new(false),
        }
    }
}

impl hyper::rt::Timer for FirstHeadBy {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = if self.spent.swap(true, Ordering::Relaxed) {
            deadline
        } else {
            deadline.min(self.by)
        };
        TokioTimer::new().sleep_until(deadline)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        TokioTimer::new().reset(sleep, new_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_takes_fails_after_the_deadline() {
        let (near, _far) = tokio::io::duplex(16);
        let mut io = WriteDeadline::new(near, Duration::from_millis(200));
        let started = tokio::time::Instant::now();
        let error = io.write_all(&[0u8; 64]).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_millis(600), "{waited:?}");
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_taking_bytes_is_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut io = WriteDeadline::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(80)).await;
                match far.read(&mut buf).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        // Reads of 16 bytes, 80 ms apart: about a second, five deadlines.
        let body: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        let started = tokio::time::Instant::now();
        io.write_all(&body).await.expect("the reader keeps up");
        assert!(started.elapsed() > Duration::from_millis(400));
        io.shutdown().await.expect("shutdown");
        drop(io);
        assert_eq!(reader.await.expect("reader"), body);
    }

    #[tokio::test]
    async fn the_first_head_timer_ends_by_the_cap_and_later_ones_as_asked() {
        use hyper::rt::Timer as _;
        let now = Instant::now();
        let timer = FirstHeadBy::new(now + Duration::from_millis(100));
        let first = timer.sleep_until(now + Duration::from_secs(10));
        let second = timer.sleep_until(now + Duration::from_millis(300));
        first.await;
        let waited = now.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_millis(300), "{waited:?}");
        second.await;
        assert!(now.elapsed() >= Duration::from_millis(300));
    }
}
