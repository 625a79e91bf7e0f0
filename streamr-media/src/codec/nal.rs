//! Length-prefixed (AVCC/hvcC) to Annex-B conversion shared by H.264 and HEVC.

use bytes::Bytes;

use super::CodecError;

/// The four-byte Annex-B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// How a codec's NAL unit header names its type and which types matter for conversion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NalFlavor {
    /// NAL unit type from the first header byte.
    pub(crate) nal_type: fn(u8) -> u8,
    /// True for the types that start a random access point (where parameter sets must precede).
    pub(crate) is_random_access: fn(u8) -> bool,
    /// True for parameter-set types (already present in the sample, no need to insert).
    pub(crate) is_parameter_set: fn(u8) -> bool,
    /// The access unit delimiter type.
    pub(crate) aud_type: u8,
    /// A complete access unit delimiter NAL unit.
    pub(crate) aud: &'static [u8],
}

/// Iterates the NAL units of a length-prefixed sample.
pub(crate) fn for_each_nal<'a>(
    sample: &'a [u8],
    length_size: u8,
    mut each: impl FnMut(&'a [u8]),
) -> Result<(), CodecError> {
    let size = usize::from(length_size);
    let mut pos = 0usize;
    while pos < sample.len() {
        let len_bytes =
            sample
                .get(pos..pos.saturating_add(size))
                .ok_or(CodecError::NalLengthOverrun {
                    offset: pos,
                    length: size,
                    sample_len: sample.len(),
                })?;
        let length = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let start = pos + size;
        let nal = start
            .checked_add(length)
            .and_then(|end| sample.get(start..end))
            .ok_or(CodecError::NalLengthOverrun {
                offset: pos,
                length,
                sample_len: sample.len(),
            })?;
        each(nal);
        pos = start + length;
    }
    Ok(())
}

/// Appends the Annex-B form of a length-prefixed sample to `out`: an access unit delimiter, the
/// parameter sets before the first random-access NAL unit when the sample lacks its own, then
/// every NAL unit (minus any delimiter of its own) behind a start code. On error `out` is left
/// as it was.
pub(crate) fn write_annexb(
    flavor: NalFlavor,
    sample: &[u8],
    length_size: u8,
    parameter_sets: &[&Bytes],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    // Validate first so a bad sample leaves `out` untouched.
    let mut has_parameter_sets = false;
    let mut has_random_access = false;
    let mut total = flavor.aud.len() + START_CODE.len();
    for_each_nal(sample, length_size, |nal| {
        if let Some(&first) = nal.first() {
            let t = (flavor.nal_type)(first);
            has_parameter_sets |= (flavor.is_parameter_set)(t);
            has_random_access |= (flavor.is_random_access)(t);
            total += nal.len() + START_CODE.len();
        }
    })?;
    let insert_parameter_sets = has_random_access && !has_parameter_sets;
    if insert_parameter_sets {
        total += parameter_sets
            .iter()
            .map(|p| p.len() + START_CODE.len())
            .sum::<usize>();
    }
    out.reserve(total);
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(flavor.aud);
    let mut inserted = !insert_parameter_sets;
    for_each_nal(sample, length_size, |nal| {
        let Some(&first) = nal.first() else {
            return;
        };
        let t = (flavor.nal_type)(first);
        if t == flavor.aud_type {
            return;
        }
        if !inserted && (flavor.is_random_access)(t) {
            for set in parameter_sets {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(set);
            }
            inserted = true;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    })
}
