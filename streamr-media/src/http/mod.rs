//! HTTP delivery of live streams: HLS playlists and segments, and HTTP-FLV.
