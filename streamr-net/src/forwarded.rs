//! The client's address behind reverse proxies: `Forwarded` (RFC 7239) and `X-Forwarded-For`,
//! believed only from configured proxies.
//!
//! A request whose TCP peer is not a [`TrustedProxies`] member is taken at its peer address,
//! whatever its headers say (anyone can send them). From a trusted proxy, the forwarding chain
//! is read right to left (the nearest hop last): trusted hops are skipped and the first
//! untrusted one is the client. A hop that is not an address (`unknown`, an obfuscated
//! identifier) ends the walk at the nearest trusted address, since nothing before it can be
//! checked. `Forwarded` wins over `X-Forwarded-For` when a request carries both.
//!
//! ```
//! use streamr_net::forwarded::{client_ip, TrustedProxies};
//! let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
//! let mut headers = ::http::HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.3".parse().unwrap());
//! let from_proxy = client_ip("10.0.0.2".parse().unwrap(), &headers, &proxies);
//! assert_eq!(from_proxy, "198.51.100.7".parse::<std::net::IpAddr>().unwrap());
//! let spoofed = client_ip("203.0.113.9".parse().unwrap(), &headers, &proxies);
//! assert_eq!(spoofed, "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ::http::HeaderMap;

/// Why a CIDR or a list of them did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an IP address or CIDR block (like 10.0.0.0/8 or 2001:db8::/32)")]
pub struct CidrError {
    /// What was given.
    pub input: String,
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || CidrError {
            input: s.to_owned(),
        };
        let trimmed = s.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(error)?,
            None => max,
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(v4), prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(v6), prefix))),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The reverse proxies whose forwarding headers are believed (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(networks: Vec<Cidr>) -> Self {
        TrustedProxies { networks }
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

/// A comma-separated list of addresses and CIDR blocks (empty: none).
impl FromStr for TrustedProxies {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let networks = s
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(TrustedProxies { networks })
    }
}

/// One hop of a forwarding header: its address, or `None` for `unknown` and obfuscated
/// identifiers.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"').trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    // IPv4 with a port.
    let (addr, port) = value.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` hops of every `Forwarded` header, in order (`None` when there is no such header;
/// an element without `for=` counts as an unknown hop).
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all("forwarded") {
        any = true;
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let hop = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then_some(value)
            });
            hops.push(hop.and_then(parse_node));
        }
    }
    any.then_some(hops)
}

/// The hops of every `X-Forwarded-For` header, in order.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(value) => hops.extend(value.split(',').map(parse_node)),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The client's address: `peer` unless it is a trusted proxy, else the right-most untrusted
/// hop of `Forwarded` (or, without it, `X-Forwarded-For`); see the module documentation.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers).unwrap_or_else(|| x_forwarded_for_hops(headers));
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

/// The client address [`client_ip`] found, as a request extension (set by servers that know
/// their trusted proxies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                ::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.200.0.1")));
        assert!(
            net.contains(ip("::ffff:10.0.0.1")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!net.contains(ip("11.0.0.1")));
        let host: Cidr = "192.0.2.1".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.1/32");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(proxies("10.0.0.0/8, ::1").networks().len(), 2);
        assert!(proxies("").is_empty());
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoof, &proxies("10.0.0.0/8")),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &spoof, &TrustedProxies::default()),
            ip("10.0.0.1"),
            "nobody is trusted by default"
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies("10.0.0.0/8");
        // The client prepended a fake address; the proxy appended the real one.
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff, &trusted),
            ip("198.51.100.7")
        );
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &split, &trusted),
            ip("198.51.100.7")
        );
        let with_port = headers(&[("x-forwarded-for", "198.51.100.7:5555")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &with_port, &trusted),
            ip("198.51.100.7")
        );
        let none = headers(&[]);
        assert_eq!(client_ip(ip("10.0.0.2"), &none, &trusted), ip("10.0.0.2"));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &all_trusted, &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn forwarded_is_read_per_rfc_7239_and_wins_over_x_forwarded_for() {
        let trusted = proxies("10.0.0.0/8");
        let both = headers(&[
            (
                "forwarded",
                "for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.3",
            ),
            ("x-forwarded-for", "198.51.100.99"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &both, &trusted),
            ip("2001:db8:cafe::17")
        );
        let port = headers(&[("forwarded", "for=\"192.0.2.43:47011\";by=10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &port, &trusted), ip("192.0.2.43"));
        // An unknown or obfuscated hop stops the walk at the nearest trusted address.
        let unknown = headers(&[("forwarded", "for=198.51.100.7, for=unknown, for=10.0.0.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &unknown, &trusted),
            ip("10.0.0.3")
        );
        let hidden = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &hidden, &trusted), ip("10.0.0.2"));
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    proptest! {
        /// Whatever a client writes into the headers, an untrusted peer is its own address.
        #[test]
        fn an_untrusted_peer_cannot_spoof(peer in any_ip(), xff in "[ -~]{0,80}", fwd in "[ -~]{0,80}") {
            let trusted = proxies("10.0.0.0/8,fd00::/8");
            prop_assume!(!trusted.contains(peer));
            let mut map = HeaderMap::new();
            if let Ok(v) = xff.parse() { map.insert("x-forwarded-for", v); }
            if let Ok(v) = fwd.parse() { map.insert("forwarded", v); }
            prop_assert_eq!(client_ip(peer, &map, &trusted), peer.to_canonical());
        }

        /// Through a chain of trusted proxies, the client is the hop the first proxy saw,
        /// whatever the client prepended.
        #[test]
        fn a_trusted_chain_yields_the_first_untrusted_hop(
            fake in proptest::collection::vec(any_ip(), 0..4),
            client in any::<[u8; 4]>(),
            chain in proptest::collection::vec(any::<[u8; 3]>(), 0..4),
        ) {
            let trusted = proxies("10.0.0.0/8");
            let client = IpAddr::V4(Ipv4Addr::from(client));
            prop_assume!(!trusted.contains(client));
            let mut hops: Vec<String> = fake.iter().map(IpAddr::to_string).collect();
            hops.push(client.to_string());
            hops.extend(chain.iter().map(|b| format!("10.{}.{}.{}", b[0], b[1], b[2])));
            let map = headers(&[("x-forwarded-for", &hops.join(", "))]);
            prop_assert_eq!(client_ip(ip("10.0.0.1"), &map, &trusted), client);
        }

        /// Parsing a CIDR never panics, and a parsed one contains its own network address.
        #[test]
        fn cidr_parsing_is_total(s in "[0-9a-f:./]{0,45}") {
            if let Ok(net) = s.parse::<Cidr>() {
                prop_assert!(net.contains(net.network));
            }
        }
    }
}
