//! RTMP protocol: handshake, chunk stream, messages and the sans-IO client and server sessions.
