//! An HTTP/1.1 server loop for an axum [`Router`](axum::Router) with deadlines and a connection budget.
//!
//! `axum::serve` reads request headers for as long as the client likes and accepts every
//! connection, so a client sending half a request per socket can hold every file handle. This
//! loop admits each connection through a [`ConnectionBudget`] (refused ones get a `503` and are
//! closed at once), closes a connection whose request head is not complete within
//! [`HttpLimits::header_read_timeout`] (this also bounds idle keep-alive connections), fails a
//! request whose body stalls for [`HttpLimits::body_timeout`], and closes a connection whose
//! client takes no response byte for [`HttpLimits::write_timeout`]. Handlers see the peer address as
//! `ConnectInfo<SocketAddr>`, and may take the connection over through the
//! [`TakeConnection`] extension. [`serve_direct`] answers some `GET`s on plain TCP connections
//! without hyper (see [`DirectGet`]).

mod deadline;
mod direct;
pub mod head;
mod replay;

pub use direct::{DirectGet, DirectResponse};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::{Layer, Service, ServiceExt};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};
use tracing::{debug, info, warn};

use crate::budget::{BudgetLimits, ConnectionBudget, ConnectionPermit};
use crate::takeover::{Detachable, TakeConnection};

/// Deadlines and connection limits of an HTTP listener. Every deadline must be at least
/// [`MIN_DEADLINE`](crate::MIN_DEADLINE): none of them can be turned off with zero
/// ([`HttpLimits::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// A request head (request line and headers) must arrive within this time of the
    /// connection waiting for it, including between keep-alive requests (default 10 s).
    pub header_read_timeout: Duration,
    /// A request body that delivers nothing for this long fails the request (default 30 s).
    pub body_timeout: Duration,
    /// A response write that the client takes no byte of for this long closes the connection
    /// (default 30 s): a client that stops reading holds its connection and the response's
    /// buffers no longer. The deadline is on progress, not on the whole response, so a long
    /// stream lives as long as its client keeps reading; a stalled one is closed between this
    /// and a quarter more after its last byte moved. A handler that takes its connection over
    /// ([`TakeConnection`]) writes under deadlines of its own.
    pub write_timeout: Duration,
    /// Most connections open at once (default 4096).
    pub max_connections: usize,
    /// Most connections open at once from one client address, IPv6 by /64 (default 64).
    pub max_connections_per_client: usize,
    /// On shutdown, open connections get this long to finish (default 5 s).
    pub shutdown_grace: Duration,
    /// Accept loops of a [`serve_direct`] listener (default 1), each on a thread of its own
    /// (a single-threaded runtime) polling the connections it accepted in one task: a loop
    /// hands no work between runtime workers and answers the direct `GET`s on one core at a
    /// time (at the 80–90 µs of CPU per HLS player-second measured at 232 kbit/s, one core is
    /// over 10 000 players); more loops spread them over the cores. At least one loop runs.
    pub accept_loops: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_client: 64,
            shutdown_grace: Duration::from_secs(5),
            accept_loops: 1,
        }
    }
}

/// A deadline of [`HttpLimits`] (or [`serve_tls`]'s handshake deadline) too short to serve
/// with: every connection would time out at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "HTTP {setting} of {value:?} is too short: it must be at least {min:?}, or every connection \
     times out at once",
    min = crate::MIN_DEADLINE
)]
pub struct InvalidLimits {
    /// The setting (`write_timeout`, ...).
    pub setting: &'static str,
    /// Its value.
    pub value: Duration,
}

impl From<InvalidLimits> for io::Error {
    fn from(invalid: InvalidLimits) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, invalid)
    }
}

/// `Err` naming `setting` when `value` is below [`crate::MIN_DEADLINE`].
fn at_least_min(setting: &'static str, value: Duration) -> Result<(), InvalidLimits> {
    if value < crate::MIN_DEADLINE {
        return Err(InvalidLimits { setting, value });
    }
    Ok(())
}

