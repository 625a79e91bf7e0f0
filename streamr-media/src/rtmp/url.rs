//! `rtmp://host[:port]/app/stream-key` URLs, as encoders, players and friend nodes write them.

use std::fmt;

/// The default RTMP port.
pub const DEFAULT_PORT: u16 = 1935;

/// A parsed RTMP URL: where to connect, which application, which stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; [`DEFAULT_PORT`] when the URL names none.
    pub port: u16,
    /// Application: the first path segment.
    pub app: String,
    /// Stream key: the rest of the path, query included (it may contain `/`).
    pub stream_key: String,
}

/// Why a string is not a usable RTMP URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpUrlError {
    /// The scheme is not `rtmp://`.
    #[error("unsupported scheme in {0:?}: expected rtmp://")]
    Scheme(String),
    /// No host between `rtmp://` and the path.
    #[error("no host in {0:?}")]
    MissingHost(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port in {0:?}")]
    Port(String),
    /// The path lacks the application or the stream key.
    #[error("{0:?} needs a path of the form /app/stream-key")]
    Path(String),
}

impl RtmpUrl {
    /// Parses `rtmp://host[:port]/app/stream-key`.
    pub fn parse(url: &str) -> Result<Self, RtmpUrlError> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| RtmpUrlError::Scheme(url.into()))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) =
            split_host_port(authority).ok_or_else(|| RtmpUrlError::Port(url.into()))?;
        if host.is_empty() {
            return Err(RtmpUrlError::MissingHost(url.into()));
        }
        let (app, stream_key) = path
            .split_once('/')
            .filter(|(app, key)| !app.is_empty() && !key.is_empty())
            .ok_or_else(|| RtmpUrlError::Path(url.into()))?;
        Ok(Self {
            host: host.into(),
            port,
            app: app.into(),
            stream_key: stream_key.into(),
        })
    }

    /// `host:port` for connecting a socket (IPv6 hosts in brackets).
    pub fn socket_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `tcUrl` a client announces in `connect`: `rtmp://host[:port]/app`.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.socket_address(), self.app)
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.stream_key)
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, parse_port(port)?)),
            None if after.is_empty() => Some((host, DEFAULT_PORT)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, parse_port(port)?)),
        None => Some((authority, DEFAULT_PORT)),
    }
}

fn parse_port(port: &str) -> Option<u16> {
    port.parse().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_app_and_key() {
        let url = RtmpUrl::parse("rtmp://127.0.0.1:19350/live/cam?token=a/b").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 19350);
        assert_eq!(url.app, "live");
        assert_eq!(url.stream_key, "cam?token=a/b");
        assert_eq!(url.tc_url(), "rtmp://127.0.0.1:19350/live");
        assert_eq!(url.to_string(), "rtmp://127.0.0.1:19350/live/cam?token=a/b");
    }

    #[test]
    fn defaults_the_port_and_accepts_ipv6() {
        let url = RtmpUrl::parse("rtmp://[::1]/app/key").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", DEFAULT_PORT));
        assert_eq!(url.socket_address(), "[::1]:1935");
    }

    #[test]
    fn rejects_what_cannot_be_played() {
        for bad in [
            "http://h/app/key",
            "rtmp:///app/key",
            "rtmp://h:0/app/key",
            "rtmp://h:x/app/key",
            "rtmp://h/app",
            "rtmp://h//key",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
