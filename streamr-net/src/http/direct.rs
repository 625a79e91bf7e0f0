//! The direct loop of a plain TCP connection: it reads request heads itself and answers the
//! `GET`s a [`DirectGet`] serves (writing the response head and body in one vectored write),
//! keeping the connection alive between them as hyper would, until a request it does not
//! answer arrives; then hyper serves the rest of the connection, starting with the bytes read.
//!
//! With a connection per request (how most HLS players and load tools fetch segments) hyper's
//! connection set-up, dispatch loop and encoder were most of the user time a request costs.
//! [`connection`] is one connection's future; the listener polls them all in its own task.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::http::Uri;
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use super::head::{self, BodyLength, Framing, Head};
use crate::budget::ConnectionPermit;
use crate::write_clock::WriteClock;

/// A response a [`DirectGet`] is preparing.
pub type DirectResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Answers some `GET`s without hyper (see [`serve_direct`](super::serve_direct)): the
/// response must be the one the router behind it would give, since the same request may reach
/// either (hyper serves a connection after its first request the direct loop leaves to it).
pub trait DirectGet: Send + Sync + 'static {
    /// The response to a `GET` of `uri` (origin form, parsed as hyper parses it) from `peer`,
    /// or `None` to leave the request, and the rest of its connection, to the router.
    fn get(&self, uri: &Uri, peer: SocketAddr) -> Option<DirectResponse>;
}

/// How a connection's direct loop ended.
pub(crate) enum Outcome {
    /// The connection is done (closed by either side, timed out, or shutting down).
    Done,
    /// hyper serves the connection from here, starting with these bytes; the request head
    /// they begin must be complete by the instant given.
    Hyper(Vec<u8>, Instant),
}

/// A connection the direct loop hands to hyper, with the bytes it read.
pub(crate) struct Handoff {
    pub(crate) stream: TcpStream,
    pub(crate) permit: ConnectionPermit,
    pub(crate) peer: SocketAddr,
    pub(crate) read: Vec<u8>,
    /// When the request head `read` begins must be complete (hyper's first head timer).
    pub(crate) head_by: Instant,
    pub(crate) stop: watch::Receiver<bool>,
}

/// [`serve`] on a connection of its own: what hyper is to serve of it, if anything.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connection(
    mut stream: TcpStream,
    permit: ConnectionPermit,
    peer: SocketAddr,
    direct: Arc<dyn DirectGet>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    spawns_on: Handle,
) -> Option<Handoff> {
    let timeouts = (header_read_timeout, write_timeout);
    match serve(&mut stream, peer, &*direct, timeouts, &mut stop, &spawns_on).await {
        Outcome::Done => None,
        Outcome::Hyper(read, head_by) => Some(Handoff {
            stream,
            permit,
            peer,
            read,
            head_by,
            stop,
        }),
    }
}

/// Serves `stream` directly for as long as its requests are ones `direct` answers (see the
/// module docs). A request head must be complete within `header_read_timeout` of the loop
/// waiting for it (the handoff to hyper keeps that deadline), and a response write that the
/// client takes nothing of for `write_timeout` closes the connection; `stop` turning true ends
/// the loop before the next request. `direct`'s answers are polled in `spawns_on`'s context,
/// so what they spawn (a stream's segmenter, an upstream pull) runs on that runtime and lives as
/// long as it, not on the loop's thread.
pub(crate) async fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    direct: &dyn DirectGet,
    (header_read_timeout, write_timeout): (Duration, Duration),
    stop: &mut watch::Receiver<bool>,
    spawns_on: &Handle,
) -> Outcome {
    let mut buf = Vec::new();
    loop {
        let mut deadline = None;
        let head_by = |deadline: &mut Option<Instant>| {
            *deadline.get_or_insert_with(|| Instant::now() + header_read_timeout)
        };
        let (len, uri, close) = loop {
            match head::classify(&buf) {
                Head::Get { len, uri, close } => break (len, uri, close),
                Head::Other => return Outcome::Hyper(buf, head_by(&mut deadline)),
                Head::Partial => {}
            }
            if buf.is_empty() && *stop.borrow() {
                return Outcome::Done;
            }
            let deadline = head_by(&mut deadline);
            buf.reserve(2048);
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                _ = stop.changed(), if buf.is_empty() => return Outcome::Done,
            };
            match read {
                // As hyper: a head not complete in time closes the connection.
                Err(_) | Ok(Err(_)) => return Outcome::Done,
                Ok(Ok(0)) if buf.is_empty() => return Outcome::Done,
                // hyper answers a head cut short as it does today.
                Ok(Ok(0)) => return Outcome::Hyper(buf, deadline),
                Ok(Ok(_)) => {}
            }
        };
        let Some(response) = direct.get(&uri, peer) else {
            return Outcome::Hyper(buf, head_by(&mut deadline));
        };
        buf.drain(..len);
        let response = in_context(spawns_on, response).await;
        match write_response(stream, response, close, write_timeout).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = stream.shutdown().await;
                return Outcome::Done;
            }
            Err(_) => return Outcome::Done,
        }
    }
}

/// `future`, polled in `runtime`'s context: what it spawns runs on `runtime` (its timers and
/// new sockets register there too), wherever it is polled.
async fn in_context<F: Future>(runtime: &Handle, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    poll_fn(|cx| {
        let _entered = runtime.enter();
        future.as_mut().poll(cx)
    })
    .await
}

/// Writes `response` as hyper would to a `GET` (`close`: the request asked to close), failing
/// when the client takes nothing for `write_timeout`, and returns whether the connection stays
/// open.
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    close: bool,
    write_timeout: Duration,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::Empty
    } else {
        match body.size_hint().exact() {
            Some(len) => BodyLength::Known(len),
            None => BodyLength::Unknown,
        }
    };
    let mut head = Vec::with_capacity(320);
    let (framing, last) =
        head::encode_response_head(parts.status, &parts.headers, length, close, &mut head);
    let mut pieces = vec![Bytes::from(head)];
    if framing != Framing::None && length != BodyLength::Empty {
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let Ok(data) = frame.map_err(io::Error::other)?.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if framing == Framing::Chunked {
                pieces.push(Bytes::from(head::chunk_size_line(data.len())));
                pieces.push(data);
                pieces.push(Bytes::from_static(b"\r\n"));
            } else {
                pieces.push(data);
            }
        }
        if framing == Framing::Chunked {
            pieces.push(Bytes::from_static(b"0\r\n\r\n"));
        }
    }
    write_all_vectored(stream, &pieces, write_timeout).await?;
    Ok(!last)
}

/// Writes every piece, in as few `writev` calls as the socket takes, failing when the socket
/// takes nothing for `write_timeout` (a write taken at once starts no timer).
async fn write_all_vectored(
    stream: &mut TcpStream,
    pieces: &[Bytes],
    write_timeout: Duration,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|piece| IoSlice::new(piece)).collect();
    let mut slices = &mut slices[..];
    let mut clock = WriteClock::new(write_timeout);
    while !slices.is_empty() {
        let written = poll_fn(|cx| clock.poll_write_vectored(cx, &mut *stream, &*slices)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}
