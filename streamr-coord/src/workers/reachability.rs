//! Connect-back checks: can the rest of the internet reach the addresses a node advertises?
//!
//! A friend's node at home advertises its address, but behind a home router nobody may be able
//! to connect to it. When a node registers, and again every
//! [`crate::CoordConfig::reachability_interval`], the coordinator connects back to the node's
//! RTMP address (an RTMP handshake: C0+C1 sent, S0+S1 read) and its HTTP address
//! (`GET /healthz`), each within [`crate::CoordConfig::reachability_timeout`], and stores the
//! outcome. A node found unreachable at the addresses it still advertises is never routed
//! viewers; its report (`GET /nodes/{id}/reachability`), the dashboard and the node's own log
//! say which port to forward.

use std::collections::HashSet;
use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock::now_ms;
use crate::error::StorageError;
use crate::state::Shared;
use crate::storage::{NodeRecord, ReachabilityRecord};
use crate::WorkerError;

/// RTMP's handshake: version byte C0/S0, then 1536-byte C1/S1.
const RTMP_VERSION: u8 = 3;
const RTMP_HANDSHAKE_LEN: usize = 1536;
/// An unreachable node is checked again at least this often (milliseconds).
const UNREACHABLE_RECHECK_MS: i64 = 10_000;

/// Where a URL points: host (IPv6 without brackets) and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address literal.
    pub(crate) host: String,
    /// TCP port (the scheme's default when the URL names none).
    pub(crate) port: u16,
}

