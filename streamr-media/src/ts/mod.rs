//! MPEG-TS muxing (ISO/IEC 13818-1) for HLS segments.
//!
//! [`FlvTsMuxer`] turns FLV audio/video tags (H.264 or HEVC video, AAC or MP3 audio) into 188-byte
//! transport packets: PAT/PMT with CRC-32/MPEG-2, one PES per frame with PTS/DTS from the FLV
//! timestamp and composition offset, PCR on the video PID, continuity counters per PID and
//! adaptation-field stuffing. It is deterministic and allocates nothing per packet.
//! [`FlvToTs`] (and [`remux_flv_to_ts`] for a file in memory) converts an FLV stream into one
//! continuous transport stream.

mod error;
mod muxer;
mod packet;
mod psi;
mod remux;

pub use error::TsError;
pub use muxer::{
    flv_to_90khz, FlvTsMuxer, MuxOutcome, AUDIO_PID, PCR_LEAD_90KHZ, STREAM_TYPE_AAC,
    STREAM_TYPE_H264, STREAM_TYPE_HEVC, STREAM_TYPE_MPEG1_AUDIO, STREAM_TYPE_MPEG2_AUDIO,
    TIMESTAMP_OFFSET_90KHZ, VIDEO_PID,
};
pub(crate) use packet::pad_continuity_to_16;
pub use packet::{SYNC_BYTE, TIMESTAMP_MASK, TS_PACKET_LEN};
pub use psi::{PAT_PID, PMT_PID, PROGRAM_NUMBER};
pub use remux::{arbitrary_tags, mux_arbitrary_tags, remux_flv_to_ts, FlvToTs, RemuxError};
