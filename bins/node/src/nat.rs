//! Port mappings on a home router (UPnP-IGD, else PCP or NAT-PMP), so a friend's node behind
//! NAT can be reached without forwarding ports by hand.
//!
//! With [`NatMode::Auto`] (the default) the node looks for an Internet Gateway Device on its
//! LAN (and, when none answers, asks the default gateway over PCP, falling back to NAT-PMP),
//! maps each listener's TCP port (same external port when free, any other port when not),
//! logs the external address viewers can reach, renews the leases at half their length and
//! removes the mappings on shutdown. Listeners on loopback are never mapped (nothing outside
//! the host could reach them), and nothing is searched for when no listener can be mapped.
//! Where the router refuses (UPnP off, no IGD), the log says which port to forward by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{AddPortError, PortMappingProtocol, SearchOptions};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Whether the node maps its ports on the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NatMode {
    /// Look for a UPnP-IGD router and map the listeners' ports.
    #[default]
    Auto,
    /// Map nothing (ports are forwarded by hand, or the node has a public address).
    Off,
}

/// Port-mapping settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Map or not.
    pub mode: NatMode,
    /// Lease asked for each mapping; renewed at half this (default 1 h).
    pub lease: Duration,
    /// How long to look for a router before giving up (default 3 s).
    pub search_timeout: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            mode: NatMode::Auto,
            lease: Duration::from_secs(3600),
            search_timeout: Duration::from_secs(3),
        }
    }
}

/// A listener to map: what it serves and where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// `RTMP`, `HTTP`, `RTMPS` or `HTTPS`.
    pub what: &'static str,
    /// Its bound address.
    pub addr: SocketAddr,
}

/// A mapping made on the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// What the mapped listener serves.
    pub what: &'static str,
    /// Where the router forwards to.
    pub internal: SocketAddrV4,
    /// The address the rest of the internet connects to.
    pub external: SocketAddr,
}

/// The listeners worth mapping: IPv4, not loopback (an unspecified address stands for the
/// address the router sees, filled in once the router is known).
pub fn mappable(listeners: &[Listener]) -> Vec<Listener> {
    listeners
        .iter()
        .copied()
        .filter(|l| matches!(l.addr.ip(), IpAddr::V4(v4) if !v4.is_loopback()))
        .filter(|l| l.addr.port() != 0)
        .collect()
}

/// The address this host has towards `gateway` (no packet is sent: a connected UDP socket
/// only picks a route).
async fn local_address_towards(gateway: SocketAddr) -> std::io::Result<Ipv4Addr> {
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect(gateway).await?;
    match socket.local_addr()?.ip() {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(std::io::Error::other("no IPv4 route to the gateway")),
    }
}

/// The router the mappings were made on.
enum Router {
    /// A UPnP Internet Gateway Device.
    Igd(Gateway<Tokio>),
    /// The default gateway, over PCP or NAT-PMP (the renewer holds the mappings).
    Pcp,
}

/// Port mappings in force, renewed until [`PortMappings::remove`].
pub struct PortMappings {
    router: Router,
    mappings: Vec<Mapping>,
    stop: CancellationToken,
    renewer: Option<tokio::task::JoinHandle<Vec<crab_nat::PortMapping>>>,
}

impl std::fmt::Debug for PortMappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let router = match &self.router {
            Router::Igd(gateway) => format!("UPnP-IGD {}", gateway.addr),
            Router::Pcp => "PCP/NAT-PMP".to_owned(),
        };
        f.debug_struct("PortMappings")
            .field("router", &router)
            .field("mappings", &self.mappings)
            .finish_non_exhaustive()
    }
}

impl PortMappings {
    /// The mappings made.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// The external address of the mapping of `what`, if it was mapped.
    pub fn external(&self, what: &str) -> Option<SocketAddr> {
        self.mappings
            .iter()
            .find(|m| m.what == what)
            .map(|m| m.external)
    }

