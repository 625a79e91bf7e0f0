//! AV1: the AV1CodecConfigurationRecord (`av1C`, AV1 Codec ISO Media File Format Binding 2.3)
//! that an Enhanced RTMP `av01` sequence start carries, the RFC 6381 codec string, the picture
//! size from its sequence header OBU, and samples without temporal delimiters (ISOBMFF form).

use bytes::{Bytes, BytesMut};

use super::cursor::{BitReader, Cursor};
use super::CodecError;

const RECORD: &str = "AV1CodecConfigurationRecord";
const SEQUENCE_HEADER: &str = "AV1 sequence header OBU";
/// marker (1) and version (1) in the record's first byte.
const MARKER_AND_VERSION: u8 = 0x81;
/// OBU type of a sequence header.
pub const AV1_OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub const AV1_OBU_TEMPORAL_DELIMITER: u8 = 2;

/// The AV1 decoder configuration carried by an Enhanced RTMP `av01` sequence start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Av1Config {
    /// seq_profile (0 Main, 1 High, 2 Professional).
    pub seq_profile: u8,
    /// `seq_level_idx[0]`: `(major - 2) * 4 + minor`, so 8 is level 4.0; 31 is unconstrained.
    pub seq_level_idx_0: u8,
    /// `seq_tier[0]`: the High tier.
    pub seq_tier_0: bool,
    /// high_bitdepth (10 or 12 bits).
    pub high_bitdepth: bool,
    /// twelve_bit (with high_bitdepth: 12 bits).
    pub twelve_bit: bool,
    /// monochrome.
    pub monochrome: bool,
    /// chroma_subsampling_x.
    pub chroma_subsampling_x: bool,
    /// chroma_subsampling_y.
    pub chroma_subsampling_y: bool,
    /// chroma_sample_position (2 bits).
    pub chroma_sample_position: u8,
    /// initial_presentation_delay_minus_one, when present.
    pub initial_presentation_delay_minus_one: Option<u8>,
    /// configOBUs: the sequence header OBU (and possibly metadata OBUs), low overhead format.
    pub config_obus: Bytes,
}

impl Av1Config {
    /// Parses an `av1C` record.
    pub fn parse(record: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(RECORD, record);
        let first = c.u8("marker / version")?;
        if first != MARKER_AND_VERSION {
            return Err(CodecError::UnsupportedVersion {
                record: RECORD,
                version: first & 0x7f,
            });
        }
        let profile_level = c.u8("seq_profile / seq_level_idx_0")?;
        let flags = c.u8("seq_tier_0 ... chroma_sample_position")?;
        let delay = c.u8("initial_presentation_delay")?;
        let rest = record.get(c.position()..).unwrap_or_default();
        Ok(Av1Config {
            seq_profile: profile_level >> 5,
            seq_level_idx_0: profile_level & 0x1f,
            seq_tier_0: flags & 0x80 != 0,
            high_bitdepth: flags & 0x40 != 0,
            twelve_bit: flags & 0x20 != 0,
            monochrome: flags & 0x10 != 0,
            chroma_subsampling_x: flags & 0x08 != 0,
            chroma_subsampling_y: flags & 0x04 != 0,
            chroma_sample_position: flags & 0x03,
            initial_presentation_delay_minus_one: (delay & 0x10 != 0).then_some(delay & 0x0f),
            config_obus: Bytes::copy_from_slice(rest),
        })
    }

    /// The record's bytes (what [`Av1Config::parse`] reads back).
    pub fn to_bytes(&self) -> Vec<u8> {
        let bit = |flag: bool, at: u8| u8::from(flag) << at;
        let mut out = vec![
            MARKER_AND_VERSION,
            (self.seq_profile & 0x07) << 5 | (self.seq_level_idx_0 & 0x1f),
            bit(self.seq_tier_0, 7)
                | bit(self.high_bitdepth, 6)
                | bit(self.twelve_bit, 5)
                | bit(self.monochrome, 4)
                | bit(self.chroma_subsampling_x, 3)
                | bit(self.chroma_subsampling_y, 2)
                | (self.chroma_sample_position & 0x03),
            self.initial_presentation_delay_minus_one
                .map_or(0, |delay| 0x10 | (delay & 0x0f)),
        ];
        out.extend_from_slice(&self.config_obus);
        out
    }

