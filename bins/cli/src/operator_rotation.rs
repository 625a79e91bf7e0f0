//! `streamr operator-rotation`: the statement, signed with the operator key an operator name
//! is bound to, that binds the name to a new key (`streamr_core::OperatorRotation`), printed
//! as the JSON body of the coordinator's `POST /operators/rotations`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use streamr_core::{KeyPair, OperatorRotation};

/// Arguments of `streamr operator-rotation`.
#[derive(Debug, Args)]
pub struct OperatorRotationArgs {
    /// The operator name whose key is replaced (any spelling: it is taken in its canonical
    /// form).
    #[arg(long, env = "STREAMR_OPERATOR")]
    pub operator: String,

    /// The operator key file the name is bound to now (the nodes' `--operator-key`).
    #[arg(long, env = "STREAMR_OPERATOR_KEY")]
    pub operator_key: PathBuf,

    /// The new operator key file; a new key is written there (mode 0600) when it does not
    /// exist.
    #[arg(long, env = "STREAMR_NEW_OPERATOR_KEY")]
    pub new_operator_key: PathBuf,

    /// The rotation's number: above every earlier rotation's of the name (the first is 1);
    /// the coordinator refuses a statement whose number it has seen (409
    /// `stale_operator_rotation` names the next one).
    #[arg(long, env = "STREAMR_ROTATION_SEQUENCE")]
    pub sequence: u64,
}

/// Reads an operator key file (the 32-byte seed as hex on one line, as `streamr-node` writes
/// it).
fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading operator key file {}", path.display()))?;
    KeyPair::from_seed_hex(text.trim()).map_err(|_| {
        anyhow::anyhow!(
            "operator key file {} does not hold a 64-character hex ed25519 seed",
            path.display()
        )
    })
}

/// Reads the new key file, or writes a fresh key there when it does not exist. The file is
/// the format `streamr-node --operator-key` reads; the node's own loader lives in the
/// `streamr-node` crate, which this CLI leaves out without its `demo` feature, so the dozen
/// lines are repeated here.
fn read_or_create_key(path: &Path) -> anyhow::Result<KeyPair> {
    if path.exists() {
        return read_key(path);
    }
    let key = KeyPair::generate(&mut rand::rngs::OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating operator key file {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.seed()))
        .with_context(|| format!("writing operator key file {}", path.display()))?;
    Ok(key)
}

/// Signs the statement and returns its JSON.
pub fn run(args: &OperatorRotationArgs) -> anyhow::Result<String> {
    if args.sequence == 0 {
        bail!("--sequence starts at 1");
    }
    let old = read_key(&args.operator_key)?;
    let new = read_or_create_key(&args.new_operator_key)?;
    if old.operator_key() == new.operator_key() {
        bail!("the new operator key is the old one");
    }
    let rotation = OperatorRotation::sign(&old, &args.operator, new.operator_key(), args.sequence);
    Ok(serde_json::to_string_pretty(&rotation)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_the_old_keys_and_the_new_key_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old.key");
        let old = KeyPair::from_seed([3; 32]);
        std::fs::write(&old_path, format!("{}\n", hex::encode(old.seed()))).unwrap();
        let new_path = dir.path().join("new.key");
        let args = OperatorRotationArgs {
            operator: "Acme ".into(),
            operator_key: old_path.clone(),
            new_operator_key: new_path.clone(),
            sequence: 1,
        };
        let rotation: OperatorRotation = serde_json::from_str(&run(&args).unwrap()).unwrap();
        let new = read_key(&new_path).unwrap();
        assert_eq!(rotation.operator, "acme");
        assert_eq!(rotation.new_key, new.operator_key());
        assert_eq!(rotation.judge(&old.operator_key(), 0), Ok(()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&new_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The same new key file again: the same key, not a fresh one.
        let again: OperatorRotation = serde_json::from_str(&run(&args).unwrap()).unwrap();
        assert_eq!(again.new_key, new.operator_key());
        // Sequence 0 and rotating to the same key are refused.
        let zero = OperatorRotationArgs {
            sequence: 0,
            operator: "acme".into(),
            operator_key: old_path.clone(),
            new_operator_key: new_path,
        };
        assert!(run(&zero).is_err());
        let same = OperatorRotationArgs {
            new_operator_key: old_path.clone(),
            operator_key: old_path,
            operator: "acme".into(),
            sequence: 1,
        };
        assert!(run(&same).is_err());
    }
}
