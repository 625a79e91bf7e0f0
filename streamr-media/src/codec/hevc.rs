//! HEVC: the HEVCDecoderConfigurationRecord (hvcC, ISO/IEC 14496-15 8.3.3) and hvcC→Annex-B.

use bytes::{BufMut, Bytes};

use super::avc::{read_parameter_sets, write_parameter_sets};
use super::cursor::Cursor;
use super::nal::{annexb_parts, write_annexb, NalFlavor};
use super::CodecError;

const RECORD: &str = "HEVCDecoderConfigurationRecord";
/// Bytes from general_profile_space to avgFrameRate, kept verbatim for re-encoding.
const GENERAL_LEN: usize = 20;

/// HEVC NAL unit type of a video parameter set.
pub const HEVC_NAL_VPS: u8 = 32;
/// HEVC NAL unit type of a sequence parameter set.
pub const HEVC_NAL_SPS: u8 = 33;
/// HEVC NAL unit type of a picture parameter set.
pub const HEVC_NAL_PPS: u8 = 34;
/// HEVC NAL unit type of an access unit delimiter.
pub const HEVC_NAL_AUD: u8 = 35;

const HEVC_FLAVOR: NalFlavor = NalFlavor {
    nal_type: |b| (b >> 1) & 0x3f,
    // BLA, IDR and CRA pictures (IRAP, types 16..=21) start decoding.
    is_random_access: |t| (16..=21).contains(&t),
    is_parameter_set: |t| (HEVC_NAL_VPS..=HEVC_NAL_PPS).contains(&t),
    aud_type: HEVC_NAL_AUD,
    // nal_unit_type 35, layer 0, temporal id 1; pic_type 2 (any), rbsp stop bit.
    aud: &[0x46, 0x01, 0x50],
};

/// One array of NAL units in an hvcC record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HevcNalArray {
    /// All NAL units of this type are in the record (none in the samples).
    pub complete: bool,
    /// The NAL unit type (32 VPS, 33 SPS, 34 PPS, 39/40 SEI).
    pub nal_type: u8,
    /// The NAL units.
    pub units: Vec<Bytes>,
}

/// The HEVC decoder configuration carried by an FLV/Enhanced RTMP HEVC sequence header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HevcDecoderConfig {
    /// general_profile_idc (1 Main, 2 Main 10).
    pub profile_idc: u8,
    /// general_level_idc (30 × the level, 93 for 3.1).
    pub level_idc: u8,
    /// Size in bytes of the length prefix before each NAL unit in samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// The NAL unit arrays (VPS, SPS, PPS, SEI).
    pub arrays: Vec<HevcNalArray>,
    general: [u8; GENERAL_LEN],
    frame_rate_flags: u8,
}

impl HevcDecoderConfig {
    /// Parses an hvcC record.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(RECORD, data);
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(CodecError::UnsupportedVersion {
                record: RECORD,
                version,
            });
        }
        let mut general = [0u8; GENERAL_LEN];
        general.copy_from_slice(c.take(GENERAL_LEN, "general profile fields")?);
        let frame_rate_flags = c.u8("lengthSizeMinusOne")?;
        let nal_length_size = (frame_rate_flags & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::InvalidNalLengthSize {
                record: RECORD,
                size: nal_length_size,
            });
        }
        let array_count = c.u8("numOfArrays")?;
        let mut arrays = Vec::with_capacity(usize::from(array_count).min(8));
        for _ in 0..array_count {
            let kind = c.u8("NAL_unit_type")?;
            let count = c.u16("numNalus")?;
            let units = read_parameter_sets(&mut c, usize::from(count), "nalUnit")?;
            arrays.push(HevcNalArray {
                complete: kind & 0x80 != 0,
                nal_type: kind & 0x3f,
                units,
            });
        }
        let _ = c.position();
        let profile_idc = general[0] & 0x1f;
        let level_idc = general[11];
        // The public fields own these bits; keep the rest verbatim for re-encoding.
        general[0] &= 0xe0;
        general[11] = 0;
        Ok(HevcDecoderConfig {
            profile_idc,
            level_idc,
            nal_length_size,
            arrays,
            general,
            frame_rate_flags: frame_rate_flags & 0xfc,
        })
    }

    /// Encodes the record (the inverse of [`parse`](Self::parse)).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_u8(1);
        let mut general = self.general;
        general[0] = (general[0] & 0xe0) | (self.profile_idc & 0x1f);
        general[11] = self.level_idc;
        out.put_slice(&general);
        out.put_u8((self.frame_rate_flags & 0xfc) | (self.nal_length_size.wrapping_sub(1) & 0x03));
        let arrays = &self.arrays[..self.arrays.len().min(255)];
        out.put_u8(arrays.len() as u8);
        for array in arrays {
            out.put_u8((u8::from(array.complete) << 7) | (array.nal_type & 0x3f));
            let units = &array.units[..array.units.len().min(usize::from(u16::MAX))];
            out.put_u16(units.len() as u16);
            write_parameter_sets(&mut out, units);
        }
        out
    }

    /// The VPS, SPS and PPS NAL units in that order.
    pub fn parameter_sets(&self) -> Vec<&Bytes> {
        self.parameter_set_iter().collect()
    }

    fn parameter_set_iter(&self) -> impl Iterator<Item = &Bytes> + Clone {
        [HEVC_NAL_VPS, HEVC_NAL_SPS, HEVC_NAL_PPS]
            .into_iter()
            .flat_map(move |t| {
                self.arrays
                    .iter()
                    .filter(move |a| a.nal_type == t)
                    .flat_map(|a| a.units.iter())
            })
    }

    /// Like [`write_annexb`](Self::write_annexb) without copying: lists the pieces in `parts` and
    /// returns their total length. On error `parts` is left as it was.
    pub fn annexb_parts<'a>(
        &'a self,
        sample: &'a [u8],
        parts: &mut Vec<&'a [u8]>,
    ) -> Result<usize, CodecError> {
        annexb_parts(
            HEVC_FLAVOR,
            sample,
            self.nal_length_size,
            self.parameter_set_iter(),
            parts,
        )
    }

    /// Appends the Annex-B form of one hvcC-framed sample to `out`: an access unit delimiter
    /// first, and VPS/SPS/PPS before an IRAP picture unless the sample carries its own.
    pub fn write_annexb(&self, sample: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        write_annexb(
            HEVC_FLAVOR,
            sample,
            self.nal_length_size,
            self.parameter_set_iter(),
            out,
        )
    }
}
