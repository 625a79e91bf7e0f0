//! The TLS side of a server: one reloading certificate, acceptors per protocol.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{CertificateFiles, ReloadingCertificate, TlsError};

/// ALPN for HTTPS servers: HTTP/1.1 (the only HTTP version our servers speak).
pub const HTTP_ALPN: &[&[u8]] = &[b"http/1.1"];
/// No ALPN (RTMPS: encoders and players do not offer any).
pub const NO_ALPN: &[&[u8]] = &[];

/// A server's TLS: the certificate from its files, reloaded without a restart, and acceptors
/// that present it. Cloning shares the certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    certificate: Arc<ReloadingCertificate>,
    provider: Arc<CryptoProvider>,
}

impl ServerTls {
    /// Loads `files` with the *ring* provider; fails when they cannot be used.
    pub fn load(files: CertificateFiles) -> Result<Self, TlsError> {
        // ring rather than aws-lc-rs: no C toolchain or cmake in the build, and the provider
        // the coordinator's PostgreSQL and HTTP clients use too. rustls deprecates it only for
        // lacking post-quantum key exchange, which no RTMP encoder or HLS player offers yet.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(ReloadingCertificate::load(files, provider.clone())?);
        Ok(ServerTls {
            certificate,
            provider,
        })
    }

    /// The certificate in service.
    pub fn certificate(&self) -> &Arc<ReloadingCertificate> {
        &self.certificate
    }

    /// An acceptor presenting the current certificate and offering `alpn`
    /// ([`HTTP_ALPN`], [`NO_ALPN`]). TLS 1.2 and 1.3 with rustls's safe defaults.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(Arc::new(self.server_config(alpn)))
    }

    fn server_config(&self, alpn: &[&[u8]]) -> ServerConfig {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions();
        // The ring provider supports the default versions; fall back to the plain builder
        // (same provider, same versions) rather than fail if that ever changes.
        let builder = match builder {
            Ok(builder) => builder,
            Err(error) => {
                warn!(%error, "TLS: default protocol versions refused; using rustls defaults");
                ServerConfig::builder()
            }
        };
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(self.certificate.clone());
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        config
    }

    /// Checks the files every `interval` (and at once on `SIGHUP`) and puts a changed
    /// certificate in service, until `stop` is cancelled. Call it within a tokio runtime.
    pub fn spawn_reloader(&self, interval: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let certificate = self.certificate.clone();
        // Installed before returning, so a SIGHUP sent once the server answers is never the
        // default action (which ends the process).
        let mut hangups = hangup_signals();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticks.tick() => false,
                    Some(()) = next_hangup(&mut hangups) => true,
                };
                let certificate = certificate.clone();
                // Reading files blocks; keep it off the runtime's worker threads.
                let _ =
                    tokio::task::spawn_blocking(move || certificate.reload_and_log(forced)).await;
            }
        })
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; TLS files are still checked periodically");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

/// The next `SIGHUP`; never resolves without a signal handler.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}
