//! Taking a connection over from the HTTP loop, for a handler that streams its response itself.
//!
//! A long-lived media response (HTTP-FLV) sent through hyper costs a body frame, an encoder pass
//! and a flush per chunk. [`http::serve`](crate::http::serve) hands every request a
//! [`TakeConnection`] extension: a handler that has parsed and authorised the request may
//! [`TakeConnection::take`] the raw byte stream (plain TCP or TLS) with its budget permit, and
//! write the response head and body on it directly. hyper then sees a closed connection: what it
//! writes afterwards (the handler's placeholder response) is discarded and its reads end.

use std::any::Any;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::ConnectionPermit;

/// A connection's byte stream, plain or TLS.
pub trait RawIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The stream as [`Any`], to reach the socket under it: a handler may send a plain TCP
    /// connection's response with calls only a socket has (`sendfile`).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> RawIo for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A connection taken over from the HTTP loop: its byte stream, positioned after the request
/// head, and its place in the connection budget (held until this is dropped).
pub struct RawConnection {
    /// The byte stream: the response head is the next thing the client expects.
    pub io: Box<dyn RawIo>,
    /// The client's address.
    pub peer: SocketAddr,
    _permit: Option<ConnectionPermit>,
}

impl RawConnection {
    /// The plain TCP socket, when the connection is one (not TLS).
    pub fn tcp_mut(&mut self) -> Option<&mut tokio::net::TcpStream> {
        // On the boxed stream itself, not on the box (which is a `RawIo` too).
        (*self.io).as_any_mut().downcast_mut()
    }
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

struct Slot {
    io: Option<Box<dyn RawIo>>,
    permit: Option<ConnectionPermit>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    match slot.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Request extension through which a handler takes its connection over (see the module docs).
#[derive(Clone)]
pub struct TakeConnection {
    slot: Arc<Mutex<Slot>>,
    peer: SocketAddr,
}

impl fmt::Debug for TakeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TakeConnection {
    /// Takes the connection; `None` if it was taken already. Only a request that hyper has read
    /// completely (no body, no pipelined request behind it) may be taken over: bytes hyper
    /// buffered past the request head are not handed over.
    pub fn take(&self) -> Option<RawConnection> {
        let mut slot = lock(&self.slot);
        let io = slot.io.take()?;
        Some(RawConnection {
            io,
            peer: self.peer,
            _permit: slot.permit.take(),
        })
    }
}

/// The byte stream hyper serves: the connection until a handler takes it, then a sink that
/// discards writes and reads end-of-stream.
pub(crate) struct Detachable {
    slot: Arc<Mutex<Slot>>,
    vectored: bool,
}

impl Detachable {
    /// Wraps `io`, keeping `permit` with it, and returns the handle for handlers.
    pub(crate) fn new<T: RawIo>(
        io: T,
        permit: ConnectionPermit,
        peer: SocketAddr,
    ) -> (Detachable, TakeConnection) {
        let vectored = io.is_write_vectored();
        let slot = Arc::new(Mutex::new(Slot {
            io: Some(Box::new(io)),
            permit: Some(permit),
        }));
        (
            Detachable {
                slot: slot.clone(),
                vectored,
            },
            TakeConnection { slot, peer },
        )
    }
}

impl AsyncRead for Detachable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match lock(&self.slot).io.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Detachable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.slot).io.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.slot).io.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.slot).io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.slot).io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{BudgetLimits, ConnectionBudget};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_taken_connection_leaves_hyper_a_sink_and_keeps_its_permit() {
        let budget = ConnectionBudget::new(BudgetLimits {
            max_connections: 4,
            max_per_client: 4,
        });
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let permit = budget.try_admit(peer.ip()).unwrap();
        let (client, server) = tokio::io::duplex(64);
        let (mut wrapped, handle) = Detachable::new(server, permit, peer);
        let mut raw = handle.take().expect("first take");
        assert!(handle.take().is_none(), "taken once");
        // hyper's writes vanish and its reads end.
        assert_eq!(wrapped.write(b"ignored").await.unwrap(), 7);
        assert_eq!(wrapped.read(&mut [0u8; 8]).await.unwrap(), 0);
        drop(wrapped);
        assert_eq!(
            budget.stats().open,
            1,
            "the permit moved with the connection"
        );
        raw.io.write_all(b"mine").await.unwrap();
        let mut client = client;
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"mine");
        drop(raw);
        assert_eq!(budget.stats().open, 0);
    }
}
