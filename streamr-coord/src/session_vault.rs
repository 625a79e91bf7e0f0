//! Node session keys at rest: the database never holds a key that authenticates a heartbeat.
//!
//! Each session's MAC key is sealed with ChaCha20-Poly1305 before it is stored, under a key
//! derived with HKDF-SHA256 from the coordinator key's secret seed (which every replica already
//! shares: it signs the session accepts nodes check). The associated data binds the row it
//! belongs to (session id, node id, expiry), so a row whose node or expiry was rewritten, or a
//! sealed key moved to another row, does not open. A backup, a read replica or a leaked dump
//! alone therefore lets no one forge heartbeats; forging also takes the coordinator's secret
//! key, which already lets one sign grants.
//!
//! Stored form, hex: `version (1 byte, 1) ‖ nonce (12, random per row) ‖ ciphertext (32) ‖
//! tag (16)`. The AEAD is `ring`'s (already the TLS provider of rustls, sqlx and reqwest here),
//! not a further crate.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use streamr_core::{KeyPair, KnownSession, NodeId, NodeSessionId, SessionKey};

/// The version byte of the stored form.
const SEALED_VERSION: u8 = 1;
/// HKDF salt of the sealing key.
const VAULT_SALT: &[u8] = b"streamr/node-session-vault/v1";
/// HKDF info of the sealing key.
const VAULT_INFO: &[u8] = b"node session keys at rest, chacha20-poly1305";
/// Domain tag opening the associated data.
const VAULT_AAD_TAG: &[u8] = b"streamr/node-session-row/v1\0";
/// Bytes of the stored form: version, nonce, sealed key, tag.
const SEALED_LEN: usize = 1 + NONCE_LEN + 32 + 16;

/// Why a stored session row could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UnsealError {
    /// Not hex, the wrong length or an unknown version (not written by this code).
    #[error("sealed session key is malformed")]
    Malformed,
    /// The row was changed after sealing, or sealed under another coordinator key.
    #[error("sealed session key does not open: the row was altered or sealed under another coordinator key")]
    Rejected,
}

/// Seals and opens stored session keys under a key derived from the coordinator key.
pub(crate) struct SessionVault {
    key: LessSafeKey,
}

impl std::fmt::Debug for SessionVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionVault(..)")
    }
}

/// The associated data of a row: what the sealed key may only be opened for.
fn row_aad(id: &NodeSessionId, node_id: &NodeId, expires_at_ms: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(VAULT_AAD_TAG.len() + 16 + 32 + 8);
    aad.extend_from_slice(VAULT_AAD_TAG);
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(node_id.as_bytes());
    aad.extend_from_slice(&expires_at_ms.to_be_bytes());
    aad
}

