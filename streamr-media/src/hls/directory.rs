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

    /// Deletes every segment file (`{sequence}.ts`, and temporaries left by a failed write), the
    /// LL-HLS files beside them ([`HlsDirectory::write_file`]) and the playlist, then the segment
    /// directory if that left it empty. Other files are kept.
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
                let name = name.strip_suffix(".tmp").unwrap_or(name);
                let stem = name.strip_suffix(".ts");
                stem.is_some_and(|stem| {
                    !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit())
                }) || is_ll_file(name)
            });
            if is_segment {
                remove_if_present(&entry.path())?;
            }
        }
        // Not empty: something else lives there; leave it.
        let _ = std::fs::remove_dir(&self.segments_dir);
        remove_if_present(&self.playlist_path)
    }

    /// Writes `name` (an LL-HLS file: `ll.m3u8`, `init-{hex}.mp4`, `{msn}.m4s` or
    /// `{msn}.{part}.m4s`, or the multivariant playlist `master.m3u8`) into the segment directory, atomically like segments.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), HlsWriteError> {
        write_then_rename(&self.file_path(name)?, bytes)
    }

    /// Deletes LL-HLS file `name` from the segment directory (no error when it is already
    /// gone).
    pub fn remove_file(&self, name: &str) -> Result<(), HlsWriteError> {
        remove_if_present(&self.file_path(name)?)
    }

    /// Path of LL-HLS file `name` in the segment directory; other names are refused, so a file
    /// never lands outside it.
    pub fn file_path(&self, name: &str) -> Result<PathBuf, HlsWriteError> {
        if !is_ll_file(name) {
            return Err(HlsWriteError::Io {
                path: self.segments_dir.join(name),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not an LL-HLS file name"),
            });
        }
        Ok(self.segments_dir.join(name))
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

/// True for the names of LL-HLS files: `ll.m3u8`, `init-{hex}.mp4`, `{msn}.m4s`,
/// `{msn}.{part}.m4s`.
fn is_ll_file(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if name == "ll.m3u8" || name == super::MULTIVARIANT_NAME {
        return true;
    }
    if let Some(hex) = name
        .strip_prefix("init-")
        .and_then(|n| n.strip_suffix(".mp4"))
    {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    name.strip_suffix(".m4s")
        .is_some_and(|stem| match stem.split_once('.') {
            Some((msn, part)) => digits(msn) && digits(part),
            None => digits(stem),
        })
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

#[cfg(test)]
mod ll_file_tests {
    use super::*;

    #[test]
    fn only_ll_hls_names_are_written_and_they_stay_in_the_segment_directory() {
        for name in ["ll.m3u8", "init-0af3.mp4", "12.m4s", "12.3.m4s"] {
            assert!(is_ll_file(name), "{name}");
        }
        for name in [
            "../x.m4s",
            "a.m4s",
            "1..m4s",
            "init-.mp4",
            "init-zz.mp4",
            "1.ts",
            ".m4s",
        ] {
            assert!(!is_ll_file(name), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        let out = HlsDirectory::create(dir.path(), "index.m3u8").unwrap();
        out.write_file("3.1.m4s", b"part").unwrap();
        assert_eq!(std::fs::read(dir.path().join("3.1.m4s")).unwrap(), b"part");
        assert!(out.write_file("../escape.m4s", b"x").is_err());
        out.remove_all().unwrap();
        assert!(!dir.path().join("3.1.m4s").exists());
    }
}
