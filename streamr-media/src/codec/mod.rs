//! Codec configuration records: H.264 (AVCDecoderConfigurationRecord), HEVC (hvcC) and AAC (AudioSpecificConfig).
