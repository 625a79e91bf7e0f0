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
use tokio::sync::watch;
use tokio::time::Instant;

use super::head::{self, BodyLength, Framing, Head};
use crate::budget::ConnectionPermit;

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
    /// hyper serves the connection from here, starting with these bytes.
    Hyper(Vec<u8>),
}

/// A connection the direct loop hands to hyper, with the bytes it read.
pub(crate) struct Handoff {
    pub(crate) stream: TcpStream,
    pub(crate) permit: ConnectionPermit,
    pub(crate) peer: SocketAddr,
    pub(crate) read: Vec<u8>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// [`serve`] on a connection of its own: what hyper is to serve of it, if anything.
pub(crate) async fn connection(
    mut stream: TcpStream,
    permit: ConnectionPermit,
    peer: SocketAddr,
    direct: Arc<dyn DirectGet>,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> Option<Handoff> {
    match serve(&mut stream, peer, &*direct, header_read_timeout, &mut stop).await {
        Outcome::Done => None,
        Outcome::Hyper(read) => Some(Handoff {
            stream,
            permit,
            peer,
            read,
            stop,
        }),
    }
}

/// Serves `stream` directly for as long as its requests are ones `direct` answers (see the
/// module docs). A request head must be complete within `header_read_timeout` of the loop
/// waiting for it; `stop` turning true ends the loop before the next request.
pub(crate) async fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    direct: &dyn DirectGet,
    header_read_timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut buf = Vec::new();
    loop {
        let mut deadline = None;
        let (len, uri, close) = loop {
            match head::classify(&buf) {
                Head::Get { len, uri, close } => break (len, uri, close),
                Head::Other => return Outcome::Hyper(buf),
                Head::Partial => {}
            }
            if buf.is_empty() && *stop.borrow() {
                return Outcome::Done;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + header_read_timeout);
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
                Ok(Ok(0)) => return Outcome::Hyper(buf),
                Ok(Ok(_)) => {}
            }
        };
        let Some(response) = direct.get(&uri, peer) else {
            return Outcome::Hyper(buf);
        };
        buf.drain(..len);
        let response = response.await;
        match write_response(stream, response, close).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = stream.shutdown().await;
                return Outcome::Done;
            }
            Err(_) => return Outcome::Done,
        }
    }
}

/// Writes `response` as hyper would to a `GET` (`close`: the request asked to close) and
/// returns whether the connection stays open.
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    close: bool,
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
    write_all_vectored(stream, &pieces).await?;
    Ok(!last)
}

/// Writes every piece, in as few `writev` calls as the socket takes.
async fn write_all_vectored(stream: &mut TcpStream, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|piece| IoSlice::new(piece)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}
