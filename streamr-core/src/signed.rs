//! A message together with the ed25519 signature over its canonical encoding.

use serde::{Deserialize, Serialize};

use crate::error::SignatureError;
use crate::identity::{verify_one, KeyPair, SignatureBytes};

/// A message with a deterministic canonical byte encoding (see [`crate::canonical`]).
pub trait CanonicalMessage {
    /// The exact bytes a signature over this message covers, domain tag first.
    fn canonical_bytes(&self) -> Vec<u8>;
}

/// A message and its signer's signature over [`CanonicalMessage::canonical_bytes`].
///
/// In JSON: `{"body": {...}, "signature": "<128 hex chars>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The signed message.
    pub body: T,
    /// The signature over the body's canonical encoding.
    pub signature: SignatureBytes,
}

impl<T: CanonicalMessage> Signed<T> {
    /// Signs `body` with `key`.
    pub fn sign(body: T, key: &KeyPair) -> Self {
        let signature = key.sign(&body.canonical_bytes());
        Self { body, signature }
    }

    /// Checks the signature against the public key bytes of the expected signer.
    pub fn verify_with(&self, signer: &ed25519_dalek::VerifyingKey) -> Result<&T, SignatureError> {
        verify_one(signer, &self.body.canonical_bytes(), &self.signature)?;
        Ok(&self.body)
    }
}
