//! The coordinator's settings, with defaults for a single local instance.

use std::time::Duration;

use streamr_core::{
    FraudConfig, KeyPair, PayoutPolicy, ProbePolicy, Router, SettlementConfig, VerifierConfig,
};

/// Per-client-IP request rate limit (token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: u32,
    /// Bucket size: the burst a client may send at once.
    pub burst: u32,
}

/// Grants each viewer key and each source prefix may take per epoch. A play request spends one
/// unit, plus one per node it excludes; a request over any budget is refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantBudget {
    /// Units per viewer key.
    pub per_viewer: u32,
    /// Units per IPv4 /24 (all keys together).
    pub per_ipv4_24: u32,
    /// Units per IPv6 /48 (all keys together).
    pub per_ipv6_48: u32,
    /// Units per IPv6 /64 (all keys together).
    pub per_ipv6_64: u32,
    /// Units per request whose source address is unknown (all such requests together).
    pub per_unknown_source: u32,
}

impl Default for GrantBudget {
    fn default() -> Self {
        GrantBudget {
            per_viewer: 32,
            per_ipv4_24: 2_048,
            per_ipv6_48: 2_048,
            per_ipv6_64: 512,
            per_unknown_source: 2_048,
        }
    }
}

/// Everything [`crate::Coordinator`] needs besides its storage.
#[derive(Clone)]
pub struct CoordConfig {
    /// Bearer token for admin endpoints; `None` disables them.
    pub admin_token: Option<String>,
    /// The key that signs session grants and node session accepts, and from which the key
    /// sealing stored node session keys is derived; replicas that share a database must share
    /// it.
    pub coordinator_key: KeyPair,
    /// A name for this replica, recorded on the settlements it writes.
    pub replica_id: String,
    /// Length of a reward epoch.
    pub epoch_length: Duration,
    /// An epoch is settled this long after it ends, so late in-flight writes land first. It is
    /// also the receipts' submission deadline: a receipt is booked to the epoch its viewer
    /// signed it in and accepted until this long after that epoch ends, later ones are refused.
    /// Set it above a node's heartbeat interval plus a viewer's receipt interval.
    pub settlement_grace: Duration,
    /// After a coordinator outage (no process up for longer than [`CoordConfig::outage_gap`])
    /// that began before an epoch's receipt deadline, how long nodes and viewers have, once it
    /// is back, to hand in the receipts they kept for that epoch: it takes them, and is
    /// settled, no sooner. Zero turns this off (an epoch's deadline is then fixed, whatever
    /// happened). Default a minute: a node retries its heartbeat every few seconds.
    pub outage_grace: Duration,
    /// Micro-units distributed per epoch.
    pub reward_pool_per_epoch: u64,
    /// The reward formula and vesting parameters (published with every epoch's inputs).
    pub settlement: SettlementConfig,
    /// Payout thresholds and fees.
    pub payouts: PayoutPolicy,
    /// Fraud rule thresholds.
    pub fraud: FraudConfig,
    /// What a probe must reach to pass.
    pub probe_policy: ProbePolicy,
    /// Viewer routing parameters.
    pub router: Router,
    /// Receipt verification limits.
    pub verifier: VerifierConfig,
    /// Accepted distance between a signed timestamp and the coordinator clock.
    pub max_clock_skew: Duration,
    /// How long a node session (a MAC-authenticated heartbeat channel opened with a signed
    /// handshake) lasts; the node opens a new one before it ends (a minute before) or when
    /// refused. Default an hour.
    pub node_session_lifetime: Duration,
    /// How often session heartbeats (running totals, kept in memory as they arrive) are
    /// written to the database, and how long a session's state read from it is trusted
    /// before it is read again. Liveness and load seen by routing lag by up to this much; a
    /// heartbeat replayed to another replica can pass there within about twice this (it
    /// changes nothing stored). Default a second.
    pub heartbeat_totals_interval: Duration,
    /// How long a session grant lasts.
    pub grant_ttl: Duration,
    /// Bytes per second a grant allows (stream bitrate plus headroom).
    pub grant_bytes_per_second: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most receipts one request may carry.
    pub max_receipts_per_request: usize,
    /// Per-IP rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// A node whose last heartbeat is older than this is not routed to.
    pub node_liveness: Duration,
    /// How often the workers wake up (at most every 10 ms, whatever this says; zero is refused
    /// by [`CoordConfig::validate`]).
    pub worker_interval: Duration,
    /// HTTP deadlines (request head, body) and connection budget (total and per client) of
    /// [`crate::Coordinator::serve`].
    pub http: streamr_net::HttpLimits,
    /// Grants per viewer key and per source prefix and epoch.
    pub grant_budget: GrantBudget,
    /// A node's receipt-backed sessions over this window prove the capacity routing trusts it
    /// with.
    pub proving_window: Duration,
    /// Sessions with a receipt this recent count as a node's current load.
    pub live_window: Duration,
    /// A grant without a receipt counts as load for this long after it was issued.
    pub pending_window: Duration,
    /// A one-host or one-LAN trial: every node and every viewer counts as a network of its
    /// own, so the rules that compare networks (self-dealing and tainted traffic by /24,
    /// sybil clusters, whitewashing) cannot fire just because everyone shares an address.
    /// Never for a public network; off by default, and announced at start and in
    /// `GET /coordinator` when on.
    pub local_trial: bool,
    /// How often the coordinator connects back to each node's advertised RTMP and HTTP
    /// addresses to see whether viewers can reach them (also at once when a node registers);
    /// a node found unreachable is never routed viewers. `None` turns the checks off (the
    /// library default, for embedders whose nodes advertise placeholder addresses; the
    /// `streamr-coordinator` binary checks every 60 s).
    pub reachability_interval: Option<Duration>,
    /// A connect-back check that gets no answer within this time fails.
    pub reachability_timeout: Duration,
    /// Reverse proxies in front of the coordinator: only for requests from these is the
    /// client address taken from `Forwarded` / `X-Forwarded-For` (for the rate limit, grant
    /// budgets by prefix and nodes' observed prefixes), and only these may hold more
    /// connections than one client may. None by default.
    pub trusted_proxies: streamr_net::TrustedProxies,
    /// Relay tree: most relays the origin feeds directly (k), and most children any relay
    /// feeds (less where its measured capacity is lower).
    pub relay_fanout: usize,
    /// Relay tree: a parent whose last heartbeat is older than this is taken for dead and
    /// its children are re-parented.
    pub relay_liveness: Duration,
    /// Relay tree: a relay whose probes (when it has any this epoch) pass less than this
    /// share, ppm, feeds no other relay (it is kept at the leaves).
    pub relay_min_availability_ppm: u64,
    /// Relay tree: when a relay reports its upstream failed, the coordinator checks the
    /// reported node itself (`GET {http_url}/healthz?stream=…&wait_ms=…`: does a live
    /// session feed it the stream?) within this time. Not serving, or no answer, takes it for
    /// failed, its whole subtree re-homed; serving keeps its place whatever its children report
    /// (see [`streamr_core::tree::confirmed_failures`]), though a reporting child whose receipts
    /// show it unfed leaves it and it takes no new child ([`streamr_core::tree::unfed_parents`]). `None`: no such check (reports are then
    /// corroborated only by relays of distinct homes or the node's own heartbeats).
    pub relay_probe_timeout: Option<Duration>,
}