impl SessionVault {
    /// The vault of the replicas sharing `coordinator`.
    pub(crate) fn new(coordinator: &KeyPair) -> Self {
        let seed = coordinator.seed();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, VAULT_SALT).extract(&seed);
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        #[allow(clippy::expect_used)]
        let okm = prk
            .expand(&[VAULT_INFO], &CHACHA20_POLY1305)
            .expect("a 32-byte HKDF-SHA256 output");
        SessionVault {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// The stored form of `session`'s key for row `id`, sealed with `nonce` (12 random bytes,
    /// never reused under one coordinator key).
    pub(crate) fn seal(
        &self,
        id: &NodeSessionId,
        session: &KnownSession,
        nonce: [u8; NONCE_LEN],
    ) -> String {
        let aad = row_aad(id, &session.node_id, session.expires_at_ms);
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        let mut body = session.key.as_bytes().to_vec();
        // Sealing fails only for inputs beyond ChaCha20-Poly1305's 256 GiB limit.
        #[allow(clippy::expect_used)]
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .expect("a 32-byte plaintext seals");
        sealed.extend_from_slice(&body);
        hex::encode(sealed)
    }

    /// Opens the key stored for row (`id`, `node_id`, `expires_at_ms`).
    pub(crate) fn open(
        &self,
        id: &NodeSessionId,
        node_id: NodeId,
        expires_at_ms: u64,
        sealed_hex: &str,
    ) -> Result<KnownSession, UnsealError> {
        let mut sealed = [0u8; SEALED_LEN];
        hex::decode_to_slice(sealed_hex, &mut sealed).map_err(|_| UnsealError::Malformed)?;
        let [version, rest @ ..] = &mut sealed;
        if *version != SEALED_VERSION {
            return Err(UnsealError::Malformed);
        }
        let (nonce, body) = rest.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| UnsealError::Malformed)?;
        let aad = row_aad(id, &node_id, expires_at_ms);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&aad), body)
            .map_err(|_| UnsealError::Rejected)?;
        let key: [u8; 32] = (&*plain).try_into().map_err(|_| UnsealError::Malformed)?;
        Ok(KnownSession {
            node_id,
            key: SessionKey::from_bytes(key),
            expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn session(node: u8, key: u8, expires_at_ms: u64) -> KnownSession {
        KnownSession {
            node_id: KeyPair::from_seed([node; 32]).node_id(),
            key: SessionKey::from_bytes([key; 32]),
            expires_at_ms,
        }
    }

    #[test]
    fn a_sealed_key_opens_only_for_its_own_row_under_the_same_coordinator_key() {
        let coordinator = KeyPair::from_seed([1; 32]);
        let vault = SessionVault::new(&coordinator);
        let id = NodeSessionId::from_bytes([7; 16]);
        let known = session(2, 9, 5_000);
        let sealed = vault.seal(&id, &known, [3; NONCE_LEN]);
        assert!(!sealed.contains(&hex::encode(known.key.as_bytes())));
        // Another replica with the same coordinator key opens it.
        let replica = SessionVault::new(&KeyPair::from_seed([1; 32]));
        assert_eq!(
            replica.open(&id, known.node_id, 5_000, &sealed),
            Ok(known.clone())
        );
        // Another coordinator key, another session id, node or expiry: refused.
        let stranger = SessionVault::new(&KeyPair::from_seed([4; 32]));
        let other_node = session(5, 9, 5_000).node_id;
        let other_id = NodeSessionId::from_bytes([8; 16]);
        for (vault, id, node, expiry) in [
            (&stranger, &id, known.node_id, 5_000),
            (&vault, &other_id, known.node_id, 5_000),
            (&vault, &id, other_node, 5_000),
            (&vault, &id, known.node_id, 5_001),
        ] {
            assert_eq!(
                vault.open(id, node, expiry, &sealed),
                Err(UnsealError::Rejected)
            );
        }
    }

    #[test]
    fn a_flipped_bit_or_a_malformed_row_is_refused() {
        let vault = SessionVault::new(&KeyPair::from_seed([1; 32]));
        let id = NodeSessionId::from_bytes([7; 16]);
        let known = session(2, 9, 5_000);
        let sealed = hex::decode(vault.seal(&id, &known, [3; NONCE_LEN])).unwrap();
        for byte in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[byte] ^= 0x40;
            assert_eq!(
                vault.open(&id, known.node_id, 5_000, &hex::encode(tampered)),
                Err(UnsealError::Rejected),
                "byte {byte}"
            );
        }
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        let short = &sealed[..sealed.len() - 1];
        let old_plain_key = hex::encode([9; 32]);
        for text in [
            hex::encode(other_version),
            hex::encode(short),
            old_plain_key,
            "zz".repeat(SEALED_LEN),
            String::new(),
        ] {
            assert_eq!(
                vault.open(&id, known.node_id, 5_000, &text),
                Err(UnsealError::Malformed),
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_sealed_key_opens_to_itself(
            coordinator in any::<[u8; 32]>(),
            id in any::<[u8; 16]>(),
            node in any::<[u8; 32]>(),
            key in any::<[u8; 32]>(),
            expires_at_ms in any::<u64>(),
            nonce in any::<[u8; NONCE_LEN]>(),
        ) {
            let vault = SessionVault::new(&KeyPair::from_seed(coordinator));
            let id = NodeSessionId::from_bytes(id);
            let known = KnownSession {
                node_id: KeyPair::from_seed(node).node_id(),
                key: SessionKey::from_bytes(key),
                expires_at_ms,
            };
            let sealed = vault.seal(&id, &known, nonce);
            prop_assert_eq!(sealed.len(), 2 * SEALED_LEN);
            prop_assert!(!sealed.contains(&hex::encode(key)));
            prop_assert_eq!(vault.open(&id, known.node_id, expires_at_ms, &sealed), Ok(known));
        }

        #[test]
        fn arbitrary_stored_text_never_panics(text in "\\PC{0,200}") {
            let vault = SessionVault::new(&KeyPair::from_seed([1; 32]));
            let id = NodeSessionId::from_bytes([7; 16]);
            let _ = vault.open(&id, session(2, 9, 1).node_id, 1, &text);
        }
    }
}
