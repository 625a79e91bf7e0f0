//! Optional writing of segments and the playlist to a directory.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{LivePlaylist, Segment};

/// Why writing HLS output to a directory failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HlsWriteError {
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Writes `{sequence}.ts` files and a playlist file into a directory. The playlist is written to
/// a temporary file and renamed, so a reader never sees half a playlist.
#[derive(Debug, Clone)]
pub struct HlsDirectory {
    dir: PathBuf,
    playlist_name: String,
}

impl HlsDirectory {
    /// Output into `dir` (created if missing) with the playlist named `playlist_name`.
    pub fn create(dir: impl AsRef<Path>, playlist_name: &str) -> Result<Self, HlsWriteError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| HlsWriteError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(HlsDirectory {
            dir,
            playlist_name: playlist_name.to_owned(),
        })
    }

    /// Path of the playlist file.
    pub fn playlist_path(&self) -> PathBuf {
        self.dir.join(&self.playlist_name)
    }

    /// Path of segment `sequence`.
    pub fn segment_path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence}.ts"))
    }

    /// Writes one segment file.
    pub fn write_segment(&self, segment: &Segment) -> Result<(), HlsWriteError> {
        let path = self.segment_path(segment.sequence);
        std::fs::write(&path, &segment.bytes).map_err(|source| HlsWriteError::Io { path, source })
    }

    /// Replaces the playlist file with the playlist's current rendering.
    pub fn write_playlist(&self, playlist: &LivePlaylist) -> Result<(), HlsWriteError> {
        let path = self.playlist_path();
        let temporary = self.dir.join(format!(".{}.tmp", self.playlist_name));
        std::fs::write(&temporary, playlist.render()).map_err(|source| HlsWriteError::Io {
            path: temporary.clone(),
            source,
        })?;
        std::fs::rename(&temporary, &path).map_err(|source| HlsWriteError::Io { path, source })
    }
}
