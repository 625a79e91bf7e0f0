//! Relay fan-out: one publisher per stream key, many viewers, shared frames, GOP cache, slow-viewer policy.
