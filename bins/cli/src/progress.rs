//! The progress bar shown while reading large input files.

use std::fs::File;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Files above this size get a progress bar.
const PROGRESS_THRESHOLD: u64 = 8 * 1024 * 1024;

/// A byte progress bar for reading `file`, hidden for small files and when stderr is not a
/// terminal (a hidden bar skips all drawing and its timer).
pub fn for_file(file: &File) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}
