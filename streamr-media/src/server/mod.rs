//! The tokio RTMP server that drives the sans-IO sessions and the relay.