impl HttpLimits {
    /// Checks that every deadline is at least [`crate::MIN_DEADLINE`] (a zero one would close
    /// every connection at once; none of them means "off"). [`serve`], [`serve_direct`] and
    /// [`serve_tls`] refuse to start with limits that fail this, with an
    /// [`io::ErrorKind::InvalidInput`] error. A zero [`shutdown_grace`](Self::shutdown_grace)
    /// is valid: connections are dropped at once on shutdown.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        at_least_min("header_read_timeout", self.header_read_timeout)?;
        at_least_min("body_timeout", self.body_timeout)?;
        at_least_min("write_timeout", self.write_timeout)
    }

    /// A fresh connection budget with these limits.
    pub fn budget(&self) -> ConnectionBudget {
        ConnectionBudget::new(BudgetLimits {
            max_connections: self.max_connections,
            max_per_client: self.max_connections_per_client,
        })
    }
}

/// What a refused connection is told before it is closed.
const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 38\r\nconnection: close\r\n\r\n{\"error\":\"too many open connections\"}\n";

/// A service the loop serves: an axum [`Router`](axum::Router), or a service in front of one (requests
/// arrive with their bodies under the body deadline).
pub trait HttpService:
    Service<
        axum::http::Request<TimeoutBody<Incoming>>,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<
            axum::http::Request<TimeoutBody<Incoming>>,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves `router` (a [`Router`](axum::Router) or an [`HttpService`] in front of one) on `listener` within
/// `limits`, counting connections in `budget`, until `shutdown` completes; then stops
/// accepting and gives open connections [`HttpLimits::shutdown_grace`] to finish. Limits that
/// fail [`HttpLimits::validate`] are refused at once ([`io::ErrorKind::InvalidInput`]).
pub async fn serve(
    listener: TcpListener,
    router: impl HttpService,
    budget: ConnectionBudget,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with(listener, router, budget, limits, None, shutdown).await
}

/// The hyper service of a connection from `peer` to `router` (a clone of it): each request
/// can take its connection over (HTTP-FLV streams its own response).
macro_rules! service_for {
    ($router:expr, $peer:expr) => {{
        let router = $router.clone();
        let peer = $peer;
        move |take: TakeConnection| {
            TowerToHyperService::new(router.map_request(
                move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(take.clone());
                    request
                },
            ))
        }
    }};
}

