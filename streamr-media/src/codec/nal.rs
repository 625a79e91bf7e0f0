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

/// Lists the pieces of the Annex-B form of a length-prefixed sample in `parts`, borrowing from
/// the sample and the parameter sets: an access unit delimiter, the parameter sets before the
/// first random-access NAL unit when the sample lacks its own, then every NAL unit (minus any
/// delimiter of its own) behind a start code. Returns the total length. On error `parts` is left
/// as it was.
pub(crate) fn annexb_parts<'a, I>(
    flavor: NalFlavor,
    sample: &'a [u8],
    length_size: u8,
    parameter_sets: I,
    parts: &mut Vec<&'a [u8]>,
) -> Result<usize, CodecError>
where
    I: Iterator<Item = &'a Bytes> + Clone,
{
    // Validate first so a bad sample leaves `parts` untouched.
    let mut has_parameter_sets = false;
    let mut has_random_access = false;
    for_each_nal(sample, length_size, |nal| {
        if let Some(&first) = nal.first() {
            let t = (flavor.nal_type)(first);
            has_parameter_sets |= (flavor.is_parameter_set)(t);
            has_random_access |= (flavor.is_random_access)(t);
        }
    })?;
    let mut total = START_CODE.len() + flavor.aud.len();
    parts.push(&START_CODE);
    parts.push(flavor.aud);
    let mut inserted = !has_random_access || has_parameter_sets;
    for_each_nal(sample, length_size, |nal| {
        let Some(&first) = nal.first() else {
            return;
        };
        let t = (flavor.nal_type)(first);
        if t == flavor.aud_type {
            return;
        }
        if !inserted && (flavor.is_random_access)(t) {
            for set in parameter_sets.clone() {
                parts.push(&START_CODE);
                parts.push(set);
                total += START_CODE.len() + set.len();
            }
            inserted = true;
        }
        parts.push(&START_CODE);
        parts.push(nal);
        total += START_CODE.len() + nal.len();
    })?;
    Ok(total)
}

/// Appends the Annex-B form of a length-prefixed sample to `out` (see [`annexb_parts`]). On error
/// `out` is left as it was.
pub(crate) fn write_annexb<'a, I>(
    flavor: NalFlavor,
    sample: &'a [u8],
    length_size: u8,
    parameter_sets: I,
    out: &mut Vec<u8>,
) -> Result<(), CodecError>
where
    I: Iterator<Item = &'a Bytes> + Clone,
{
    let mut parts = Vec::with_capacity(16);
    let total = annexb_parts(flavor, sample, length_size, parameter_sets, &mut parts)?;
    out.reserve(total);
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(())
}
