//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`), as the tests that replay them
//! read them: the committed seeds (`seed_*`) checked against what the current code encodes,
//! and every entry (including those a local fuzzing run added) handed to the entry point.

use std::path::{Path, PathBuf};

/// The environment variable that makes [`assert_seed_is_current`] rewrite the seeds.
pub const REGENERATE: &str = "STREAMR_REGENERATE_SEEDS";

/// The corpus folder of the fuzz target `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Asserts that the committed seed `name` of `target` holds `bytes` (what the current code
/// encodes), so a format change shows up as a stale seed; with [`REGENERATE`] set, writes
/// `bytes` there first.
pub fn assert_seed_is_current(target: &str, name: &str, bytes: &[u8]) {
    let path = corpus_dir(target).join(name);
    if std::env::var_os(REGENERATE).is_some() {
        std::fs::write(&path, bytes)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
    let committed = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("seed {} missing: {error}", path.display()));
    assert_eq!(
        committed, bytes,
        "{name} is stale: {REGENERATE}=1 rewrites it"
    );
}

/// Every entry of `target`'s corpus, sorted by file name: the committed seeds and whatever a
/// local fuzzing run added. Panics when the folder is missing or empty.
pub fn corpus_entries(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("seed corpus {} missing: {error}", dir.display()))
        .map(|entry| entry.expect("a readable corpus entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "empty seed corpus {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            (name, bytes)
        })
        .collect()
}