/// Like [`serve`], the `GET`s `direct` answers served by a loop of this crate's own instead of
/// hyper: it reads each request head (within [`HttpLimits::header_read_timeout`], at most
/// [`head::MAX_DIRECT_HEAD`] bytes), writes `direct`'s response as hyper would (byte for byte
/// but the `date`; under [`HttpLimits::write_timeout`]), keeps the connection alive as hyper
/// would, and hands the connection to hyper, with the bytes read, at the first request `direct`
/// does not answer. A head the loop began reading keeps its deadline in hyper: however a slow
/// head is split between the two, it is complete within one `header_read_timeout` of the
/// connection waiting for it. The listener has [`HttpLimits::accept_loops`] accept loops, each
/// on a thread of its own with a single-threaded Tokio runtime (`direct`'s answers are polled
/// there, in the caller's runtime context, so the tasks they spawn run on the caller's
/// runtime), and a loop's connections are polled in its one task, not a task each: no
/// connection's work moves between the caller's runtime workers. `direct` must answer without blocking or heavy
/// work, since a slow answer holds up the loop's other connections. Connections handed to
/// hyper move to the caller's runtime (registered there) and get a task each as in [`serve`].
/// Past the shutdown grace the loops drop the direct connections still open. TLS connections
/// are not served directly ([`serve_tls`]).
pub async fn serve_direct(
    listener: TcpListener,
    router: impl HttpService,
    direct: Arc<dyn DirectGet>,
    budget: ConnectionBudget,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    limits.validate()?;
    let router = RequestBodyTimeoutLayer::new(limits.body_timeout).layer(router);
    let http = http1_builder(&limits);
    // Each loop registers the listener with its own runtime.
    let listener = listener.into_std()?;
    // The direct connections watch this to stop keeping alive, and hold it while open.
    let (stop_direct, stopping) = watch::channel(false);
    // Each loop holds a sender; the channel closes when every loop has ended.
    let (loop_alive, mut loops_ended) = tokio::sync::mpsc::channel::<()>(1);
    // Past the grace, the loops drop their direct connections (closing them).
    let (abandon, abandoned) = watch::channel(false);
    let main = tokio::runtime::Handle::current();
    for _ in 0..limits.accept_loops.max(1) {
        let setup = DirectLoop {
            listener: listener.try_clone()?,
            router: router.clone(),
            http: http.clone(),
            direct: direct.clone(),
            budget: budget.clone(),
            header_read_timeout: limits.header_read_timeout,
            write_timeout: limits.write_timeout,
            stopping: stopping.clone(),
            abandoned: abandoned.clone(),
            main: main.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let alive = loop_alive.clone();
        std::thread::Builder::new()
            .name("http-direct".into())
            .spawn(move || {
                runtime.block_on(direct_accept_loop(setup));
                drop(alive);
            })?;
    }
    drop(loop_alive);
    drop(listener);
    drop(stopping);
    shutdown.await;
    info!(
        open = stop_direct.receiver_count(),
        "HTTP server stopping; waiting for open connections"
    );
    let _ = stop_direct.send(true);
    let all_closed = async move {
        let _ = loops_ended.recv().await;
        stop_direct.closed().await;
    };
    if tokio::time::timeout(limits.shutdown_grace, all_closed)
        .await
        .is_err()
    {
        debug!("HTTP connections still open after the shutdown grace; leaving them");
        let _ = abandon.send(true);
    }
    Ok(())
}

/// What one of [`serve_direct`]'s accept loops needs.
struct DirectLoop<R> {
    listener: std::net::TcpListener,
    router: R,
    http: http1::Builder,
    direct: Arc<dyn DirectGet>,
    budget: ConnectionBudget,
    header_read_timeout: Duration,
    write_timeout: Duration,
    stopping: watch::Receiver<bool>,
    /// Turns true (or closes) when the loop is to drop its connections.
    abandoned: watch::Receiver<bool>,
    /// The runtime that serves the connections handed to hyper.
    main: tokio::runtime::Handle,
}

/// One of [`serve_direct`]'s accept loops (all on the same listener, each on its own thread
/// and runtime): the connections it accepts are polled in its own task. A connection handed to
/// hyper gets a task of its own on the main runtime. Ends, once `stopping` turns true, when its
/// connections have ended or gone to hyper, or when `abandoned` says so.
async fn direct_accept_loop<R>(setup: DirectLoop<R>)
where
    R: Service<
            axum::http::Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    R::Future: Send + 'static,
{
    let DirectLoop {
        listener,
        router,
        http,
        direct,
        budget,
        header_read_timeout,
        write_timeout,
        mut stopping,
        mut abandoned,
        main,
    } = setup;
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%error, "an HTTP accept loop could not register its listener");
            return;
        }
    };
    let mut inline = FuturesUnordered::new();
    // What the direct answers spawn runs there too, not on this loop's thread.
    let spawns_on = main.clone();
    let to_hyper = move |handoff: direct::Handoff| {
        let direct::Handoff {
            stream,
            permit,
            peer,
            read,
            head_by,
            mut stop,
        } = handoff;
        let service = service_for!(router, peer);
        let mut http = http.clone();
        // The head the loop began reading keeps the deadline it had there.
        http.timer(deadline::FirstHeadBy::new(head_by.into_std()));
        // The connection moves to the main runtime, registered with its driver: this loop's
        // thread polls only the direct connections.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%peer, %error, "HTTP connection ended");
                return;
            }
        };
        main.spawn(async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    debug!(%peer, %error, "HTTP connection ended");
                    return;
                }
            };
            let (io, take) = Detachable::new(stream, permit, peer);
            let io = replay::Replay::new(read, io);
            let io = deadline::WriteDeadline::new(io, write_timeout);
            let connection = http.serve_connection(TokioIo::new(io), service(take));
            tokio::pin!(connection);
            if *stop.borrow() {
                connection.as_mut().graceful_shutdown();
            }
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                debug!(%peer, %error, "HTTP connection ended");
            }
        });
    };
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            Some(handoff) = inline.next(), if !inline.is_empty() => {
                if let Some(handoff) = handoff {
                    to_hyper(handoff);
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let Some((stream, peer, permit)) = admit(&budget, accepted).await else {
            continue;
        };
        inline.push(direct::connection(
            stream,
            permit,
            peer,
            direct.clone(),
            header_read_timeout,
            write_timeout,
            stopping.clone(),
            spawns_on.clone(),
        ));
    }
    drop(listener);
    drop(stopping);
    let drain = async {
        while let Some(handoff) = inline.next().await {
            if let Some(handoff) = handoff {
                to_hyper(handoff);
            }
        }
    };
    tokio::select! {
        () = drain => {}
        _ = abandoned.wait_for(|abandon| *abandon) => {}
    }
}

