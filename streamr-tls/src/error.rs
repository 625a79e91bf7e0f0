//! What can go wrong loading a certificate and its key.

use std::path::PathBuf;

/// Why a certificate/key pair could not be loaded or put in service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM, or holds no item of the expected kind.
    #[error("the {what} file {path} holds no usable PEM {what}: {detail}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// The private key is of a kind rustls cannot sign with.
    #[error("the private key in {path} cannot be used: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The private key does not belong to the certificate (for example while the two files are
    /// being replaced one after the other).
    #[error("the private key in {key} does not match the certificate in {cert}: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}