    /// Bits per sample: 8, 10 or 12.
    pub fn bit_depth(&self) -> u8 {
        match (self.high_bitdepth, self.twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        }
    }

    /// The codec string `av01.P.LLT.DD` (AV1 ISOBMFF binding, "Codecs Parameter String"): profile,
    /// two-digit level index, tier `M` or `H`, two-digit bit depth.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            self.bit_depth()
        )
    }

    /// The largest picture (max_frame_width, max_frame_height) the sequence header OBU in
    /// configOBUs announces; `None` when there is none or it is truncated.
    pub fn max_frame_size(&self) -> Option<(u32, u32)> {
        obus(&self.config_obus)
            .map_while(Result::ok)
            .find(|obu| obu.obu_type == AV1_OBU_SEQUENCE_HEADER)
            .and_then(|obu| sequence_header_frame_size(obu.payload).ok())
    }
}

/// One OBU in low overhead bitstream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// obu_type.
    pub obu_type: u8,
    /// The whole OBU: header, size field and payload.
    pub bytes: &'a [u8],
    /// The payload after the header and size field.
    pub payload: &'a [u8],
}

/// The OBUs of `data` front to back. An OBU without a size field runs to the end of `data`.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Result<Obu<'_>, CodecError>> {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= data.len() {
            return None;
        }
        let parsed = parse_obu(data, at);
        match &parsed {
            Ok(obu) => at = at.saturating_add(obu.bytes.len()),
            Err(_) => failed = true,
        }
        Some(parsed)
    })
}

fn parse_obu(data: &[u8], start: usize) -> Result<Obu<'_>, CodecError> {
    let truncated = |field, offset| CodecError::Truncated {
        record: "AV1 OBU",
        field,
        offset,
    };
    let header = *data.get(start).ok_or(truncated("obu_header", start))?;
    let obu_type = (header >> 3) & 0x0f;
    let has_extension = header & 0x04 != 0;
    let has_size = header & 0x02 != 0;
    let mut at = start + 1 + usize::from(has_extension);
    if at > data.len() {
        return Err(truncated("obu_extension_header", start + 1));
    }
    let size = if has_size {
        let (size, len) =
            leb128(data.get(at..).unwrap_or_default()).ok_or(truncated("obu_size", at))?;
        at += len;
        usize::try_from(size).map_err(|_| truncated("obu_size", at))?
    } else {
        data.len() - at
    };
    let end = at
        .checked_add(size)
        .filter(|end| *end <= data.len())
        .ok_or(truncated("OBU payload", at))?;
    Ok(Obu {
        obu_type,
        bytes: &data[start..end],
        payload: &data[at..end],
    })
}

/// An unsigned LEB128 value (at most 8 bytes, as AV1 allows) and its length in bytes.
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The sample without its temporal delimiter OBUs, which the ISOBMFF binding leaves out of
/// samples (Enhanced RTMP encoders may keep them). Zero-copy when the delimiters lead the
/// sample, as encoders write them; an unreadable sample is returned unchanged.
pub fn without_temporal_delimiters(sample: Bytes) -> Bytes {
    let Some(kept) = ranges_without_temporal_delimiters(&sample) else {
        return sample;
    };
    match kept.as_slice() {
        [] => Bytes::new(),
        [(start, end)] => sample.slice(*start..*end),
        ranges => {
            let mut out = BytesMut::with_capacity(sample.len());
            for (start, end) in ranges {
                out.extend_from_slice(&sample[*start..*end]);
            }
            out.freeze()
        }
    }
}

/// The byte ranges of `sample` that are not temporal delimiters, adjacent ones merged; `None`
/// when an OBU is unreadable.
fn ranges_without_temporal_delimiters(sample: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut start = 0usize;
    for obu in obus(sample) {
        let obu = obu.ok()?;
        let end = start + obu.bytes.len();
        if obu.obu_type != AV1_OBU_TEMPORAL_DELIMITER {
            match kept.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => kept.push((start, end)),
            }
        }
        start = end;
    }
    Some(kept)
}

