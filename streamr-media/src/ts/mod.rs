//! MPEG-TS muxing (ISO/IEC 13818-1) for HLS segments.