impl std::fmt::Debug for CoordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordConfig")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("coordinator_key", &self.coordinator_key.coordinator_key())
            .field("replica_id", &self.replica_id)
            .field("epoch_length", &self.epoch_length)
            .field("reward_pool_per_epoch", &self.reward_pool_per_epoch)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("http", &self.http)
            .field("local_trial", &self.local_trial)
            .field("reachability_interval", &self.reachability_interval)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            admin_token: None,
            coordinator_key: KeyPair::generate(&mut rand::rngs::OsRng),
            replica_id: format!("replica-{}", std::process::id()),
            epoch_length: Duration::from_secs(3600),
            settlement_grace: Duration::from_secs(5),
            outage_grace: Duration::from_secs(60),
            reward_pool_per_epoch: 1_000_000_000,
            settlement: SettlementConfig::default(),
            payouts: PayoutPolicy::default(),
            fraud: FraudConfig::default(),
            probe_policy: ProbePolicy::default(),
            router: Router::default(),
            verifier: VerifierConfig::default(),
            max_clock_skew: Duration::from_secs(30),
            node_session_lifetime: Duration::from_secs(3600),
            heartbeat_totals_interval: Duration::from_secs(1),
            grant_ttl: Duration::from_secs(3600),
            grant_bytes_per_second: 2_000_000,
            max_body_bytes: 256 * 1024,
            max_receipts_per_request: 256,
            rate_limit: Some(RateLimit {
                per_second: 200,
                burst: 400,
            }),
            node_liveness: Duration::from_secs(60),
            worker_interval: Duration::from_secs(1),
            http: streamr_net::HttpLimits::default(),
            grant_budget: GrantBudget::default(),
            proving_window: Duration::from_secs(1_800),
            live_window: Duration::from_secs(60),
            pending_window: Duration::from_secs(30),
            local_trial: false,
            reachability_interval: None,
            reachability_timeout: Duration::from_secs(3),
            trusted_proxies: streamr_net::TrustedProxies::default(),
            relay_fanout: 4,
            relay_liveness: Duration::from_secs(15),
            relay_min_availability_ppm: 800_000,
            relay_probe_timeout: Some(Duration::from_millis(500)),
        }
    }
}

