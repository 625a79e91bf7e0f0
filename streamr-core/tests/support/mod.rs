//! What the fuzz-seed tests of `streamr-core` share.

use streamr_core::{CanonicalMessage, Signed};

/// Asserts that `message` serialises to JSON that parses back to the same message, with the
/// same canonical (signed) bytes.
pub fn round_trips<T>(message: &Signed<T>)
where
    T: CanonicalMessage
        + serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    let json = serde_json::to_vec(message).unwrap();
    let back: Signed<T> = serde_json::from_slice(&json).unwrap();
    assert_eq!(&back, message);
    assert_eq!(back.body.canonical_bytes(), message.body.canonical_bytes());
}
