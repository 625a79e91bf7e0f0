//! Fuzzes the incremental FLV reader: arbitrary bytes must give tags or an error, never a panic,
//! and reading them in two parts, shared (`push_bytes`, tag bodies sliced from the input) or
//! copied (`push`), must give exactly what reading them at once gives; the tags read, written
//! back by `FlvWriter`, read back to the same header and tags.
#![no_main]

use bytes::Bytes;
use streamr_media::flv::{FlvError, FlvHeader, FlvReader, FlvTag, FlvWriter};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte picks where to split the rest and how its first part is pushed.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(selector).min(rest.len());
    let whole = FlvReader::read_all(rest);
    assert_eq!(read_in_two(rest, cut, selector & 1 == 0), whole);
    if let Ok((header, tags)) = whole {
        let writer = FlvWriter::new();
        let mut written = writer.header(header);
        for tag in &tags {
            writer
                .write_tag(tag, &mut written)
                .expect("a tag read writes back");
        }
        assert_eq!(
            FlvReader::read_all(&written),
            Ok((header, tags)),
            "written tags read back differently"
        );
    }
});

/// Reads `data` pushed as two parts split at `cut`, the first shared or copied.
fn read_in_two(
    data: &[u8],
    cut: usize,
    shared_first: bool,
) -> Result<(FlvHeader, Vec<FlvTag>), FlvError> {
    let (first, second) = data.split_at(cut);
    let mut reader = FlvReader::new();
    let mut tags = Vec::new();
    if shared_first {
        reader.push_bytes(Bytes::copy_from_slice(first));
    } else {
        reader.push(first);
    }
    while let Some(tag) = reader.next_tag()? {
        tags.push(tag);
    }
    reader.push_bytes(Bytes::copy_from_slice(second));
    while let Some(tag) = reader.next_tag()? {
        tags.push(tag);
    }
    reader.finish()?;
    Ok((reader.header().unwrap_or_default(), tags))
}
