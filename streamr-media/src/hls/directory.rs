//! Optional writing of segments and the playlist to a directory.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{LivePlaylist, Segment};
use crate::name::{AppName, StreamName};

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

/// Writes `{sequence}.ts` files into a segment directory and a playlist file beside them (or
/// elsewhere). Every file is written under a temporary name and renamed into place, so a reader
/// never sees half a segment or half a playlist, and a failed write (a full disk) leaves no
/// truncated file behind.
#[derive(Debug, Clone)]
pub struct HlsDirectory {
    segments_dir: PathBuf,
    playlist_path: PathBuf,
}

fn create_dir(dir: &Path) -> Result<(), HlsWriteError> {
    std::fs::create_dir_all(dir).map_err(|source| HlsWriteError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

impl HlsDirectory {
    /// Output into `dir` (created if missing) with the playlist named `playlist_name` in it.
    pub fn create(dir: impl AsRef<Path>, playlist_name: &str) -> Result<Self, HlsWriteError> {
        let dir = dir.as_ref();
        Self::create_split(dir, dir.join(playlist_name))
    }

    /// The live layout of one stream under `root`: the playlist at `{root}/{app}/{name}.m3u8`,
    /// segments in `{root}/{app}/{name}/`. Validated names keep both inside `root`.
    pub fn for_stream(
        root: impl AsRef<Path>,
        app: &AppName,
        name: &StreamName,
    ) -> Result<Self, HlsWriteError> {
        let app_dir = root.as_ref().join(app);
        Self::create_split(app_dir.join(name), app_dir.join(format!("{name}.m3u8")))
    }

    /// Segments into `segments_dir`, the playlist at `playlist_path` (both directories created if
    /// missing). The live layout `{root}/{app}/{stream}.m3u8` + `{root}/{app}/{stream}/{n}.ts`
    /// mirrors the HTTP URLs.
    pub fn create_split(
        segments_dir: impl AsRef<Path>,
        playlist_path: impl AsRef<Path>,
    ) -> Result<Self, HlsWriteError> {
        let segments_dir = segments_dir.as_ref().to_path_buf();
        let playlist_path = playlist_path.as_ref().to_path_buf();
        create_dir(&segments_dir)?;
        if let Some(parent) = playlist_path.parent() {
            create_dir(parent)?;
        }
        Ok(HlsDirectory {
            segments_dir,
            playlist_path,
        })
    }

    /// Path of the playlist file.
    pub fn playlist_path(&self) -> PathBuf {
        self.playlist_path.clone()
    }

    /// Path of segment `sequence`.
    pub fn segment_path(&self, sequence: u64) -> PathBuf {
        self.segments_dir.join(format!("{sequence}.ts"))
    }

    /// Writes one segment file.
    pub fn write_segment(&self, segment: &Segment) -> Result<(), HlsWriteError> {
        self.write_segment_bytes(segment.sequence, &segment.bytes)
    }

    /// Writes segment `sequence` with the given bytes.
    pub fn write_segment_bytes(&self, sequence: u64, bytes: &[u8]) -> Result<(), HlsWriteError> {
        write_then_rename(&self.segment_path(sequence), bytes)
    }

    /// Deletes every segment file (`{sequence}.ts`, and temporaries left by a failed write) and
    /// the playlist, then the segment directory if that left it empty. Other files are kept.
    pub fn remove_all(&self) -> Result<(), HlsWriteError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HlsWriteError::Io { path, source }
        };
        let entries = match std::fs::read_dir(&self.segments_dir) {
            Ok(entries) => Some(entries),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error(&self.segments_dir)(error)),
        };
        for entry in entries.into_iter().flatten() {
            let entry = entry.map_err(io_error(&self.segments_dir))?;
            let name = entry.file_name();
            let is_segment = name.to_str().is_some_and(|name| {
                let stem = name
                    .strip_suffix(".ts.tmp")
                    .or_else(|| name.strip_suffix(".ts"));
                stem.is_some_and(|stem| {
                    !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit())
                })
            });
            if is_segment {
                remove_if_present(&entry.path())?;
            }
        }
        // Not empty: something else lives there; leave it.
        let _ = std::fs::remove_dir(&self.segments_dir);
        remove_if_present(&self.playlist_path)
    }

    /// Deletes segment `sequence` (no error when it is already gone).
    pub fn remove_segment(&self, sequence: u64) -> Result<(), HlsWriteError> {
        remove_if_present(&self.segment_path(sequence))
    }

    /// Replaces the playlist file with the playlist's current rendering.
    pub fn write_playlist(&self, playlist: &LivePlaylist) -> Result<(), HlsWriteError> {
        self.write_playlist_text(&playlist.render())
    }

    /// Replaces the playlist file with `text`.
    pub fn write_playlist_text(&self, text: &str) -> Result<(), HlsWriteError> {
        write_then_rename(&self.playlist_path, text.as_bytes())
    }
}

/// Writes `bytes` to `{path}.tmp` and renames it to `path`; on failure the temporary is removed
/// and `path` is left as it was.
fn write_then_rename(path: &Path, bytes: &[u8]) -> Result<(), HlsWriteError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = std::fs::write(&temporary, bytes)
        .map_err(|source| HlsWriteError::Io {
            path: temporary.clone(),
            source,
        })
        .and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|source| HlsWriteError::Io {
                path: path.to_path_buf(),
                source,
            })
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn remove_if_present(path: &Path) -> Result<(), HlsWriteError> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(HlsWriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}