    /// Stops renewing and removes every mapping from the router.
    pub async fn remove(mut self) {
        self.stop.cancel();
        let held = match self.renewer.take() {
            Some(renewer) => renewer.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let gateway = match &self.router {
            Router::Igd(gateway) => gateway,
            Router::Pcp => {
                for mapping in held {
                    let port = mapping.external_port().get();
                    let what = self
                        .mappings
                        .iter()
                        .find(|m| m.external.port() == port)
                        .map_or("", |m| m.what);
                    match mapping.try_drop().await {
                        Ok(()) => info!(what, external_port = port, "NAT: port mapping removed"),
                        Err((error, _)) => warn!(what, external_port = port, %error,
                            "NAT: the router did not remove the port mapping (it ends with its lease)"),
                    }
                }
                return;
            }
        };
        for mapping in &self.mappings {
            match gateway
                .remove_port(PortMappingProtocol::TCP, mapping.external.port())
                .await
            {
                Ok(()) => {
                    info!(what = mapping.what, external = %mapping.external, "NAT: port mapping removed")
                }
                Err(error) => warn!(what = mapping.what, external = %mapping.external, %error,
                    "NAT: the router did not remove the port mapping (it ends with its lease)"),
            }
        }
    }
}

/// Asks the router for `internal`'s mapping, on the same external port if it is free;
/// returns the external port and the lease granted (0: permanent).
async fn add_mapping(
    gateway: &Gateway<Tokio>,
    what: &str,
    internal: SocketAddrV4,
    external_port: u16,
    lease: u32,
) -> Result<(u16, u32), String> {
    let description = format!("streamr-node {what}");
    let internal_addr = SocketAddr::V4(internal);
    let mut lease = lease;
    for _ in 0..2 {
        match gateway
            .add_port(
                PortMappingProtocol::TCP,
                external_port,
                internal_addr,
                lease,
                &description,
            )
            .await
        {
            Ok(()) => return Ok((external_port, lease)),
            Err(AddPortError::OnlyPermanentLeasesSupported) if lease != 0 => lease = 0,
            Err(AddPortError::PortInUse) => {
                return gateway
                    .add_any_port(PortMappingProtocol::TCP, internal_addr, lease, &description)
                    .await
                    .map(|port| (port, lease))
                    .map_err(|error| error.to_string());
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Err("the router refused every lease".into())
}

/// Maps `listeners` on the LAN's UPnP-IGD router per `config`. `None` when off, when nothing
/// can be mapped, or when no router agreed (each case logged, with the ports to forward by
/// hand).
pub async fn map_ports(config: NatConfig, listeners: &[Listener]) -> Option<PortMappings> {
    if config.mode == NatMode::Off {
        debug!("NAT: port mapping off (--nat off)");
        return None;
    }
    let wanted = mappable(listeners);
    if wanted.is_empty() {
        debug!("NAT: every listener is on loopback or IPv6; nothing to map");
        return None;
    }
    let mut options = SearchOptions::default();
    options.timeout = Some(config.search_timeout);
    options.single_search_timeout = Some(config.search_timeout);
    let ports: Vec<String> = wanted
        .iter()
        .map(|l| format!("TCP {} ({})", l.addr.port(), l.what))
        .collect();
    let gateway = match search_gateway(options).await {
        Ok(gateway) => gateway,
        Err(error) => {
            info!(%error, "NAT: no UPnP-IGD router answered; trying PCP and NAT-PMP");
            let mapped = map_with_pcp(config, &wanted).await;
            if mapped.is_none() {
                warn!(
                    "NAT: no router mapped the ports (UPnP-IGD, PCP and NAT-PMP); if this node \
                    is behind a router, forward {} to this machine by hand",
                    ports.join(" and ")
                );
            }
            return mapped;
        }
    };
    let local = match local_address_towards(gateway.addr).await {
        Ok(local) => local,
        Err(error) => {
            warn!(gateway = %gateway.addr, %error, "NAT: no route to the router; nothing mapped");
            return None;
        }
    };
    let external_ip = match gateway.get_external_ip().await {
        Ok(ip) => ip,
        Err(error) => {
            warn!(gateway = %gateway.addr, %error, "NAT: the router does not say its external \
                address; forward {} by hand", ports.join(" and "));
            return None;
        }
    };
    let lease_secs = u32::try_from(config.lease.as_secs()).unwrap_or(u32::MAX);
    let mut mappings = Vec::new();
    let mut granted_lease = lease_secs;
    for listener in wanted {
        let ip = match listener.addr.ip() {
            IpAddr::V4(v4) if !v4.is_unspecified() => v4,
            _ => local,
        };
        let internal = SocketAddrV4::new(ip, listener.addr.port());
        match add_mapping(
            &gateway,
            listener.what,
            internal,
            internal.port(),
            lease_secs,
        )
        .await
        {
            Ok((port, lease)) => {
                granted_lease = granted_lease.min(lease);
                let mapping = Mapping {
                    what: listener.what,
                    internal,
                    external: SocketAddr::new(external_ip, port),
                };
                info!(what = mapping.what, internal = %internal, external = %mapping.external,
                    gateway = %gateway.addr, lease_secs = lease,
                    "NAT: port mapped on the router (UPnP-IGD); viewers reach this node at the external address");
                mappings.push(mapping);
            }
            Err(error) => warn!(what = listener.what, internal = %internal, %error,
                "NAT: the router refused the port mapping; forward TCP {} to {} by hand",
                internal.port(), internal),
        }
    }
    if mappings.is_empty() {
        return None;
    }
    let stop = CancellationToken::new();
    let renewer = (granted_lease > 0).then(|| {
        tokio::spawn(renew_igd(
            gateway.clone(),
            mappings.clone(),
            Duration::from_secs(u64::from(granted_lease) / 2).max(Duration::from_secs(1)),
            granted_lease,
            stop.clone(),
        ))
    });
    Some(PortMappings {
        router: Router::Igd(gateway),
        mappings,
        stop,
        renewer,
    })
}

/// The IPv4 default gateway from the kernel's routing table (Linux), if any.
fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_gateway(&table)
}

/// The gateway of the default route in `/proc/net/route` text.
fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway) = (fields.get(1)?, fields.get(2)?);
        if *destination != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(gateway, 16).ok()?;
        Some(Ipv4Addr::from(raw.to_le_bytes())).filter(|ip| !ip.is_unspecified())
    })
}

