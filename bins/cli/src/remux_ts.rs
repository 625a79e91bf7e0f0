//! `streamr remux-ts`: an FLV file to one continuous MPEG-TS file.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use streamr_media::ts::FlvToTs;

const READ_CHUNK: usize = 1024 * 1024;

/// Arguments of `streamr remux-ts`.
#[derive(Debug, Args)]
pub struct RemuxTsArgs {
    /// The FLV file to read.
    pub input: PathBuf,
    /// The MPEG-TS file to write (replaced if it exists).
    pub output: PathBuf,
}

/// Runs the conversion and returns the number of bytes written.
pub fn run(args: &RemuxTsArgs) -> Result<u64> {
    let mut input =
        File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let mut output = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let progress = crate::progress::for_file(&input);
    let mut remux = FlvToTs::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut ts = Vec::with_capacity(READ_CHUNK + READ_CHUNK / 4);
    let mut written = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("reading {}", args.input.display()))?;
        if n == 0 {
            break;
        }
        progress.inc(n as u64);
        remux
            .push(buf.get(..n).unwrap_or_default(), &mut ts)
            .with_context(|| format!("remuxing {}", args.input.display()))?;
        output
            .write_all(&ts)
            .with_context(|| format!("writing {}", args.output.display()))?;
        written += ts.len() as u64;
        ts.clear();
    }
    remux
        .finish()
        .with_context(|| format!("reading {}", args.input.display()))?;
    output
        .flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    progress.finish_and_clear();
    Ok(written)
}
