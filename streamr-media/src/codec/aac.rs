//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and the ADTS header written per frame.

use bytes::Bytes;

use super::cursor::BitReader;
use super::CodecError;

/// Length of an ADTS header without CRC.
pub const ADTS_HEADER_LEN: usize = 7;
const MAX_ADTS_FRAME_LEN: usize = (1 << 13) - 1;

/// Sampling frequencies by sampling frequency index.
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The AAC decoder configuration carried by an FLV AAC sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 = AAC LC). For HE-AAC (5 or 29) this is the core object type.
    pub object_type: u8,
    /// Sampling frequency index (0..=12) of the core decoder.
    pub sampling_frequency_index: u8,
    /// Channel configuration (1 mono, 2 stereo ...; 0 means a program config element).
    pub channel_configuration: u8,
}

impl AudioSpecificConfig {
    /// Parses the leading fields of an AudioSpecificConfig. For explicit HE-AAC signalling the core
    /// object type and core sampling frequency are kept, as ADTS needs.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new("AudioSpecificConfig", data);
        let mut object_type = read_object_type(&mut r)?;
        let sampling_frequency_index = read_sampling_index(&mut r)?;
        let channel_configuration = r.bits(4, "channelConfiguration")?;
        if is_sbr_or_ps(object_type) {
            let _extension_sampling_index = read_sampling_index(&mut r)?;
            object_type = read_object_type(&mut r)?;
            // The core under SBR or PS signalling is a plain object type: another SBR or PS
            // would have no core to carry, and could not be written back in the two-byte form.
            if is_sbr_or_ps(object_type) {
                return Err(CodecError::UnsupportedAudioConfig {
                    field: "audioObjectType",
                    value: object_type,
                });
            }
        }
        Ok(AudioSpecificConfig {
            object_type: u8::try_from(object_type).map_err(|_| {
                CodecError::UnsupportedAudioConfig {
                    field: "audioObjectType",
                    value: object_type,
                }
            })?,
            sampling_frequency_index: sampling_frequency_index as u8,
            channel_configuration: channel_configuration as u8,
        })
    }

    /// Encodes the two-byte form (object types below 31, indexed sampling frequency).
    pub fn encode(&self) -> [u8; 2] {
        let aot = self.object_type & 0x1f;
        let sfi = self.sampling_frequency_index & 0x0f;
        let ch = self.channel_configuration & 0x0f;
        [(aot << 3) | (sfi >> 1), ((sfi & 1) << 7) | (ch << 3)]
    }

    /// The sampling frequency in Hz, if the index names one.
    pub fn sampling_frequency(&self) -> Option<u32> {
        SAMPLING_FREQUENCIES
            .get(usize::from(self.sampling_frequency_index))
            .copied()
    }

    /// Checks that an ADTS header alone can describe this configuration (a channelConfiguration
    /// of 0 needs its program_config_element in every frame: [`AdtsConfig`]).
    pub fn check_adts(&self) -> Result<(), CodecError> {
        self.check_fields()?;
        if self.channel_configuration == 0 {
            return Err(CodecError::UnsupportedAudioConfig {
                field: "channelConfiguration",
                value: 0,
            });
        }
        Ok(())
    }

    /// Checks the fields of the ADTS header: object type, sampling frequency index and a
    /// channel configuration of at most 7 (0 included).
    fn check_fields(&self) -> Result<(), CodecError> {
        if !(1..=4).contains(&self.object_type) {
            return Err(CodecError::UnsupportedAudioConfig {
                field: "audioObjectType",
                value: u32::from(self.object_type),
            });
        }
        if usize::from(self.sampling_frequency_index) >= SAMPLING_FREQUENCIES.len() {
            return Err(CodecError::UnsupportedAudioConfig {
                field: "samplingFrequencyIndex",
                value: u32::from(self.sampling_frequency_index),
            });
        }
        if self.channel_configuration > 7 {
            return Err(CodecError::UnsupportedAudioConfig {
                field: "channelConfiguration",
                value: u32::from(self.channel_configuration),
            });
        }
        Ok(())
    }

    /// The 7-byte ADTS header (MPEG-4, no CRC) for a raw AAC frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], CodecError> {
        self.check_adts()?;
        self.header(payload_len)
    }

    /// The ADTS header for `payload_len` bytes after it, the fields checked.
    fn header(&self, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], CodecError> {
        self.check_fields()?;
        let frame_len = payload_len
            .checked_add(ADTS_HEADER_LEN)
            .filter(|len| *len <= MAX_ADTS_FRAME_LEN)
            .ok_or(CodecError::AdtsFrameTooLarge { len: payload_len })?;
        let profile = self.object_type - 1;
        let sfi = self.sampling_frequency_index;
        let ch = self.channel_configuration;
        Ok([
            0xFF,
            0xF1,
            (profile << 6) | (sfi << 2) | ((ch >> 2) & 0x01),
            ((ch & 0x03) << 6) | ((frame_len >> 11) as u8 & 0x03),
            (frame_len >> 3) as u8,
            (((frame_len & 0x07) as u8) << 5) | 0x1F,
            0xFC,
        ])
    }
}

