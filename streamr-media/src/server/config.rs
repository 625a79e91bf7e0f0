//! Configuration of the RTMP relay server.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::relay::RelayConfig;
use crate::rtmp::chunk::DEFAULT_MAX_MESSAGE_SIZE;

/// Settings of a [`RelayServer`](super::RelayServer). `Default` is a ready local origin. Every
/// deadline must be at least [`MIN_DEADLINE`]: none of them can be turned off with zero
/// ([`RelayServerConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayServerConfig {
    /// Address to listen on (default `127.0.0.1:1935`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// Chunk size the server announces and sends with (default 4096).
    pub chunk_size: u32,
    /// Fan-out policy: GOP cache, viewer lag budget, stream and viewer limits, and how a
    /// publisher's frames are batched for its players ([`RelayConfig::batch`]). Each woken player
    /// writes everything available in one vectored write at once; frames that pile up while its
    /// socket is full go out together when it drains.
    pub relay: RelayConfig,
    /// A peer that takes no byte of what it is sent for this long loses its connection (default
    /// 20 s). The deadline is on progress, not on a batch's length: a slow player that keeps
    /// reading is not cut, however long a batch (its first, the GOP cache) takes it.
    pub write_timeout: Duration,
    /// A connection that has not finished the handshake and `connect` within this time is closed
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// A connection that has sent `connect` but neither publishes nor plays within this time
    /// (after `connect`, or after its last publish or play ended) is closed (default 10 s).
    pub setup_timeout: Duration,
    /// A player of a stream that has had no publisher for this long is closed (default 5 min).
    pub play_wait_timeout: Duration,
    /// A publisher that sends nothing for this long is disconnected, freeing its stream key
    /// (default 30 s).
    pub publisher_idle_timeout: Duration,
    /// Longest message a peer may send (default 16 MiB).
    pub max_message_size: u32,
    /// Most simultaneous connections; more are refused on accept (default 10 000).
    pub max_connections: usize,
    /// Most simultaneous connections from one client address (IPv6: one /64); more are refused
    /// on accept (default 128), so one client cannot take every connection.
    pub max_connections_per_client: usize,
    /// Kernel send buffer per connection in bytes (`SO_SNDBUF`), or `None` for the system's
    /// autotuning. A small buffer bounds the memory a stalled viewer pins in the kernel and
    /// makes the write timeout notice it sooner.
    pub send_buffer_size: Option<u32>,
    /// Send players `NetStream.Play.UnpublishNotify` / `PublishNotify` when their publisher
    /// leaves and returns (default off: ffmpeg and librtmp players stop on UnpublishNotify, while
    /// without it they simply wait and resume when the stream is republished).
    pub notify_players_on_unpublish: bool,
    /// Smallest batch of a player's frames on a plain TCP connection (Linux) sent with
    /// `sendfile` from its stream's shared in-memory copy of the chunked frames
    /// ([`crate::shared_bytes`]) instead of a vectored write of the frames' buffers (default
    /// [`SENDFILE_MIN_BYTES`]); `None`: always vectored writes. RTMPS players always get vectored
    /// writes; both give the same bytes.
    pub sendfile_min_bytes: Option<usize>,
}

/// Default [`RelayServerConfig::sendfile_min_bytes`]: below it the copy costs less than what
/// sharing pages costs the kernel (as for HTTP-FLV, `crate::http::ZERO_COPY_MIN_BYTES`).
pub const SENDFILE_MIN_BYTES: usize = 16 * 1024;

impl Default for RelayServerConfig {
    fn default() -> Self {
        RelayServerConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 1935)),
            chunk_size: 4096,
            relay: RelayConfig::default(),
            write_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(10),
            play_wait_timeout: Duration::from_secs(300),
            publisher_idle_timeout: Duration::from_secs(30),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 10_000,
            max_connections_per_client: 128,
            send_buffer_size: None,
            notify_players_on_unpublish: false,
            sendfile_min_bytes: Some(SENDFILE_MIN_BYTES),
        }
    }
}

/// The shortest deadline a [`RelayServerConfig`] may have (shorter, zero above all, would close
/// every connection at once): the networking layer's, as for HTTP.
pub use streamr_net::MIN_DEADLINE;

/// A deadline of [`RelayServerConfig`] too short to serve with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "RTMP {setting} of {value:?} is too short: it must be at least {min:?}, or every \
     connection times out at once",
    min = MIN_DEADLINE
)]
pub struct InvalidDeadline {
    /// The setting (`write_timeout`, ...).
    pub setting: &'static str,
    /// Its value.
    pub value: Duration,
}

impl From<InvalidDeadline> for std::io::Error {
    fn from(invalid: InvalidDeadline) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, invalid)
    }
}

impl RelayServerConfig {
    /// Checks that every deadline is at least [`MIN_DEADLINE`]; the server's start functions
    /// refuse a configuration that fails this ([`std::io::ErrorKind::InvalidInput`]).
    pub fn validate(&self) -> Result<(), InvalidDeadline> {
        for (setting, value) in [
            ("write_timeout", self.write_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("setup_timeout", self.setup_timeout),
            ("play_wait_timeout", self.play_wait_timeout),
            ("publisher_idle_timeout", self.publisher_idle_timeout),
        ] {
            if value < MIN_DEADLINE {
                return Err(InvalidDeadline { setting, value });
            }
        }
        Ok(())
    }

    /// The default configuration listening on `bind`.
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Sets the smallest player batch sent with `sendfile` (`None`: never).
    pub fn with_sendfile_min_bytes(mut self, min: Option<usize>) -> Self {
        self.sendfile_min_bytes = min;
        self
    }

    /// Sets the fan-out policy.
    pub fn with_relay(mut self, relay: RelayConfig) -> Self {
        self.relay = relay;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_deadline_is_invalid_and_refused_at_start() {
        assert_eq!(RelayServerConfig::default().validate(), Ok(()));
        let mut config =
            RelayServerConfig::default().with_bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.setup_timeout = MIN_DEADLINE;
        assert_eq!(config.validate(), Ok(()));
        config.write_timeout = Duration::ZERO;
        let invalid = config.validate().unwrap_err();
        assert_eq!(invalid.setting, "write_timeout");
        assert!(invalid.to_string().contains("write_timeout"), "{invalid}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(super::super::RelayServer::start(config))
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("write_timeout"), "{error}");
    }
}
