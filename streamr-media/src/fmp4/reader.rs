//! Reading ISO BMFF box headers: walking a buffer box by box without trusting declared sizes.

use super::Fmp4Error;

/// One box found by [`read_boxes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef<'a> {
    /// The four-character box type.
    pub fourcc: [u8; 4],
    /// Offset of the box header in the buffer walked.
    pub offset: usize,
    /// The box body (after the 8- or 16-byte header).
    pub body: &'a [u8],
}

/// Splits `data` into its top-level boxes, checking every declared size (32-bit, 64-bit
/// `largesize` and "to the end" sizes) against the bytes present.
///
/// ```
/// use streamr_media::fmp4::read_boxes;
///
/// let data = [0, 0, 0, 12, b'f', b'r', b'e', b'e', 1, 2, 3, 4];
/// let boxes = read_boxes(&data).unwrap();
/// assert_eq!(&boxes[0].fourcc, b"free");
/// assert_eq!(boxes[0].body, &[1, 2, 3, 4]);
/// ```
pub fn read_boxes(data: &[u8]) -> Result<Vec<BoxRef<'_>>, Fmp4Error> {
    let mut boxes = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = data.get(offset..).unwrap_or_default();
        let bad = |size: u64| Fmp4Error::BadBoxSize {
            offset,
            size,
            available: rest.len(),
        };
        let header: [u8; 8] = rest
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad(0))?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let fourcc = [header[4], header[5], header[6], header[7]];
        let (header_len, size) = match size32 {
            0 => (8, rest.len() as u64),
            1 => {
                let large: [u8; 8] = rest
                    .get(8..16)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| bad(1))?;
                (16, u64::from_be_bytes(large))
            }
            size => (8, u64::from(size)),
        };
        let len = usize::try_from(size).map_err(|_| bad(size))?;
        if len < header_len || len > rest.len() {
            return Err(bad(size));
        }
        boxes.push(BoxRef {
            fourcc,
            offset,
            body: rest.get(header_len..len).unwrap_or_default(),
        });
        offset += len;
    }
    Ok(boxes)
}

/// Container boxes whose bodies are only child boxes.
const CONTAINERS: [&[u8; 4]; 11] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf", b"edts",
    b"udta",
];

/// Walks `data` and every container box in it depth-first, returning each box's path (for
/// example `moov/trak/mdia`). Fails on the first inconsistent size.
pub fn box_paths(data: &[u8]) -> Result<Vec<String>, Fmp4Error> {
    let mut paths = Vec::new();
    walk(data, "", &mut paths, 0)?;
    Ok(paths)
}

fn walk(data: &[u8], prefix: &str, paths: &mut Vec<String>, depth: usize) -> Result<(), Fmp4Error> {
    for entry in read_boxes(data)? {
        let name = String::from_utf8_lossy(&entry.fourcc).into_owned();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        paths.push(path.clone());
        if depth < 16 && CONTAINERS.contains(&&entry.fourcc) {
            walk(entry.body, &path, paths, depth + 1)?;
        }
    }
    Ok(())
}

/// Reads arbitrary bytes as boxes, for fuzzing: must return an error on bad input, never panic.
/// Returns how many boxes were found.
pub fn parse_any_boxes(data: &[u8]) -> usize {
    box_paths(data).map_or(0, |paths| paths.len())
}