/// `ID_PCE`: the syntactic element id of a program_config_element in a raw_data_block.
const ID_PCE: u32 = 5;

/// What the ADTS framing of a stream's AAC frames needs: the AudioSpecificConfig's leading
/// fields and, when its channelConfiguration is 0 (a channel layout no configuration number
/// names, such as 6.1 or 7.0 as ffmpeg's encoder writes them), the program_config_element that
/// describes the channels. ADTS has no room for that element in its header: it goes into every
/// frame, as the first element of the raw_data_block, so that each frame (and each HLS segment)
/// decodes on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdtsConfig {
    config: AudioSpecificConfig,
    program_config: Bytes,
}

impl AdtsConfig {
    /// Parses an AudioSpecificConfig, with its program_config_element when channelConfiguration
    /// is 0, and checks that ADTS can carry the stream.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let config = AudioSpecificConfig::parse(data)?;
        let program_config = if config.channel_configuration == 0 {
            Bytes::from(program_config_element(data)?)
        } else {
            Bytes::new()
        };
        config.check_fields()?;
        Ok(AdtsConfig {
            config,
            program_config,
        })
    }

    /// The AudioSpecificConfig's leading fields.
    pub fn config(&self) -> &AudioSpecificConfig {
        &self.config
    }

    /// The element each frame opens with: `ID_PCE` and the program_config_element, byte-aligned
    /// (empty unless channelConfiguration is 0).
    pub fn program_config(&self) -> &[u8] {
        &self.program_config
    }

    /// The 7-byte ADTS header of a raw AAC frame of `payload_len` bytes, which
    /// [`program_config`](Self::program_config) then the frame follow.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], CodecError> {
        let len = payload_len
            .checked_add(self.program_config.len())
            .ok_or(CodecError::AdtsFrameTooLarge { len: payload_len })?;
        self.config.header(len)
    }
}

/// Copies `count` bits from `r` to `w`; returns them.
fn copy_bits(
    r: &mut BitReader<'_>,
    w: &mut BitWriter,
    count: u32,
    field: &'static str,
) -> Result<u32, CodecError> {
    let value = r.bits(count, field)?;
    w.put(value, count);
    Ok(value)
}

/// The program_config_element (ISO/IEC 14496-3 4.4.1.1) of an AudioSpecificConfig whose
/// channelConfiguration is 0, as a raw_data_block element: `ID_PCE`, then the element, whose
/// byte_alignment() is then relative to the start of the frame it opens.
fn program_config_element(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut r = BitReader::new("AudioSpecificConfig", data);
    let mut object_type = read_object_type(&mut r)?;
    read_sampling_index(&mut r)?;
    r.bits(4, "channelConfiguration")?;
    if is_sbr_or_ps(object_type) {
        read_sampling_index(&mut r)?;
        object_type = read_object_type(&mut r)?;
    }
    if !(1..=4).contains(&object_type) {
        return Err(CodecError::UnsupportedAudioConfig {
            field: "audioObjectType",
            value: object_type,
        });
    }
    // GASpecificConfig up to the element.
    r.bits(1, "frameLengthFlag")?;
    if r.bits(1, "dependsOnCoreCoder")? == 1 {
        r.bits(14, "coreCoderDelay")?;
    }
    r.bits(1, "extensionFlag")?;
    let mut w = BitWriter::default();
    w.put(ID_PCE, 3);
    // element_instance_tag, object_type, sampling_frequency_index.
    copy_bits(&mut r, &mut w, 10, "program_config_element")?;
    let front = copy_bits(&mut r, &mut w, 4, "num_front_channel_elements")?;
    let side = copy_bits(&mut r, &mut w, 4, "num_side_channel_elements")?;
    let back = copy_bits(&mut r, &mut w, 4, "num_back_channel_elements")?;
    let lfe = copy_bits(&mut r, &mut w, 2, "num_lfe_channel_elements")?;
    let assoc = copy_bits(&mut r, &mut w, 3, "num_assoc_data_elements")?;
    let coupling = copy_bits(&mut r, &mut w, 4, "num_valid_cc_elements")?;
    for (present, len, field) in [
        (1, 4, "mono_mixdown_element_number"),
        (1, 4, "stereo_mixdown_element_number"),
        (1, 3, "matrix_mixdown_idx"),
    ] {
        if copy_bits(&mut r, &mut w, present, field)? == 1 {
            copy_bits(&mut r, &mut w, len, field)?;
        }
    }
    // is_cpe (or is_ind_sw) and tag_select of each element; tag_select alone for LFE and data.
    for (count, len) in [
        (front + side + back, 5),
        (lfe, 4),
        (assoc, 4),
        (coupling, 5),
    ] {
        for _ in 0..count {
            copy_bits(&mut r, &mut w, len, "program_config_element")?;
        }
    }
    r.align();
    w.align();
    let comment = copy_bits(&mut r, &mut w, 8, "comment_field_bytes")?;
    for _ in 0..comment {
        copy_bits(&mut r, &mut w, 8, "comment_field_data")?;
    }
    Ok(w.bytes)
}