/// max_frame_width_minus_1 + 1 and max_frame_height_minus_1 + 1 of a sequence header OBU
/// payload (AV1 specification 5.5.1).
fn sequence_header_frame_size(payload: &[u8]) -> Result<(u32, u32), CodecError> {
    let mut r = BitReader::new(SEQUENCE_HEADER, payload);
    r.bits(3, "seq_profile")?;
    r.bits(1, "still_picture")?;
    let reduced = r.bits(1, "reduced_still_picture_header")? == 1;
    if reduced {
        r.bits(5, "seq_level_idx[0]")?;
    } else {
        let timing_info = r.bits(1, "timing_info_present_flag")? == 1;
        let mut decoder_model_info = false;
        let mut buffer_delay_bits = 0;
        if timing_info {
            r.bits(32, "num_units_in_display_tick")?;
            r.bits(32, "time_scale")?;
            if r.bits(1, "equal_picture_interval")? == 1 {
                uvlc(&mut r)?;
            }
            decoder_model_info = r.bits(1, "decoder_model_info_present_flag")? == 1;
            if decoder_model_info {
                buffer_delay_bits = r.bits(5, "buffer_delay_length_minus_1")? + 1;
                r.bits(32, "num_units_in_decoding_tick")?;
                r.bits(5, "buffer_removal_time_length_minus_1")?;
                r.bits(5, "frame_presentation_time_length_minus_1")?;
            }
        }
        let initial_display_delay = r.bits(1, "initial_display_delay_present_flag")? == 1;
        let operating_points = r.bits(5, "operating_points_cnt_minus_1")? + 1;
        for _ in 0..operating_points {
            r.bits(12, "operating_point_idc")?;
            if r.bits(5, "seq_level_idx")? > 7 {
                r.bits(1, "seq_tier")?;
            }
            if decoder_model_info && r.bits(1, "decoder_model_present_for_this_op")? == 1 {
                r.bits(buffer_delay_bits, "decoder_buffer_delay")?;
                r.bits(buffer_delay_bits, "encoder_buffer_delay")?;
                r.bits(1, "low_delay_mode_flag")?;
            }
            if initial_display_delay && r.bits(1, "initial_display_delay_present_for_this_op")? == 1
            {
                r.bits(4, "initial_display_delay_minus_1")?;
            }
        }
    }
    let width_bits = r.bits(4, "frame_width_bits_minus_1")? + 1;
    let height_bits = r.bits(4, "frame_height_bits_minus_1")? + 1;
    let width = r.bits(width_bits, "max_frame_width_minus_1")?;
    let height = r.bits(height_bits, "max_frame_height_minus_1")?;
    Ok((width.saturating_add(1), height.saturating_add(1)))
}

