//! A TLS listener for axum: handshakes run concurrently, each under a deadline.

use std::fmt::Debug;
use std::io;
use std::time::Duration;

use axum::serve::Listener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Bounds on the TLS handshakes a [`TlsListener`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// A client that has not completed the handshake within this time is dropped (default 10 s).
    pub timeout: Duration,
    /// Most handshakes in progress at once; connections beyond it are closed at once
    /// (default 1024).
    pub max_in_flight: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            timeout: Duration::from_secs(10),
            max_in_flight: 1024,
        }
    }
}

/// Established TLS connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Wraps an [`axum::serve::Listener`] (a `TcpListener`, or one that enforces connection
/// budgets) so every connection it accepts is a TLS connection. Handshakes run in a background
/// task, concurrently and each within [`HandshakeLimits::timeout`], so a client that stalls in
/// the handshake holds up nobody else. Dropping the listener stops that task.
pub struct TlsListener<L: Listener> {
    ready: mpsc::Receiver<(TlsStream<L::Io>, L::Addr)>,
    local_addr: L::Addr,
    task: JoinHandle<()>,
}

impl<L> TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Debug + Sync + 'static,
{
    /// Starts accepting on `inner` and handshaking with `acceptor`.
    pub fn new(inner: L, acceptor: TlsAcceptor, limits: HandshakeLimits) -> io::Result<Self> {
        let local_addr = inner.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let task = tokio::spawn(handshake_loop(inner, acceptor, limits, sender));
        Ok(TlsListener {
            ready,
            local_addr,
            task,
        })
    }
}

impl<L: Listener> Drop for TlsListener<L> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<L: Listener> Debug for TlsListener<L>
where
    L::Addr: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Debug + Sync + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The handshake task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr.clone())
    }
}

async fn handshake_loop<L>(
    mut inner: L,
    acceptor: TlsAcceptor,
    limits: HandshakeLimits,
    ready: mpsc::Sender<(TlsStream<L::Io>, L::Addr)>,
) where
    L: Listener,
    L::Addr: Debug + 'static,
{
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            _ = ready.closed() => break,
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Ok(Some(connection)) = done {
                    if ready.send(connection).await.is_err() {
                        break;
                    }
                }
            }
            (io, peer) = inner.accept() => {
                if handshakes.len() >= limits.max_in_flight {
                    debug!(?peer, limit = limits.max_in_flight, "TLS: too many handshakes in progress; closing");
                    continue;
                }
                let acceptor = acceptor.clone();
                handshakes.spawn(async move {
                    match tokio::time::timeout(limits.timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => Some((stream, peer)),
                        Ok(Err(error)) => {
                            debug!(?peer, %error, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            debug!(?peer, timeout = ?limits.timeout, "TLS handshake timed out");
                            None
                        }
                    }
                });
            }
        }
    }
}
