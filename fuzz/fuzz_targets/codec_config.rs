//! Fuzzes the AVC, HEVC, AV1 and AAC configuration parsers and the Annex-B/ADTS converters: no
//! input makes them panic, and every record that parses encodes to bytes that parse back to the
//! same record (for AAC, within the two-byte form the encoder writes).
#![no_main]

use streamr_media::codec::{
    parse_any_config, AudioSpecificConfig, Av1Config, AvcDecoderConfig, HevcDecoderConfig,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parse_any_config(data);
    if let Ok(avc) = AvcDecoderConfig::parse(data) {
        assert_eq!(AvcDecoderConfig::parse(&avc.encode()).as_ref(), Ok(&avc));
    }
    if let Ok(hevc) = HevcDecoderConfig::parse(data) {
        assert_eq!(HevcDecoderConfig::parse(&hevc.encode()).as_ref(), Ok(&hevc));
    }
    if let Ok(av1) = Av1Config::parse(data) {
        assert_eq!(Av1Config::parse(&av1.to_bytes()).as_ref(), Ok(&av1));
    }
    if let Ok(asc) = AudioSpecificConfig::parse(data) {
        // The two-byte form holds object types below 31 and indexed sampling frequencies.
        if asc.object_type < 31 && asc.sampling_frequency_index < 15 {
            assert_eq!(AudioSpecificConfig::parse(&asc.encode()), Ok(asc));
        }
    }
});