impl Endpoint {
    fn connect_target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The host and port of an `rtmp://`, `rtmps://`, `http://` or `https://` URL.
pub(crate) fn endpoint_of(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "rtmp" => 1935,
        "rtmps" | "https" => 443,
        "http" => 80,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("unclosed IPv6 literal in {url:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("bad port {port:?} in {url:?}"))?,
        None => default_port,
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

/// The reachability report of `node` from its last check (of its current addresses, if any),
/// as `GET /nodes/{id}/reachability` answers it.
pub fn report(
    node: &NodeRecord,
    checked: Option<ReachabilityRecord>,
    checks_enabled: bool,
) -> streamr_client::wire::ReachabilityReport {
    let status = match &checked {
        None => "unchecked",
        Some(r) if r.reachable() => "reachable",
        Some(_) => "unreachable",
    };
    streamr_client::wire::ReachabilityReport {
        node_id: node.id.clone(),
        checks_enabled,
        status: status.into(),
        rtmp_url: node.rtmp_url.clone(),
        http_url: node.http_url.clone(),
        rtmp_reachable: checked.as_ref().map(|r| r.rtmp_reachable),
        http_reachable: checked.as_ref().map(|r| r.http_reachable),
        rtmp_error: checked
            .as_ref()
            .map(|r| r.rtmp_error.clone())
            .unwrap_or_default(),
        http_error: checked
            .as_ref()
            .map(|r| r.http_error.clone())
            .unwrap_or_default(),
        checked_at_ms: checked.as_ref().map(|r| r.checked_at_ms),
        hint: checked.as_ref().and_then(forward_hint),
    }
}

/// What an operator should do about a failed check, in one sentence: which TCP ports to
/// forward to the node's machine. `None` when the node is reachable.
pub fn forward_hint(record: &ReachabilityRecord) -> Option<String> {
    if record.reachable() {
        return None;
    }
    let mut ports = Vec::new();
    for (failed, url, what) in [
        (!record.rtmp_reachable, &record.rtmp_url, "RTMP"),
        (!record.http_reachable, &record.http_url, "HTTP"),
    ] {
        if failed {
            match endpoint_of(url) {
                Ok(endpoint) => ports.push(format!("TCP {} ({what})", endpoint.port)),
                Err(_) => ports.push(format!("the {what} port of {url}")),
            }
        }
    }
    Some(format!(
        "unreachable from outside: forward {} on your router to this node's machine, or let \
         the node map them (--nat auto with UPnP enabled on the router); no viewers are routed \
         to it until then",
        ports.join(" and ")
    ))
}

/// Starts an RTMP handshake at `url` and waits for the server's S0+S1.
async fn check_rtmp(url: &str, deadline: Duration) -> Result<(), String> {
    let endpoint = endpoint_of(url)?;
    let rtmps = url.to_ascii_lowercase().starts_with("rtmps://");
    let attempt = async {
        let mut stream = TcpStream::connect(endpoint.connect_target())
            .await
            .map_err(|error| format!("connecting to {}: {error}", endpoint.connect_target()))?;
        if rtmps {
            // The TLS layer answers before RTMP does; a TCP connection shows the port is open.
            return Ok(());
        }
        let mut c0c1 = vec![0u8; 1 + RTMP_HANDSHAKE_LEN];
        c0c1[0] = RTMP_VERSION;
        rand::thread_rng().fill_bytes(&mut c0c1[9..]);
        stream
            .write_all(&c0c1)
            .await
            .map_err(|error| format!("sending the RTMP handshake: {error}"))?;
        let mut s0s1 = vec![0u8; 1 + RTMP_HANDSHAKE_LEN];
        stream
            .read_exact(&mut s0s1)
            .await
            .map_err(|error| format!("reading the RTMP handshake: {error}"))?;
        if s0s1[0] != RTMP_VERSION {
            return Err(format!(
                "not an RTMP server (handshake version {})",
                s0s1[0]
            ));
        }
        Ok(())
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no RTMP handshake within {deadline:?}")))
}

/// `GET {url}/healthz`: any HTTP answer shows the port is reachable.
async fn check_http(client: &reqwest::Client, url: &str, deadline: Duration) -> Result<(), String> {
    endpoint_of(url)?;
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    match tokio::time::timeout(deadline, client.get(&target).send()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason.push_str(": ");
                reason.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(format!("GET {target}: {reason}"))
        }
        Err(_) => Err(format!("GET {target}: no answer within {deadline:?}")),
    }
}

/// Checks both advertised addresses of `node` from here.
pub(crate) async fn check_node(
    client: &reqwest::Client,
    node: &NodeRecord,
    deadline: Duration,
) -> ReachabilityRecord {
    let (rtmp, http) = tokio::join!(
        check_rtmp(&node.rtmp_url, deadline),
        check_http(client, &node.http_url, deadline)
    );
    ReachabilityRecord {
        node_id: node.id.clone(),
        rtmp_url: node.rtmp_url.clone(),
        http_url: node.http_url.clone(),
        rtmp_reachable: rtmp.is_ok(),
        http_reachable: http.is_ok(),
        rtmp_error: rtmp.err().unwrap_or_default(),
        http_error: http.err().unwrap_or_default(),
        checked_at_ms: now_ms(),
    }
}

/// The HTTP client of connect-back checks, built once (no redirects: the advertised address
/// itself must answer; each check has its own deadline).
pub(crate) fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// Checks a node that just registered, in the background, when checks are on.
pub(crate) fn check_soon(state: &Shared, node: NodeRecord) {
    if state.config.reachability_interval.is_none() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let previous = match state.storage.reachability().await {
            Ok(all) => all.into_iter().find(|r| r.node_id == node.id),
            Err(error) => {
                tracing::warn!(node = %node.id, %error, "reachability check skipped");
                return;
            }
        };
        if let Err(error) = check_and_store(&state, &client(), &node, previous.as_ref()).await {
            tracing::warn!(node = %node.id, %error, "reachability check not stored");
        }
    });
}

/// Checks `node` now, stores the outcome and logs a change.
pub(crate) async fn check_and_store(
    state: &Shared,
    client: &reqwest::Client,
    node: &NodeRecord,
    previous: Option<&ReachabilityRecord>,
) -> Result<ReachabilityRecord, WorkerError> {
    let record = check_node(client, node, state.config.reachability_timeout).await;
    state.storage.record_reachability(&record).await?;
    let changed = previous.is_none_or(|p| p.reachable() != record.reachable() || !p.is_for(node));
    if let Some(hint) = forward_hint(&record) {
        if changed {
            tracing::warn!(
                node = %node.id,
                rtmp = %node.rtmp_url,
                http = %node.http_url,
                rtmp_error = %record.rtmp_error,
                http_error = %record.http_error,
                "node {hint}"
            );
        }
    } else if changed {
        tracing::info!(node = %node.id, "node reachable from outside at its advertised addresses");
    }
    Ok(record)
}

/// Checks every active node whose last check is older than the interval, was about other
/// addresses, or is missing.
pub(crate) async fn reachability_round(
    state: &Shared,
    client: &reqwest::Client,
) -> Result<(), WorkerError> {
    let Some(interval) = state.config.reachability_interval else {
        return Ok(());
    };
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let checked = state.storage.reachability().await?;
    let now = now_ms();
    for node in state.storage.list_nodes().await? {
        if !node.active {
            continue;
        }
        let previous = checked.iter().find(|r| r.node_id == node.id);
        // An unreachable node is re-checked sooner: its operator may be forwarding the port.
        let due = previous.is_none_or(|r| {
            let every = if r.reachable() {
                interval_ms
            } else {
                interval_ms.min(UNREACHABLE_RECHECK_MS)
            };
            !r.is_for(&node) || now.saturating_sub(r.checked_at_ms) >= every
        });
        if due {
            check_and_store(state, client, &node, previous).await?;
        }
    }
    Ok(())
}

/// The nodes whose last check, at the addresses they advertise now, found them unreachable:
/// never routed viewers. Empty when checks are off.
pub(crate) async fn unreachable_nodes(state: &Shared) -> Result<HashSet<String>, StorageError> {
    if state.config.reachability_interval.is_none() {
        return Ok(HashSet::new());
    }
    let nodes = state.storage.list_nodes().await?;
    Ok(state
        .storage
        .reachability()
        .await?
        .into_iter()
        .filter(|r| !r.reachable())
        .filter(|r| nodes.iter().any(|n| n.id == r.node_id && r.is_for(n)))
        .map(|r| r.node_id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rtmp: bool, http: bool) -> ReachabilityRecord {
        ReachabilityRecord {
            node_id: "n".into(),
            rtmp_url: "rtmp://203.0.113.7:1935/live".into(),
            http_url: "http://203.0.113.7:8080".into(),
            rtmp_reachable: rtmp,
            http_reachable: http,
            rtmp_error: String::new(),
            http_error: String::new(),
            checked_at_ms: 0,
        }
    }

    #[test]
    fn endpoints_take_the_port_or_the_scheme_default() {
        let e = |url| endpoint_of(url).map(|e| (e.host, e.port));
        assert_eq!(e("rtmp://h:1936/live"), Ok(("h".into(), 1936)));
        assert_eq!(e("rtmp://h/live"), Ok(("h".into(), 1935)));
        assert_eq!(e("rtmps://h/live"), Ok(("h".into(), 443)));
        assert_eq!(e("http://h"), Ok(("h".into(), 80)));
        assert_eq!(e("https://h/"), Ok(("h".into(), 443)));
        assert_eq!(e("http://[::1]:8080/x"), Ok(("::1".into(), 8080)));
        assert_eq!(e("http://user@h:81"), Ok(("h".into(), 81)));
        assert!(e("ftp://h").is_err());
        assert!(e("http://:80").is_err());
        assert!(e("http://h:99999").is_err());
        assert!(e("no scheme").is_err());
    }

    #[test]
    fn the_hint_names_only_the_ports_that_failed() {
        assert_eq!(forward_hint(&record(true, true)), None);
        let rtmp = forward_hint(&record(false, true)).unwrap();
        assert!(
            rtmp.contains("TCP 1935 (RTMP)") && !rtmp.contains("8080"),
            "{rtmp}"
        );
        let both = forward_hint(&record(false, false)).unwrap();
        assert!(
            both.contains("TCP 1935 (RTMP) and TCP 8080 (HTTP)"),
            "{both}"
        );
    }
}
