//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and the ADTS header written per frame.

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

    /// Checks that ADTS can describe this configuration.
    pub fn check_adts(&self) -> Result<(), CodecError> {
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
        if !(1..=7).contains(&self.channel_configuration) {
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
