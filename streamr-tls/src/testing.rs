//! Certificates for tests of the TLS paths: a throwaway certificate authority and server
//! certificates it signs for `localhost` and `127.0.0.1`, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::CertificateFiles;

/// A test certificate authority and the PEM files of the server certificate it last issued.
pub struct TestPki {
    ca_key: KeyPair,
    ca: rcgen::Certificate,
    dir: PathBuf,
    issued: u32,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

/// Why test certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestPkiError {
    /// rcgen failed.
    #[error("generating a test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing a PEM file failed.
    #[error("writing a test certificate: {0}")]
    Write(#[from] std::io::Error),
}

impl TestPki {
    /// A new CA writing into `dir`: `ca.pem` at once, then `cert.pem` and `key.pem` from
    /// [`issue`](Self::issue).
    pub fn new(dir: &Path) -> Result<Self, TestPkiError> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "StreamrP2P test CA");
        let ca = params.self_signed(&ca_key)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(TestPki {
            ca_key,
            ca,
            dir: dir.to_owned(),
            issued: 0,
        })
    }

    /// The CA certificate file (what clients trust).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca.der().to_vec()
    }

    /// The server certificate and key files [`issue`](Self::issue) writes.
    pub fn files(&self) -> CertificateFiles {
        CertificateFiles::new(self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }

    /// Issues a new server certificate for `localhost` and `127.0.0.1` (common name
    /// `server N`), replaces `cert.pem` and `key.pem` with it (each by an atomic rename) and
    /// returns the certificate, DER.
    pub fn issue(&mut self) -> Result<Vec<u8>, TestPkiError> {
        self.issued += 1;
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("server {}", self.issued));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let files = self.files();
        replace(&files.key, key.serialize_pem().as_bytes())?;
        replace(&files.cert, cert.pem().as_bytes())?;
        Ok(cert.der().to_vec())
    }
}

/// Writes `path` by renaming a finished temporary file over it.
fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}

/// The leaf certificate a TLS server at `addr` presents to a rustls client that trusts only
/// `ca` (DER) and expects the name `127.0.0.1`; `None` while the server does not answer or the
/// handshake fails.
pub async fn served_leaf(addr: std::net::SocketAddr, ca: Vec<u8>) -> Option<Vec<u8>> {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca)).ok()?;
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}
