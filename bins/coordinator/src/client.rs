//! A keep-alive HTTP/1.1 client for one coordinator connection.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What went wrong talking to the coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("{method} {path}: {source}")]
    Http {
        /// The request method.
        method: &'static str,
        /// The request path.
        path: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be built.
    #[error("building {method} {path}: {source}")]
    Request {
        /// The request method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The builder's error.
        #[source]
        source: hyper::http::Error,
    },
}

/// One keep-alive connection to a coordinator.
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    bearer: Option<String>,
}

impl HttpClient {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http {
                method: "CONNECT",
                path: String::new(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpClient {
            addr,
            sender,
            bearer: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every later request.
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Sends one request; answers the status and the body as JSON (a JSON string holding the
    /// text when the body is not JSON, `null` when empty).
    pub async fn send(
        &mut self,
        method: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value), ClientError> {
        let (status, bytes) = self.send_raw(method, path, body).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// Sends one request and answers the status and the raw body bytes.
    pub async fn send_raw(
        &mut self,
        method: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), ClientError> {
        let http_error = |source| ClientError::Http {
            method,
            path: path.to_owned(),
            source,
        };
        self.sender.ready().await.map_err(http_error)?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|source| ClientError::Request {
                method,
                path: path.to_owned(),
                source,
            })?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(http_error)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(http_error)?
            .to_bytes();
        Ok((status, bytes))
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Value), ClientError> {
        self.send("GET", path, Vec::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &mut self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(u16, Value), ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send("POST", path, bytes).await
    }
}
