//! Fragmented MP4 (CMAF) muxing, sans-IO: init segments and fragments as bytes.
//!
//! [`init_segment`] writes the CMAF header (`ftyp`, `moov` with one `trak` per track and
//! `mvex`) from the codec configuration records carried by FLV sequence headers
//! ([`TrackConfig`]: H.264 `avcC`, HEVC `hvcC`, AV1 `av1C`, AAC AudioSpecificConfig,
//! Opus). [`fragment`]
//! writes one `moof`+`mdat` from samples with their durations, composition offsets (B-frames)
//! and sync flags. Both are pure functions of their input: every node muxing the same media
//! produces the same bytes. [`read_boxes`] and [`box_paths`] walk boxes for checks and tests.
//!
//! ```
//! use bytes::Bytes;
//! use streamr_media::fmp4::{fragment, init_segment, box_paths, Sample, TrackConfig, TrackRun};
//!
//! let aac = TrackConfig::aac(&[0x12, 0x10]).unwrap(); // AAC LC, 44.1 kHz, stereo
//! let init = init_segment(&[aac]).unwrap();
//! assert!(box_paths(&init).unwrap().contains(&"moov/mvex/trex".to_string()));
//! let sample = Sample { duration: 1024, composition_offset: 0, is_sync: true, data: Bytes::from_static(&[0x21, 0x00]) };
//! let samples = [sample];
//! let frag = fragment(1, &[TrackRun { track_id: 2, base_decode_time: 0, samples: &samples }]).unwrap();
//! assert_eq!(box_paths(&frag).unwrap()[..2], ["moof".to_string(), "moof/mfhd".to_string()]);
//! ```

mod error;
mod fragment;
mod init;
mod reader;
mod sps;
mod writer;

pub use error::Fmp4Error;
pub use fragment::{fragment, Sample, TrackRun};
pub use init::{init_segment, TrackConfig, AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};
pub use reader::{box_paths, parse_any_boxes, read_boxes, BoxRef};
pub use sps::{avc_picture_size, hevc_picture_size};
