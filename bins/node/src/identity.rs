//! The node's ed25519 identity, generated on first start and kept in a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use streamr_core::KeyPair;

/// Why the identity file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or creating the file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a 64-character hex seed.
    #[error("identity file {path} does not hold a 64-character hex ed25519 seed")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Loads the key kept in `path`, or generates one and writes it there (mode 0600 on Unix) when
/// the file does not exist. The file holds the 32-byte secret seed as hex on one line.
pub fn load_or_create(path: &Path) -> Result<KeyPair, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => KeyPair::from_seed_hex(text.trim()).map_err(|_| IdentityError::Malformed {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate(&mut rand::rngs::OsRng);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            writeln!(file, "{}", hex::encode(key.seed())).map_err(io)?;
            Ok(key)
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.node_id(), second.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, "not a key").unwrap();
        let error = load_or_create(&path).err().unwrap();
        assert!(matches!(error, IdentityError::Malformed { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }
}
