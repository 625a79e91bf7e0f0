//! One flat dispatch for the requests HLS players make most: a GET of a playlist, segment, part
//! or init section.
//!
//! Served through [`gated_router`](super::gated_router) such a request passes the node's
//! routers, the play gate's middleware and the media router with its CORS layer, each with its
//! boxed services, before a handler that only looks the bytes up: with a connection per
//! request that stack, not the lookup, was a third of the user time per request.
//! [`MediaFastPath`] sits in front of the whole router instead: it recognises the path itself,
//! runs the same gate check, calls the same lookups, adds the same static CORS headers and
//! wraps the body the same way, and hands every other request (HTTP-FLV, `HEAD`, `OPTIONS`,
//! other routes, paths with percent-escapes) to the router unchanged.
//!
//! [`MediaFastPath::direct`] is the same dispatch for
//! [`streamr_net::http::serve_direct`], which answers these GETs without hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Method, Request, Uri};
use axum::response::Response;
use futures_util::future::{BoxFuture, Either};
use tower::Service;

use super::gate::{self, GateState, Target};
use super::router::{self, HttpState};
use crate::server::PlayGate;

/// What the node applies to every response (its byte counter).
type ResponseMap = Arc<dyn Fn(Response) -> Response + Send + Sync>;

/// A [`tower::Service`] serving HLS GETs directly and every other request with `inner` (the
/// router [`gated_router`](super::gated_router) is part of): see the module docs. A response
/// is the same either way, byte for byte.
#[derive(Clone)]
pub struct MediaFastPath<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> std::fmt::Debug for MediaFastPath<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFastPath").finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Shared {
    gate: GateState,
    state: HttpState,
    map_response: Option<ResponseMap>,
}

impl<S> MediaFastPath<S> {
    /// Serves the HLS GETs of `state`'s streams behind `gate` (the state and gate `inner`'s
    /// [`gated_router`](super::gated_router) was built with), everything else with `inner`.
    pub fn new(inner: S, state: HttpState, gate: PlayGate) -> Self {
        let hub = state.hub().clone();
        let hls = state.live_hls().clone();
        MediaFastPath {
            shared: Arc::new(Shared {
                gate: GateState { gate, hub, hls },
                state,
                map_response: None,
            }),
            inner,
        }
    }

    /// Applies `map` to every response served here, as the layers `inner` has around the media
    /// routes do to theirs (the node's byte counter).
    pub fn with_response_map(
        mut self,
        map: impl Fn(Response) -> Response + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).map_response = Some(Arc::new(map));
        self
    }

    /// The same dispatch for [`streamr_net::http::serve_direct`] (serve this service with it):
    /// it answers the GETs served here, with the same responses (and response map).
    pub fn direct(&self) -> Arc<dyn streamr_net::http::DirectGet> {
        Arc::new(Direct(self.shared.clone()))
    }
}

/// [`MediaFastPath`]'s dispatch for the direct loop.
struct Direct(Arc<Shared>);

impl streamr_net::http::DirectGet for Direct {
    fn get(&self, uri: &Uri, peer: SocketAddr) -> Option<streamr_net::http::DirectResponse> {
        let fast = fast_path(uri.path())?;
        let shared = self.0.clone();
        let uri = uri.clone();
        Some(Box::pin(async move {
            shared.serve(uri.path(), uri.query(), peer, fast).await
        }))
    }
}

/// What a request served here asks for.
enum Fast {
    /// A media path whose app or stream name is invalid: the gate's 400.
    InvalidName(crate::name::NameError),
    /// An HLS file of a stream.
    Hls(Target),
}

/// Whether the fast path serves `request`, and what it asks for. Only GETs of paths the media
/// routes would see as they are: one leading `/` and no percent-escape (escaped paths take
/// the router's longer way, where the gate decodes them as the router does).
fn fast<B>(request: &Request<B>) -> Option<Fast> {
    if request.method() != Method::GET {
        return None;
    }
    fast_path(request.uri().path())
}

/// What a GET of `path` asks the fast path for, if it serves it (see [`fast`]).
fn fast_path(path: &str) -> Option<Fast> {
    if path.starts_with("//") || path.contains('%') {
        return None;
    }
    match gate::target(path)? {
        Err(error) => Some(Fast::InvalidName(error)),
        Ok(Target::Flv(_)) => None,
        Ok(target) => Some(Fast::Hls(target)),
    }
}

impl Shared {
    async fn serve(
        &self,
        path: &str,
        query: Option<&str>,
        peer: SocketAddr,
        fast: Fast,
    ) -> Response {
        let response = match fast {
            Fast::InvalidName(error) => gate::invalid_name(&error),
            Fast::Hls(target) => self.serve_hls(path, query, peer, target).await,
        };
        match &self.map_response {
            Some(map) => map(response),
            None => response,
        }
    }

    async fn serve_hls(
        &self,
        path: &str,
        query: Option<&str>,
        peer: SocketAddr,
        target: Target,
    ) -> Response {
        let gate_query = query.unwrap_or_default();
        let byte_counter = match self.gate.admit(&target, gate_query, peer).await {
            Ok(byte_counter) => byte_counter,
            Err(response) => return response,
        };
        let key = target.key().clone();
        // `/{app}/{file}` is the MPEG-TS playlist; `/{app}/{stream}/{file}` the rest.
        let file = path.rsplit('/').next().unwrap_or_default();
        let three_parts = path.trim_start_matches('/').split('/').nth(2).is_some();
        let mut response = match &target {
            Target::Playlist { alias: true, .. } if gate::alias_uri(&key, gate_query).is_some() => {
                router::playlist(self.state.clone(), key).await
            }
            _ if !three_parts => router::playlist(self.state.clone(), key).await,
            _ => router::stream_subfile(&self.state, key, file, query).await,
        };
        router::add_route_headers(&mut response);
        gate::finish(response, &target, gate_query, byte_counter).await
    }
}

impl<S, B> Service<Request<B>> for MediaFastPath<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(fast) = fast(&request) else {
            return Either::Right(self.inner.call(request));
        };
        let shared = self.shared.clone();
        let peer = gate::peer_of(&request);
        let (parts, _body) = request.into_parts();
        Either::Left(Box::pin(async move {
            let path = parts.uri.path();
            Ok(shared.serve(path, parts.uri.query(), peer, fast).await)
        }))
    }
}
