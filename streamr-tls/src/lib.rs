//! # streamr-tls
//!
//! TLS for StreamrP2P's listeners (RTMPS, HTTPS for the node's HLS and HTTP-FLV, HTTPS for the
//! coordinator), with [rustls](https://docs.rs/rustls) and the *ring* provider.
//!
//! - [`CertificateFiles`] names a PEM certificate chain and its PEM private key.
//! - [`ReloadingCertificate`] serves the certificate loaded from them and swaps in a new one
//!   when the files change ([`ServerTls::spawn_reloader`] checks their modification times
//!   every interval and at once on `SIGHUP`); a bad or half-written pair is refused with a
//!   warning and the previous certificate stays in service.
//! - [`ServerTls`] builds acceptors around that certificate; [`TlsListener`] turns any
//!   [`axum::serve::Listener`] into a TLS one, running handshakes concurrently under a deadline
//!   so a slow client cannot hold up the others.
//!
//! ```no_run
//! use std::time::Duration;
//! use streamr_tls::{CertificateFiles, HandshakeLimits, ServerTls, TlsListener, HTTP_ALPN};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ServerTls::load(CertificateFiles::new("cert.pem", "key.pem"))?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! let _reloader = tls.spawn_reloader(Duration::from_secs(10), stop.clone());
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let listener = TlsListener::new(tcp, tls.acceptor(HTTP_ALPN), HandshakeLimits::default())?;
//! axum::serve(listener, axum::Router::new()).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod certificate;
mod error;
mod listener;
mod server;

pub use certificate::{CertificateFiles, ReloadingCertificate};
pub use error::TlsError;
pub use listener::{HandshakeLimits, TlsListener};
pub use server::{ServerTls, HTTP_ALPN, NO_ALPN};
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;
#[cfg(feature = "testing")]
pub mod testing;
