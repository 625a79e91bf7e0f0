//! H.264: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3) and AVCC→Annex-B conversion.

use bytes::{BufMut, Bytes};

use super::cursor::Cursor;
use super::nal::{annexb_parts, write_annexb, NalFlavor};
use super::CodecError;

const RECORD: &str = "AVCDecoderConfigurationRecord";

/// H.264 NAL unit type of an IDR slice.
pub const AVC_NAL_IDR: u8 = 5;
/// H.264 NAL unit type of a sequence parameter set.
pub const AVC_NAL_SPS: u8 = 7;
/// H.264 NAL unit type of a picture parameter set.
pub const AVC_NAL_PPS: u8 = 8;
/// H.264 NAL unit type of an access unit delimiter.
pub const AVC_NAL_AUD: u8 = 9;

const AVC_FLAVOR: NalFlavor = NalFlavor {
    nal_type: |b| b & 0x1f,
    is_random_access: |t| t == AVC_NAL_IDR,
    is_parameter_set: |t| t == AVC_NAL_SPS || t == AVC_NAL_PPS,
    aud_type: AVC_NAL_AUD,
    // nal_unit_type 9, primary_pic_type 7 (any slice type), rbsp stop bit.
    aud: &[0x09, 0xF0],
};

/// The H.264 decoder configuration carried by an FLV AVC sequence header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AvcDecoderConfig {
    /// AVCProfileIndication (for example 66 baseline, 77 main, 100 high).
    pub profile: u8,
    /// profile_compatibility flags.
    pub profile_compatibility: u8,
    /// AVCLevelIndication (for example 31 for level 3.1).
    pub level: u8,
    /// Size in bytes of the length prefix before each NAL unit in samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

impl AvcDecoderConfig {
    /// Parses a record. Bytes after the PPS list (high-profile chroma fields) are ignored.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(RECORD, data);
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(CodecError::UnsupportedVersion {
                record: RECORD,
                version,
            });
        }
        let profile = c.u8("AVCProfileIndication")?;
        let profile_compatibility = c.u8("profile_compatibility")?;
        let level = c.u8("AVCLevelIndication")?;
        let nal_length_size = (c.u8("lengthSizeMinusOne")? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::InvalidNalLengthSize {
                record: RECORD,
                size: nal_length_size,
            });
        }
        let sps_count = c.u8("numOfSequenceParameterSets")? & 0x1f;
        let sps = read_parameter_sets(&mut c, usize::from(sps_count), "sequenceParameterSet")?;
        let pps_count = c.u8("numOfPictureParameterSets")?;
        let pps = read_parameter_sets(&mut c, usize::from(pps_count), "pictureParameterSet")?;
        Ok(AvcDecoderConfig {
            profile,
            profile_compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// Encodes the record (the inverse of [`parse`](Self::parse), without high-profile extras).
    /// At most 31 SPS and 255 PPS are written, each truncated to 65535 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            7 + self
                .sps
                .iter()
                .chain(&self.pps)
                .map(|p| p.len() + 2)
                .sum::<usize>(),
        );
        out.put_u8(1);
        out.put_u8(self.profile);
        out.put_u8(self.profile_compatibility);
        out.put_u8(self.level);
        out.put_u8(0xfc | (self.nal_length_size.wrapping_sub(1) & 0x03));
        let sps = &self.sps[..self.sps.len().min(31)];
        out.put_u8(0xe0 | sps.len() as u8);
        write_parameter_sets(&mut out, sps);
        let pps = &self.pps[..self.pps.len().min(255)];
        out.put_u8(pps.len() as u8);
        write_parameter_sets(&mut out, pps);
        out
    }

    /// Appends the Annex-B form of one AVCC sample (an FLV AVC NALU body) to `out`: an access unit
    /// delimiter first, and the SPS and PPS before an IDR slice unless the sample carries its own.
    pub fn write_annexb(&self, sample: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let sets = self.sps.iter().chain(&self.pps);
        write_annexb(AVC_FLAVOR, sample, self.nal_length_size, sets, out)
    }

    /// Like [`write_annexb`](Self::write_annexb) without copying: lists the pieces (start codes,
    /// delimiter, parameter sets, the sample's NAL units) in `parts` and returns their total
    /// length. On error `parts` is left as it was.
    pub fn annexb_parts<'a>(
        &'a self,
        sample: &'a [u8],
        parts: &mut Vec<&'a [u8]>,
    ) -> Result<usize, CodecError> {
        let sets = self.sps.iter().chain(&self.pps);
        annexb_parts(AVC_FLAVOR, sample, self.nal_length_size, sets, parts)
    }
}

pub(crate) fn read_parameter_sets(
    c: &mut Cursor<'_>,
    count: usize,
    field: &'static str,
) -> Result<Vec<Bytes>, CodecError> {
    let mut sets = Vec::with_capacity(count.min(32));
    for _ in 0..count {
        let len = c.u16(field)?;
        sets.push(Bytes::copy_from_slice(c.take(usize::from(len), field)?));
    }
    Ok(sets)
}

pub(crate) fn write_parameter_sets(out: &mut Vec<u8>, sets: &[Bytes]) {
    for set in sets {
        let set = &set[..set.len().min(usize::from(u16::MAX))];
        out.put_u16(set.len() as u16);
        out.put_slice(set);
    }
}