/// Like [`serve`], over TLS: each admitted connection first completes a handshake with
/// `acceptor`, within `handshake_timeout`, in its own task (a client stalled in the handshake
/// holds up nobody and still counts against the budget until it is dropped). A
/// `handshake_timeout` below [`crate::MIN_DEADLINE`] is refused like invalid `limits`.
pub async fn serve_tls(
    listener: TcpListener,
    router: impl HttpService,
    budget: ConnectionBudget,
    limits: HttpLimits,
    tls: TlsAcceptor,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with(
        listener,
        router,
        budget,
        limits,
        Some((tls, handshake_timeout)),
        shutdown,
    )
    .await
}

async fn serve_with(
    listener: TcpListener,
    router: impl HttpService,
    budget: ConnectionBudget,
    limits: HttpLimits,
    tls: Option<(TlsAcceptor, Duration)>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    limits.validate()?;
    if let Some((_, handshake_timeout)) = &tls {
        at_least_min("TLS handshake timeout", *handshake_timeout)?;
    }
    let router = RequestBodyTimeoutLayer::new(limits.body_timeout).layer(router);
    let http = http1_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Some((stream, peer, permit)) = admit(&budget, accepted).await else {
            continue;
        };
        let router = router.clone();
        // Each request can take its connection over (HTTP-FLV streams its own response).
        let service = move |take: TakeConnection| {
            TowerToHyperService::new(router.map_request(
                move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(take.clone());
                    request
                },
            ))
        };
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let (io, take) = Detachable::new(stream, permit, peer);
                    let io = deadline::WriteDeadline::new(io, write_timeout);
                    watcher
                        .watch(http.serve_connection(TokioIo::new(io), service(take)))
                        .await
                }
                Some((acceptor, deadline)) => {
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let (io, take) = Detachable::new(stream, permit, peer);
                            let io = deadline::WriteDeadline::new(io, write_timeout);
                            watcher
                                .watch(http.serve_connection(TokioIo::new(io), service(take)))
                                .await
                        }
                        Ok(Err(error)) => {
                            debug!(%peer, %error, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(error) = served {
                debug!(%peer, %error, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    info!(
        open = graceful.count(),
        "HTTP server stopping; waiting for open connections"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("HTTP connections still open after the shutdown grace; leaving them");
    }
    Ok(())
}

/// hyper's HTTP/1 settings for connections within `limits`.
fn http1_builder(limits: &HttpLimits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    http
}

/// Admits what `listener.accept()` gave through `budget` (a refused connection is told why
/// and closed) and turns Nagle's algorithm off on it. A failed accept (an aborted handshake,
/// running out of file handles: transient) is logged and waited out for 10 ms.
async fn admit(
    budget: &ConnectionBudget,
    accepted: io::Result<(TcpStream, SocketAddr)>,
) -> Option<(TcpStream, SocketAddr, ConnectionPermit)> {
    let (stream, peer) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            warn!(%error, "accepting an HTTP connection failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            return None;
        }
    };
    let permit = match budget.try_admit(peer.ip()) {
        Ok(permit) => permit,
        Err(refusal) => {
            debug!(%peer, %refusal, "refusing HTTP connection");
            refuse(stream);
            return None;
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "could not disable Nagle's algorithm");
    }
    Some((stream, peer, permit))
}

/// Tells a refused client why, without waiting for it, and closes the connection.
fn refuse(stream: TcpStream) {
    // A fresh socket's send buffer takes this short answer at once; if not, the close alone
    // tells the client.
    let _ = stream.try_write(REFUSED_RESPONSE);
}
