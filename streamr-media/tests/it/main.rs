//! streamr-media's integration tests in one binary (one link instead of one per file); each file is a
//! module. hostile_rtmp stays a binary of its own: it installs a process-wide log subscriber.

#[path = "../common/mod.rs"]
mod common;

mod enhanced_publishers;
mod examples;
mod flv_reader;
mod fmp4_boxes;
mod hls_audio;
mod hls_directory_mirror;
mod hls_gops;
mod hls_interop_sweep;
mod hls_multivariant;
mod hls_segmenter;
mod hostile_flv_tag;
mod http_fast_path;
mod http_flv_raw;
mod http_flv_slow_viewer;
mod http_flv_tracks;
mod http_live;
mod http_ll_hls;
mod interop_rtmp;
mod interop_vlc;
mod ll_hls;
mod ll_hls_relay;
mod ll_part_notices;
mod ll_relay_numbering;
mod ll_relay_pull_end;
mod long_gop_pull;
mod play_gate;
mod publish_flv;
mod relay_resume;
mod relay_server;
mod rtmp_client_ffmpeg;
mod rtmp_ffmpeg_capture;
mod rtmp_fuzz_seeds;
mod rtmp_node_notices;
mod rtmp_play_recording;
mod rtmp_sendfile;
mod rtmp_session;
mod rtmp_session_gstreamer;
mod rtmp_session_players;
mod rtmp_write_deadline;
mod slow_viewer;
mod timed_data_interop;
mod ts_codec_config;
mod ts_mux;
mod upstream_pull;