/// Writes bit fields most significant bit first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, value: u32, count: u32) {
        for shift in (0..count).rev() {
            if self.bits % 8 == 0 {
                self.bytes.push(0);
            }
            if (value >> shift) & 1 == 1 {
                if let Some(last) = self.bytes.last_mut() {
                    *last |= 0x80 >> (self.bits % 8);
                }
            }
            self.bits += 1;
        }
    }

    /// Pads with zero bits to the next byte boundary.
    fn align(&mut self) {
        self.bits = self.bits.next_multiple_of(8);
    }
}

/// Explicit SBR (HE-AAC, object type 5) or PS (HE-AAC v2, object type 29) signalling, which is
/// followed by the extension sampling frequency and the core object type.
fn is_sbr_or_ps(object_type: u32) -> bool {
    object_type == 5 || object_type == 29
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let aot = r.bits(5, "audioObjectType")?;
    if aot == 31 {
        Ok(32 + r.bits(6, "audioObjectTypeExt")?)
    } else {
        Ok(aot)
    }
}

fn read_sampling_index(r: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let index = r.bits(4, "samplingFrequencyIndex")?;
    if index == 15 {
        // An explicit 24-bit frequency: ADTS cannot carry it.
        let frequency = r.bits(24, "samplingFrequency")?;
        return Err(CodecError::UnsupportedAudioConfig {
            field: "samplingFrequency",
            value: frequency,
        });
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AudioSpecificConfig ffmpeg's AAC encoder writes for a 6.1 layout (no
    /// channelConfiguration names it): AAC LC at 48 kHz, channelConfiguration 0, then a
    /// program_config_element with a "Lavc59.37.100" comment.
    const ASC_6_1: &[u8] = &[
        0x11, 0x80, 0x04, 0xc8, 0x48, 0x00, 0x20, 0x00, 0xc4, 0x40, 0x0d, b'L', b'a', b'v', b'c',
        b'5', b'9', b'.', b'3', b'7', b'.', b'1', b'0', b'0', 0x56, 0xe5, 0x00,
    ];

    #[test]
    fn a_program_config_element_opens_every_adts_frame_of_a_channel_configuration_0() {
        let adts = AdtsConfig::parse(ASC_6_1).unwrap();
        assert_eq!(adts.config().channel_configuration, 0);
        // What ffmpeg's ADTS muxer writes after the header of the first frame.
        let mut element = vec![0xa0, 0x99, 0x09, 0x00, 0x04, 0x00, 0x18, 0x88, 0x0d];
        element.extend_from_slice(b"Lavc59.37.100");
        assert_eq!(adts.program_config(), element.as_slice());
        // The frame length counts the element: ffmpeg's header of a 504-byte frame.
        assert_eq!(
            adts.adts_header(504).unwrap(),
            [0xff, 0xf1, 0x4c, 0x00, 0x42, 0xbf, 0xfc]
        );
        // The header alone cannot describe the layout.
        assert!(adts.config().adts_header(504).is_err());
    }

    #[test]
    fn numbered_channel_configurations_need_no_program_config_element() {
        let adts = AdtsConfig::parse(&[0x12, 0x10]).unwrap();
        assert!(adts.program_config().is_empty());
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(adts.adts_header(100), asc.adts_header(100));
    }

    #[test]
    fn a_truncated_program_config_element_is_refused() {
        for len in 2..ASC_6_1.len() - 3 {
            assert!(
                matches!(
                    AdtsConfig::parse(&ASC_6_1[..len]),
                    Err(CodecError::Truncated { .. })
                ),
                "{len} bytes"
            );
        }
    }
}
