//! AMF0 encoding and decoding (Action Message Format version 0), used by RTMP commands and FLV script data.
