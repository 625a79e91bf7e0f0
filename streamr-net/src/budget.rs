//! Connection budgets: how many connections a listener holds at once, in total and per client.
//!
//! Each listener (RTMP, HTTP) has its own [`ConnectionBudget`], so a flood on one cannot take the
//! other's connections. A connection is admitted with [`ConnectionBudget::try_admit`] and holds a
//! [`ConnectionPermit`] until it closes; dropping the permit frees its place.
//!
//! Clients are counted by address: an IPv4 address, or the /64 prefix of an IPv6 address (one
//! host usually holds a whole /64).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The limits of one [`ConnectionBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64).
    pub max_per_client: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetRefusal {
    /// The listener holds its limit of connections.
    #[error("connection limit of {limit} reached")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// The client holds its limit of connections.
    #[error("per-client connection limit of {limit} reached for {client}")]
    ClientFull {
        /// The client (an IPv4 address or an IPv6 /64 prefix).
        client: IpAddr,
        /// The configured limit.
        limit: usize,
    },
}

impl BudgetRefusal {
    /// A stable label for metrics and logs: `connection_limit` or `client_limit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BudgetRefusal::Full { .. } => "connection_limit",
            BudgetRefusal::ClientFull { .. } => "client_limit",
        }
    }
}

/// What a budget has admitted and refused so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Connections open now.
    pub open: usize,
    /// Connections admitted since start.
    pub admitted: u64,
    /// Connections refused because the listener was full.
    pub refused_full: u64,
    /// Connections refused because their client was at its limit.
    pub refused_client: u64,
}

#[derive(Debug)]
struct BudgetInner {
    limits: BudgetLimits,
    /// Open connections per client; the total is the sum.
    open: Mutex<Open>,
    admitted: AtomicU64,
    refused_full: AtomicU64,
    refused_client: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Counts a listener's open connections against its [`BudgetLimits`]. Cheap to clone; clones
/// share the count.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    inner: Arc<BudgetInner>,
    /// Reverse proxies: many clients share their address, so only the total applies to them.
    proxies: Arc<crate::forwarded::TrustedProxies>,
}

/// A connection's place in its budget, freed on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    inner: Arc<BudgetInner>,
    client: IpAddr,
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by /64.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

fn lock(open: &Mutex<Open>) -> MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionBudget {
    /// A budget with `limits` and nothing open.
    pub fn new(limits: BudgetLimits) -> Self {
        ConnectionBudget {
            inner: Arc::new(BudgetInner {
                limits,
                open: Mutex::default(),
                admitted: AtomicU64::new(0),
                refused_full: AtomicU64::new(0),
                refused_client: AtomicU64::new(0),
            }),
            proxies: Arc::default(),
        }
    }

    /// Exempts connections from `proxies` from the per-client limit (each carries many
    /// clients); they still count against the total.
    pub fn trusting(mut self, proxies: crate::forwarded::TrustedProxies) -> Self {
        self.proxies = Arc::new(proxies);
        self
    }

    /// The limits this budget enforces.
    pub fn limits(&self) -> BudgetLimits {
        self.inner.limits
    }

    /// Admits a connection from `ip` if both the total and the client's share allow it.
    pub fn try_admit(&self, ip: IpAddr) -> Result<ConnectionPermit, BudgetRefusal> {
        let client = client_of(ip);
        let limits = self.inner.limits;
        let mut open = lock(&self.inner.open);
        if open.total >= limits.max_connections {
            self.inner.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(BudgetRefusal::Full {
                limit: limits.max_connections,
            });
        }
        let held = open.per_client.get(&client).copied().unwrap_or(0);
        if held >= limits.max_per_client && !self.proxies.contains(ip) {
            self.inner.refused_client.fetch_add(1, Ordering::Relaxed);
            return Err(BudgetRefusal::ClientFull {
                client,
                limit: limits.max_per_client,
            });
        }
        open.total += 1;
        open.per_client.insert(client, held + 1);
        self.inner.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            inner: self.inner.clone(),
            client,
        })
    }

    /// Open connections and the admitted and refused counts so far.
    pub fn stats(&self) -> BudgetStats {
        let open = lock(&self.inner.open).total;
        BudgetStats {
            open,
            admitted: self.inner.admitted.load(Ordering::Relaxed),
            refused_full: self.inner.refused_full.load(Ordering::Relaxed),
            refused_client: self.inner.refused_client.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = lock(&self.inner.open);
        open.total = open.total.saturating_sub(1);
        if let Some(held) = open.per_client.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn budget(max_connections: usize, max_per_client: usize) -> ConnectionBudget {
        ConnectionBudget::new(BudgetLimits {
            max_connections,
            max_per_client,
        })
    }

    #[test]
    fn one_client_cannot_take_the_whole_budget() {
        let budget = budget(10, 3);
        let flooder: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| budget.try_admit(flooder).unwrap()).collect();
        assert_eq!(
            budget.try_admit(flooder).unwrap_err(),
            BudgetRefusal::ClientFull {
                client: flooder,
                limit: 3
            }
        );
        let other = budget.try_admit("10.0.0.2".parse().unwrap());
        assert!(other.is_ok());
        drop(held);
        assert!(budget.try_admit(flooder).is_ok());
        let stats = budget.stats();
        assert_eq!((stats.admitted, stats.refused_client), (5, 1));
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_only() {
        let budget = budget(5, 2).trusting("10.0.0.0/8".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| budget.try_admit(proxy).unwrap()).collect();
        assert_eq!(
            budget.try_admit(proxy).unwrap_err(),
            BudgetRefusal::Full { limit: 5 }
        );
        drop(held);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let _held: Vec<_> = (0..2).map(|_| budget.try_admit(other).unwrap()).collect();
        assert!(budget.try_admit(other).is_err(), "others keep their share");
    }

    #[test]
    fn the_total_is_capped_and_freed_on_drop() {
        let budget = budget(2, 5);
        let a = budget.try_admit("10.0.0.1".parse().unwrap()).unwrap();
        let _b = budget.try_admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            budget.try_admit("10.0.0.3".parse().unwrap()).unwrap_err(),
            BudgetRefusal::Full { limit: 2 }
        );
        drop(a);
        assert!(budget.try_admit("10.0.0.3".parse().unwrap()).is_ok());
        assert_eq!(budget.stats().refused_full, 1);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of("2001:db8:1:3::1".parse().unwrap()));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_of(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    proptest! {
        /// Whatever the order of arrivals and departures, the open count never passes either
        /// limit and returns to zero when every permit is dropped.
        #[test]
        fn limits_hold_under_any_sequence(
            steps in proptest::collection::vec((0u8..4, any::<bool>()), 0..200),
            max_connections in 1usize..8,
            max_per_client in 1usize..4,
        ) {
            let budget = budget(max_connections, max_per_client);
            let mut held: Vec<(u8, ConnectionPermit)> = Vec::new();
            for (client, arrive) in steps {
                if arrive {
                    let ip = IpAddr::from([10, 0, 0, client]);
                    if let Ok(permit) = budget.try_admit(ip) {
                        held.push((client, permit));
                    }
                } else if let Some(pos) = held.iter().position(|(c, _)| *c == client) {
                    held.swap_remove(pos);
                }
                prop_assert!(budget.stats().open <= max_connections);
                for c in 0..4u8 {
                    prop_assert!(held.iter().filter(|(h, _)| *h == c).count() <= max_per_client);
                }
                prop_assert_eq!(budget.stats().open, held.len());
            }
            held.clear();
            prop_assert_eq!(budget.stats().open, 0);
        }
    }
}