/// Maps `wanted` on the default gateway over PCP, falling back to NAT-PMP.
async fn map_with_pcp(config: NatConfig, wanted: &[Listener]) -> Option<PortMappings> {
    use crab_nat::{InternetProtocol, PortMappingOptions, PortMappingType, TimeoutConfig};
    let gateway = default_gateway()?;
    let local = local_address_towards(SocketAddr::from((gateway, 5351)))
        .await
        .ok()?;
    let timeouts = TimeoutConfig {
        initial_timeout: Duration::from_millis(250),
        max_retries: 2,
        max_retry_timeout: Some(config.search_timeout),
    };
    let lease = u32::try_from(config.lease.as_secs()).unwrap_or(u32::MAX);
    let mut held = Vec::new();
    let mut mappings = Vec::new();
    for listener in wanted {
        let Some(port) = std::num::NonZeroU16::new(listener.addr.port()) else {
            continue;
        };
        let options = PortMappingOptions {
            external_port: Some(port),
            lifetime_seconds: Some(lease),
            timeout_config: Some(timeouts),
        };
        let mapping = match crab_nat::PortMapping::new(
            gateway.into(),
            IpAddr::V4(local),
            InternetProtocol::Tcp,
            port,
            options,
        )
        .await
        {
            Ok(mapping) => mapping,
            Err(error) => {
                debug!(what = listener.what, %error, gateway = %gateway, "NAT: PCP/NAT-PMP mapping refused");
                continue;
            }
        };
        let (protocol, external_ip) = match mapping.mapping_type() {
            PortMappingType::Pcp { external_ip, .. } => ("PCP", Some(external_ip)),
            PortMappingType::NatPmp => (
                "NAT-PMP",
                crab_nat::natpmp::external_address(gateway.into(), Some(timeouts))
                    .await
                    .ok()
                    .map(IpAddr::V4),
            ),
        };
        let Some(external_ip) = external_ip else {
            warn!(
                what = listener.what,
                "NAT: the router does not say its external address"
            );
            held.push(mapping);
            continue;
        };
        let record = Mapping {
            what: listener.what,
            internal: SocketAddrV4::new(local, port.get()),
            external: SocketAddr::new(external_ip, mapping.external_port().get()),
        };
        info!(what = record.what, internal = %record.internal, external = %record.external,
            gateway = %gateway, lease_secs = mapping.lifetime(), protocol,
            "NAT: port mapped on the router; viewers reach this node at the external address");
        mappings.push(record);
        held.push(mapping);
    }
    if held.is_empty() {
        return None;
    }
    let stop = CancellationToken::new();
    let renewer = tokio::spawn(renew_pcp(held, stop.clone()));
    Some(PortMappings {
        router: Router::Pcp,
        mappings,
        stop,
        renewer: Some(renewer),
    })
}

