//! A certificate and key read from PEM files, reloaded when the files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

use crate::TlsError;

/// A PEM certificate chain (leaf first) and the PEM private key that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl CertificateFiles {
    /// The pair `cert`, `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads and checks both files: the key must be usable and belong to the certificate.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_pem = read(&self.cert, "certificate")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| pem_error(&self.cert, "certificate", error.to_string()))?;
        if chain.is_empty() {
            return Err(pem_error(
                &self.cert,
                "certificate",
                "no CERTIFICATE block".into(),
            ));
        }
        let key_pem = read(&self.key, "private key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|error| pem_error(&self.key, "private key", error.to_string()))?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|source| TlsError::Key {
                path: self.key.clone(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified
            .keys_match()
            .map_err(|source| TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                source,
            })?;
        Ok(certified)
    }

    /// What identifies the files' current contents cheaply: modification time and length of
    /// each (`None` when either cannot be read).
    fn stamp(&self) -> Option<FilesStamp> {
        let of = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        };
        Some(FilesStamp {
            cert: of(&self.cert)?,
            key: of(&self.key)?,
        })
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, detail: String) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        detail,
    }
}

/// Modification time and length of the certificate and the key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FilesStamp {
    cert: (SystemTime, u64),
    key: (SystemTime, u64),
}

/// The certificate in service and what was last seen on disk.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files as they were when `key` was loaded.
    stamp: Option<FilesStamp>,
    /// The files as they were when a reload last failed (so one bad pair warns once).
    refused: Option<FilesStamp>,
}

/// The certificate a TLS server presents, read from [`CertificateFiles`] and replaced by
/// [`reload_if_changed`](ReloadingCertificate::reload_if_changed) when they change. New
/// handshakes get the new certificate; established connections keep theirs.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
}

impl ReloadingCertificate {
    /// Loads `files` now; fails if they cannot be used.
    pub fn load(files: CertificateFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let key = Arc::new(files.load(&provider)?);
        Ok(ReloadingCertificate {
            files,
            provider,
            loaded: RwLock::new(Loaded {
                key,
                stamp,
                refused: None,
            }),
        })
    }

    /// The files this certificate comes from.
    pub fn files(&self) -> &CertificateFiles {
        &self.files
    }

    /// The certificate chain in service now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.loaded.read() {
            Ok(loaded) => loaded.key.clone(),
            Err(poisoned) => poisoned.into_inner().key.clone(),
        }
    }

    /// Reloads the files when their modification time or length changed since the last load.
    /// Returns whether a new certificate is now in service; on an error the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamp = self.files.stamp();
        {
            let loaded = match self.loaded.read() {
                Ok(loaded) => loaded,
                Err(poisoned) => poisoned.into_inner(),
            };
            if stamp.is_some() && (stamp == loaded.stamp || stamp == loaded.refused) {
                return Ok(false);
            }
        }
        self.reload_with_stamp(stamp).map(|()| true)
    }

    /// Reloads the files whatever their modification times say (on `SIGHUP`).
    pub fn reload(&self) -> Result<(), TlsError> {
        self.reload_with_stamp(self.files.stamp())
    }

    fn reload_with_stamp(&self, stamp: Option<FilesStamp>) -> Result<(), TlsError> {
        let result = self.files.load(&self.provider);
        let mut loaded = match self.loaded.write() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        match result {
            Ok(key) => {
                loaded.key = Arc::new(key);
                loaded.stamp = stamp;
                loaded.refused = None;
                Ok(())
            }
            Err(error) => {
                loaded.refused = stamp;
                Err(error)
            }
        }
    }

    /// [`reload_if_changed`](Self::reload_if_changed) (or [`reload`](Self::reload) when
    /// `forced`), logging the outcome.
    pub(crate) fn reload_and_log(&self, forced: bool) {
        let result = if forced {
            self.reload().map(|()| true)
        } else {
            self.reload_if_changed()
        };
        match result {
            Ok(true) => info!(
                cert = %self.files.cert.display(),
                key = %self.files.key.display(),
                "TLS certificate reloaded"
            ),
            Ok(false) => {}
            Err(error) => {
                warn!(%error, "TLS certificate not reloaded; the previous one stays in service")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
