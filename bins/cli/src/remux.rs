//! `streamr remux`: an FLV file to an HLS playlist and MPEG-TS segments.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use streamr_media::flv::FlvReader;
use streamr_media::hls::{
    HlsDirectory, LivePlaylist, PlaylistConfig, Segmenter, SegmenterConfig, SegmenterEvent,
};

/// Bytes read at a time from an input that cannot be mapped (a pipe or a device).
const READ_CHUNK: usize = 1024 * 1024;

/// Arguments of `streamr remux`.
#[derive(Debug, Args)]
pub struct RemuxArgs {
    /// The FLV file to read.
    pub input: PathBuf,
    /// The directory to write the playlist and segments into (created if missing).
    pub out_dir: PathBuf,
    /// Segment length aimed for, in seconds (cuts happen at the next keyframe).
    #[arg(long, env = "STREAMR_SEGMENT_DURATION", default_value_t = 4.0)]
    pub segment_duration: f64,
    /// The longest segment in seconds (the longest GOP kept whole); EXT-X-TARGETDURATION is
    /// derived from the input's GOPs, at most this.
    #[arg(long, env = "STREAMR_TARGET_DURATION", default_value_t = 12)]
    pub target_duration: u32,
    /// File name of the playlist.
    #[arg(long, env = "STREAMR_PLAYLIST_NAME", default_value = "index.m3u8")]
    pub playlist_name: String,
}

/// Writes one segment file like [`HlsDirectory::write_segment`], with its disk space reserved
/// first (the length is known): ext4 then fills allocated blocks instead of allocating as it
/// goes, which costs the kernel about half as much per byte.
fn write_segment(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    crate::remux_ts::preallocate(&file, bytes.len() as u64);
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs the remux and returns the number of segments written.
pub fn run(args: &RemuxArgs) -> Result<u64> {
    if !(args.segment_duration > 0.0 && args.segment_duration <= f64::from(args.target_duration)) {
        bail!(
            "--segment-duration must be above 0 and at most --target-duration ({} s)",
            args.target_duration
        );
    }
    let mut file =
        File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let progress = crate::progress::for_file(&file);

    let segmenter_config = SegmenterConfig {
        segment_duration_ms: (args.segment_duration * 1000.0).round() as u32,
        target_duration_secs: args.target_duration,
    };
    let mut segmenter = Segmenter::new(segmenter_config);
    let mut playlist = LivePlaylist::new(PlaylistConfig {
        target_duration_secs: args.target_duration,
        window_segments: None,
        ..PlaylistConfig::default()
    });
    let out = HlsDirectory::create(&args.out_dir, &args.playlist_name)?;
    let mut reader = FlvReader::new();
    let mut segments = 0u64;
    let mut skipped = 0u64;
    let mut handle = |events: Vec<SegmenterEvent>,
                      target_of_stream: Option<u32>,
                      playlist: &mut LivePlaylist|
     -> Result<()> {
        for event in events {
            match event {
                SegmenterEvent::SegmentReady(segment) => {
                    if let Some(target) = target_of_stream {
                        playlist.set_target_duration(target);
                    }
                    write_segment(&out.segment_path(segment.sequence), &segment.bytes)?;
                    playlist.push(&segment, false);
                    segments += 1;
                }
                SegmenterEvent::Ended => playlist.end(),
                _ => {}
            }
        }
        Ok(())
    };
    let mut mux_queued = |reader: &mut FlvReader, playlist: &mut LivePlaylist| -> Result<()> {
        while let Some(tag) = reader
            .next_tag()
            .with_context(|| format!("reading {}", args.input.display()))?
        {
            match segmenter.push(&tag) {
                Ok(events) => {
                    if !events.is_empty() {
                        progress.set_position(reader.position());
                    }
                    handle(events, segmenter.target_duration_secs(), playlist)?;
                }
                Err(error) => {
                    skipped += 1;
                    tracing::warn!(%error, "skipping tag");
                }
            }
        }
        Ok(())
    };
    if let Some(flv) = crate::remux_ts::map_file(&file) {
        reader.push_bytes(flv);
        mux_queued(&mut reader, &mut playlist)?;
    } else {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", args.input.display()))?;
            if n == 0 {
                break;
            }
            reader.push(buf.get(..n).unwrap_or_default());
            mux_queued(&mut reader, &mut playlist)?;
        }
    }
    reader
        .finish()
        .with_context(|| format!("reading {}", args.input.display()))?;
    let events = segmenter.finish();
    handle(events, segmenter.target_duration_secs(), &mut playlist)?;
    out.write_playlist(&playlist)?;
    progress.finish_and_clear();
    if skipped > 0 {
        eprintln!("skipped {skipped} tags that could not be muxed");
    }
    Ok(segments)
}
