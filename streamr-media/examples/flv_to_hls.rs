//! Remuxes an FLV file into an HLS playlist and MPEG-TS segments, no I/O inside the library:
//! `cargo run -p streamr-media --example flv_to_hls -- samples/sample.flv /tmp/hls`.

use std::error::Error;
use std::path::Path;

use streamr_media::flv::FlvReader;
use streamr_media::hls::{
    HlsDirectory, HlsStream, PlaylistConfig, SegmenterConfig, SegmenterEvent,
};

/// Writes `out/index.m3u8` and its segments from the FLV file `input`; returns the segment count.
pub fn remux(input: &Path, out: &Path) -> Result<u64, Box<dyn Error>> {
    let dir = HlsDirectory::create(out, "index.m3u8")?;
    // A VOD playlist: every segment stays listed.
    let playlist = PlaylistConfig {
        window_segments: None,
        ..PlaylistConfig::default()
    };
    let mut hls = HlsStream::new(SegmenterConfig::default(), playlist);
    let mut reader = FlvReader::new();
    reader.push(&std::fs::read(input)?);
    let mut segments = 0;
    let mut write = |events: Vec<SegmenterEvent>| -> Result<(), Box<dyn Error>> {
        for event in events {
            if let SegmenterEvent::SegmentReady(segment) = event {
                dir.write_segment(&segment)?;
                segments += 1;
            }
        }
        Ok(())
    };
    while let Some(tag) = reader.next_tag()? {
        write(hls.push(&tag)?)?;
    }
    reader.finish()?;
    write(hls.finish())?;
    dir.write_playlist(hls.playlist())?;
    Ok(segments)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: flv_to_hls INPUT.flv OUT_DIR".into());
    };
    let segments = remux(Path::new(&input), Path::new(&out))?;
    println!("{segments} segments in {}", Path::new(&out).display());
    Ok(())
}