/// Renews PCP/NAT-PMP mappings at half their lifetime until `stop`; hands them back for
/// removal.
async fn renew_pcp(
    mut held: Vec<crab_nat::PortMapping>,
    stop: CancellationToken,
) -> Vec<crab_nat::PortMapping> {
    loop {
        let lifetime = held
            .iter()
            .map(crab_nat::PortMapping::lifetime)
            .min()
            .unwrap_or(0);
        let every = Duration::from_secs(u64::from(lifetime) / 2).max(Duration::from_secs(1));
        tokio::select! {
            _ = stop.cancelled() => return held,
            _ = tokio::time::sleep(every) => {}
        }
        for mapping in &mut held {
            match mapping.renew().await {
                Ok(()) => debug!(
                    external_port = mapping.external_port(),
                    "NAT: lease renewed"
                ),
                Err(error) => warn!(external_port = mapping.external_port(), %error,
                    "NAT: renewing the port mapping failed; retrying at the next renewal"),
            }
        }
    }
}

/// Renews `mappings` every `every` until `stop`.
async fn renew_igd(
    gateway: Gateway<Tokio>,
    mappings: Vec<Mapping>,
    every: Duration,
    lease: u32,
    stop: CancellationToken,
) -> Vec<crab_nat::PortMapping> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Vec::new(),
            _ = tokio::time::sleep(every) => {}
        }
        for mapping in &mappings {
            let description = format!("streamr-node {}", mapping.what);
            match gateway
                .add_port(
                    PortMappingProtocol::TCP,
                    mapping.external.port(),
                    SocketAddr::V4(mapping.internal),
                    lease,
                    &description,
                )
                .await
            {
                Ok(()) => {
                    debug!(what = mapping.what, external = %mapping.external, "NAT: lease renewed")
                }
                Err(error) => warn!(what = mapping.what, external = %mapping.external, %error,
                    "NAT: renewing the port mapping failed; retrying at the next renewal"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_routing_table() {
        let table = "Iface\tDestination\tGateway \tFlags\n\
                     eth0\t0000A8C0\t00000000\t0001\n\
                     eth0\t00000000\t0100A8C0\t0003\n";
        assert_eq!(
            parse_default_gateway(table),
            Some(Ipv4Addr::new(192, 168, 0, 1))
        );
        assert_eq!(parse_default_gateway("Iface\n"), None);
    }

    #[test]
    fn only_ipv4_listeners_off_loopback_are_mapped() {
        let l = |what, addr: &str| Listener {
            what,
            addr: addr.parse().unwrap(),
        };
        let all = [
            l("RTMP", "127.0.0.1:1935"),
            l("HTTP", "0.0.0.0:8080"),
            l("RTMPS", "[::]:1936"),
            l("HTTPS", "192.168.1.5:8443"),
            l("X", "192.168.1.5:0"),
        ];
        let kept: Vec<&str> = mappable(&all).iter().map(|l| l.what).collect();
        assert_eq!(kept, ["HTTP", "HTTPS"]);
    }
}