/// An AV1 `uvlc()` value (only skipped here).
fn uvlc(r: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let mut leading_zeros = 0u32;
    while r.bits(1, "uvlc")? == 0 {
        leading_zeros += 1;
        if leading_zeros >= 32 {
            return Ok(u32::MAX);
        }
    }
    let value = r.bits(leading_zeros, "uvlc")?;
    Ok(value.saturating_add((1u32 << leading_zeros) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A profile 0 sequence header OBU (with size field) up to the maximum frame size: no
    /// timing info, one operating point, 16-bit frame size fields.
    fn sequence_header_obu(width: u32, height: u32) -> Vec<u8> {
        let mut bits: Vec<u8> = Vec::new();
        let mut put = |value: u32, count: u32| {
            for i in (0..count).rev() {
                bits.push(((value >> i) & 1) as u8);
            }
        };
        put(0, 3); // seq_profile
        put(0, 1); // still_picture
        put(0, 1); // reduced_still_picture_header
        put(0, 1); // timing_info_present_flag
        put(0, 1); // initial_display_delay_present_flag
        put(0, 5); // operating_points_cnt_minus_1
        put(0, 12); // operating_point_idc
        put(0, 5); // seq_level_idx
        put(15, 4); // frame_width_bits_minus_1
        put(15, 4); // frame_height_bits_minus_1
        put(width - 1, 16);
        put(height - 1, 16);
        put(1, 1); // the rest of the header is not read here
        let mut payload = vec![0u8; bits.len().div_ceil(8)];
        for (i, bit) in bits.iter().enumerate() {
            payload[i / 8] |= bit << (7 - i % 8);
        }
        let mut obu = vec![0x0A, payload.len() as u8];
        obu.extend_from_slice(&payload);
        obu
    }

    #[test]
    fn record_fields_codec_string_and_picture_size() {
        let mut record = vec![0x81, 0x08, 0x0C, 0x00];
        record.extend_from_slice(&sequence_header_obu(160, 90));
        let config = Av1Config::parse(&record).unwrap();
        assert_eq!(config.seq_profile, 0);
        assert_eq!(config.seq_level_idx_0, 8);
        assert!(config.chroma_subsampling_x && config.chroma_subsampling_y);
        assert_eq!(config.codec_string(), "av01.0.08M.08");
        assert_eq!(config.max_frame_size(), Some((160, 90)));
        assert_eq!(config.to_bytes(), record);
    }

    #[test]
    fn ten_bit_high_tier_codec_string() {
        let config = Av1Config::parse(&[0x81, 0x2D, 0xCC, 0x00]).unwrap();
        assert_eq!(config.codec_string(), "av01.1.13H.10");
        assert_eq!(config.max_frame_size(), None);
    }

    #[test]
    fn wrong_marker_or_short_record_is_refused() {
        assert!(matches!(
            Av1Config::parse(&[0x01, 0, 0, 0]),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            Av1Config::parse(&[0x81, 0]),
            Err(CodecError::Truncated { offset: 2, .. })
        ));
    }

    #[test]
    fn temporal_delimiters_are_left_out_without_copying_a_leading_one() {
        let frame = [0x32, 0x03, 0xAA, 0xBB, 0xCC];
        let mut sample = vec![0x12, 0x00];
        sample.extend_from_slice(&frame);
        let sample = Bytes::from(sample);
        let stripped = without_temporal_delimiters(sample.clone());
        assert_eq!(&stripped[..], &frame);
        assert_eq!(stripped.as_ptr(), sample[2..].as_ptr());
        let mut middle = frame.to_vec();
        middle.extend_from_slice(&[0x12, 0x00]);
        middle.extend_from_slice(&frame);
        let stripped = without_temporal_delimiters(Bytes::from(middle));
        assert_eq!(&stripped[..], &[frame, frame].concat()[..]);
    }

    proptest! {
        #[test]
        fn records_round_trip(
            profile in 0u8..8,
            level in 0u8..32,
            flags in any::<u8>(),
            delay in proptest::option::of(0u8..16),
            obus in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let config = Av1Config {
                seq_profile: profile,
                seq_level_idx_0: level,
                seq_tier_0: flags & 0x80 != 0,
                high_bitdepth: flags & 0x40 != 0,
                twelve_bit: flags & 0x20 != 0,
                monochrome: flags & 0x10 != 0,
                chroma_subsampling_x: flags & 0x08 != 0,
                chroma_subsampling_y: flags & 0x04 != 0,
                chroma_sample_position: flags & 0x03,
                initial_presentation_delay_minus_one: delay,
                config_obus: Bytes::from(obus),
            };
            prop_assert_eq!(Av1Config::parse(&config.to_bytes()).unwrap(), config);
        }

        #[test]
        fn picture_sizes_round_trip(width in 1u32..=65_536, height in 1u32..=65_536) {
            let mut record = vec![0x81, 0x08, 0x0C, 0x00];
            record.extend_from_slice(&sequence_header_obu(width, height));
            prop_assert_eq!(Av1Config::parse(&record).unwrap().max_frame_size(), Some((width, height)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(config) = Av1Config::parse(&data) {
                let _ = config.max_frame_size();
            }
            let stripped = without_temporal_delimiters(Bytes::from(data.clone()));
            prop_assert!(stripped.len() <= data.len());
        }
    }
}
