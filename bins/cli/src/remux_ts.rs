//! `streamr remux-ts`: an FLV file to one continuous MPEG-TS file.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use streamr_media::ts::FlvToTs;

/// Bytes read at a time from an input that cannot be mapped (a pipe or a device).
const READ_CHUNK: usize = 1024 * 1024;
/// Transport stream bytes muxed before each write: small enough to stay in the CPU cache between
/// the muxer writing them and the kernel copying them out, large enough that system calls are
/// few.
const WRITE_CHUNK: usize = 512 * 1024;

/// Arguments of `streamr remux-ts`.
#[derive(Debug, Args)]
pub struct RemuxTsArgs {
    /// The FLV file to read.
    pub input: PathBuf,
    /// The MPEG-TS file to write (replaced if it exists).
    pub output: PathBuf,
}

/// The whole of `file` as shared bytes, mapped into memory, when it is a non-empty regular file
/// that can be mapped; `None` otherwise (read it in pieces then).
///
/// Mapping lets the FLV reader hand out tag bodies as slices of the page cache: nothing is
/// copied between the file and the muxer. The file must not shrink while it is mapped (another
/// process truncating it would end this one with SIGBUS); bytes appended after this call are
/// not seen.
pub(crate) fn map_file(file: &File) -> Option<Bytes> {
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() == 0 {
        return None;
    }
    // SAFETY: the mapping is read-only and private, and it is only read through the `Bytes`
    // that owns it. The remaining hazard, another process truncating the file meanwhile, is
    // documented above; it cannot corrupt memory, only stop the process.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::MmapOptions::new().map(file) }.ok()?;
    Some(Bytes::from_owner(map))
}

/// Reserves `len` bytes of disk space for `file` beyond its end without changing its size, so
/// that the writes that follow fill blocks already allocated instead of allocating block by
/// block; [`File::set_len`] releases what was not used. Best effort: file systems without
/// preallocation just allocate as they are written.
pub(crate) fn preallocate(file: &File, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{fallocate, FallocateFlags};
        let _ = fallocate(file, FallocateFlags::KEEP_SIZE, 0, len);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

/// Runs the conversion and returns the number of bytes written.
pub fn run(args: &RemuxTsArgs) -> Result<u64> {
    let mut input =
        File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let mut output = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let progress = crate::progress::for_file(&input);
    let mapped = map_file(&input);
    if let Some(flv) = &mapped {
        // MPEG-TS adds about 5 % to FLV (packet headers, stuffing, tables): reserve a margin
        // above that, trimmed once the length is known.
        let len = flv.len() as u64;
        preallocate(&output, len + len / 8);
    }
    let mut remux = FlvToTs::new();
    let mut ts = Vec::with_capacity(WRITE_CHUNK * 2);
    let mut written = 0u64;
    let reading = || format!("reading {}", args.input.display());
    let writing = || format!("writing {}", args.output.display());
    let mut write = |ts: &mut Vec<u8>| -> Result<()> {
        output.write_all(ts).with_context(writing)?;
        written += ts.len() as u64;
        ts.clear();
        Ok(())
    };
    if let Some(flv) = mapped {
        remux.push_bytes(flv);
        while remux.mux(&mut ts, WRITE_CHUNK).with_context(reading)? {
            write(&mut ts)?;
            progress.set_position(remux.position());
        }
        write(&mut ts)?;
    } else {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = input.read(&mut buf).with_context(reading)?;
            if n == 0 {
                break;
            }
            progress.inc(n as u64);
            remux
                .push(buf.get(..n).unwrap_or_default(), &mut ts)
                .with_context(reading)?;
            write(&mut ts)?;
        }
    }
    remux.finish().with_context(reading)?;
    // Releases the space reserved beyond what was written (a no-op without preallocation).
    output.set_len(written).with_context(writing)?;
    output.flush().with_context(writing)?;
    progress.finish_and_clear();
    Ok(written)
}
