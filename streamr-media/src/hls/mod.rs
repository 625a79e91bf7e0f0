//! HLS: the live segmenter and playlists.