/// A setting of [`CoordConfig`] the coordinator cannot serve with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// A period, lifetime or liveness window below [`streamr_net::MIN_DEADLINE`]: it would
    /// expire (or repeat) at once; zero does not turn it off.
    #[error(
        "{setting} of {value:?} is too short: it must be at least {min:?} (zero does not turn \
         it off)",
        min = streamr_net::MIN_DEADLINE
    )]
    TooShort {
        /// The [`CoordConfig`] field.
        setting: &'static str,
        /// Its value.
        value: Duration,
    },
    /// A deadline of [`CoordConfig::http`].
    #[error(transparent)]
    Http(#[from] streamr_net::InvalidLimits),
}

impl From<InvalidConfig> for std::io::Error {
    fn from(invalid: InvalidConfig) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, invalid)
    }
}

/// The shortest silence taken for a coordinator outage: a note delayed by a loaded machine or a
/// slow commit (hundreds of milliseconds when the settlement grace and worker interval are tiny)
/// is not one, and recording it would hold the next epochs for the whole outage grace.
pub const MIN_OUTAGE_GAP: Duration = Duration::from_secs(1);

impl CoordConfig {
    /// Checks the durations that cannot be zero (or shorter than
    /// [`streamr_net::MIN_DEADLINE`]): the epoch, the worker and heartbeat-totals periods, the
    /// node session lifetime, the liveness windows, the grant lifetime, the reachability
    /// timeout (when checks are on) and the HTTP deadlines. [`crate::Coordinator::serve`],
    /// [`serve_tls`](crate::Coordinator::serve_tls) and
    /// [`spawn_serve`](crate::Coordinator::spawn_serve) refuse a configuration that fails this
    /// ([`std::io::ErrorKind::InvalidInput`]). A zero settlement grace is valid (epochs are
    /// settled as soon as they end), as are `None` for the reachability checks and the relay
    /// probe.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let mut periods = vec![
            ("epoch_length", self.epoch_length),
            ("worker_interval", self.worker_interval),
            ("heartbeat_totals_interval", self.heartbeat_totals_interval),
            ("node_session_lifetime", self.node_session_lifetime),
            ("node_liveness", self.node_liveness),
            ("relay_liveness", self.relay_liveness),
            ("grant_ttl", self.grant_ttl),
        ];
        if self.reachability_interval.is_some() {
            periods.push(("reachability_timeout", self.reachability_timeout));
        }
        for (setting, value) in periods {
            if value < streamr_net::MIN_DEADLINE {
                return Err(InvalidConfig::TooShort { setting, value });
            }
        }
        self.http.validate()?;
        Ok(())
    }

    /// Epoch length in milliseconds (at least 1).
    pub fn epoch_length_ms(&self) -> i64 {
        i64::try_from(self.epoch_length.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The last moment (Unix ms) a receipt signed in `epoch` is accepted: the epoch's end
    /// plus the settlement grace (the epoch is not settled before).
    pub fn receipt_deadline_of(&self, epoch: i64) -> i64 {
        let grace = i64::try_from(self.settlement_grace.as_millis()).unwrap_or(i64::MAX);
        epoch
            .saturating_add(1)
            .saturating_mul(self.epoch_length_ms())
            .saturating_add(grace)
    }

    /// How often a running coordinator notes itself up (see [`CoordConfig::outage_gap`]): every
    /// worker round, but at least every second and at most every 100 ms.
    pub fn liveness_interval(&self) -> Duration {
        self.worker_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// How long no process may note itself up before the stretch counts as an outage: the
    /// settlement grace (a shorter silence costs no receipt its deadline), but at least three
    /// of the notes a running coordinator makes ([`CoordConfig::liveness_interval`]) and at
    /// least [`MIN_OUTAGE_GAP`].
    pub fn outage_gap(&self) -> Duration {
        self.settlement_grace
            .max(self.liveness_interval().saturating_mul(3))
            .max(MIN_OUTAGE_GAP)
    }

    /// The epoch a Unix-millisecond time falls in.
    pub fn epoch_of(&self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.epoch_length_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_a_silence_of_the_settlement_grace_three_notes_and_a_second_at_least() {
        assert_eq!(CoordConfig::default().outage_gap(), Duration::from_secs(5));
        let tiny = CoordConfig {
            settlement_grace: Duration::ZERO,
            worker_interval: Duration::from_millis(5),
            ..CoordConfig::default()
        };
        // Notes every 100 ms: three of them would be 300 ms, which a loaded machine's commit
        // can take.
        assert_eq!(tiny.liveness_interval(), Duration::from_millis(100));
        assert_eq!(tiny.outage_gap(), MIN_OUTAGE_GAP);
        let slow_notes = CoordConfig {
            settlement_grace: Duration::ZERO,
            worker_interval: Duration::from_secs(10),
            ..CoordConfig::default()
        };
        assert_eq!(slow_notes.outage_gap(), Duration::from_secs(3));
    }

    #[test]
    fn zero_periods_and_deadlines_are_invalid_and_a_zero_grace_is_not() {
        assert_eq!(CoordConfig::default().validate(), Ok(()));
        let config = CoordConfig {
            settlement_grace: Duration::ZERO,
            relay_probe_timeout: None,
            reachability_timeout: Duration::ZERO,
            ..CoordConfig::default()
        };
        assert_eq!(
            config.validate(),
            Ok(()),
            "no reachability checks, no timeout"
        );
        let invalid = CoordConfig {
            reachability_interval: Some(Duration::from_secs(60)),
            ..config.clone()
        }
        .validate()
        .unwrap_err();
        assert!(invalid
            .to_string()
            .starts_with("reachability_timeout of 0ns is too short"));
        let invalid = CoordConfig {
            worker_interval: Duration::ZERO,
            ..CoordConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            invalid,
            InvalidConfig::TooShort {
                setting: "worker_interval",
                value: Duration::ZERO
            }
        );
        let mut http = CoordConfig::default();
        http.http.write_timeout = Duration::ZERO;
        let invalid = http.validate().unwrap_err();
        assert!(invalid.to_string().contains("write_timeout"), "{invalid}");
    }

    #[tokio::test]
    async fn serving_refuses_an_invalid_config() {
        let storage = crate::connect("sqlite::memory:").await.expect("storage");
        let config = CoordConfig {
            heartbeat_totals_interval: Duration::ZERO,
            ..CoordConfig::default()
        };
        let coordinator = crate::Coordinator::new(config, storage);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = coordinator
            .serve(listener, std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            error.to_string().contains("heartbeat_totals_interval"),
            "{error}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = coordinator.spawn_serve(listener);
        assert_eq!(
            refused.err().map(|error| error.kind()),
            Some(std::io::ErrorKind::InvalidInput)
        );
    }
}
