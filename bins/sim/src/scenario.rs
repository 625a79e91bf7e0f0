//! The synthetic network: nodes, viewers and the attacks they mount.

use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use streamr_core::{KeyPair, NodeId, OperatorId, Subnet24};

/// Simulation parameters.
#[derive(Args, Clone, Debug, Serialize)]
pub struct SimConfig {
    /// Seed of every random choice; equal seeds give equal reports.
    #[arg(env = "STREAMR_SIM_SEED", long, default_value_t = 1)]
    pub seed: u64,
    /// Honest nodes.
    #[arg(env = "STREAMR_SIM_NODES", long, default_value_t = 120)]
    pub nodes: usize,
    /// Honest viewers.
    #[arg(env = "STREAMR_SIM_VIEWERS", long, default_value_t = 800)]
    pub viewers: usize,
    /// Streams.
    #[arg(env = "STREAMR_SIM_STREAMS", long, default_value_t = 4)]
    pub streams: usize,
    /// Epochs to simulate.
    #[arg(env = "STREAMR_SIM_EPOCHS", long, default_value_t = 12)]
    pub epochs: u64,
    /// Epoch length (`1h`, `90s`; a bare number is seconds).
    #[arg(long = "epoch", alias = "epoch-s", env = "STREAMR_SIM_EPOCH", default_value = "1h",
          value_parser = secs)]
    pub epoch_s: u64,
    /// Attacker nodes per attack (A2 uses four times as many identities).
    #[arg(env = "STREAMR_SIM_ATTACKERS", long, default_value_t = 3)]
    pub attackers: usize,
    /// Time between a viewer's receipts (`2m`; a bare number is seconds).
    #[arg(long = "receipt-interval", alias = "receipt-interval-s",
          env = "STREAMR_SIM_RECEIPT_INTERVAL", default_value = "2m", value_parser = secs)]
    pub receipt_interval_s: u64,
    /// Probes per node per epoch.
    #[arg(env = "STREAMR_SIM_PROBES", long, default_value_t = 120)]
    pub probes: u64,
    /// Viewers' sessions start anywhere in an epoch and run 10–40 minutes, on into the next
    /// epochs; each node claims at every epoch's end what its accounting has settled by then.
    /// (By default a session lies within its epoch and nodes claim once it went quiet.)
    #[arg(env = "STREAMR_SIM_SESSIONS_SPAN_EPOCHS", long)]
    pub sessions_span_epochs: bool,
    /// Every this many epochs, one in which the coordinator's prober records nothing (an
    /// outage); 0: never.
    #[arg(env = "STREAMR_SIM_PROBER_OUTAGE_EVERY", long, default_value_t = 0)]
    pub prober_outage_every: u64,
    /// Every this many epochs, the last `--coordinator-outage-epochs` of them are epochs
    /// through which the whole coordinator is down: no heartbeat gets through (what nodes serve
    /// then is claimed by their first heartbeat after), the prober records nothing, and the
    /// receipts nodes kept are handed in after it and booked where they were signed; 0: never.
    #[arg(
        env = "STREAMR_SIM_COORDINATOR_OUTAGE_EVERY",
        long,
        default_value_t = 0
    )]
    pub coordinator_outage_every: u64,
    /// How many epochs each coordinator outage lasts (fewer than `--coordinator-outage-every`).
    #[arg(env = "STREAMR_SIM_COORDINATOR_OUTAGE_EPOCHS", long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub coordinator_outage_epochs: u64,
    /// Through a coordinator outage viewers cannot verify segments (their hashes come from
    /// the coordinator), so they sign nothing, as the shipped viewer does: a session's first
    /// receipt after it covers every byte since its previous one and is booked to the epoch
    /// it is signed in. (By default viewers keep signing and nodes hand the receipts in after.)
    #[arg(env = "STREAMR_SIM_OUTAGE_VIEWERS_BLIND", long)]
    pub outage_viewers_blind: bool,
    /// Stream bitrate, bytes per second.
    #[arg(env = "STREAMR_SIM_BITRATE", long, default_value_t = 500_000)]
    pub bitrate: u64,
    /// Pool per epoch, micro-units.
    #[arg(env = "STREAMR_SIM_POOL", long, default_value_t = 1_000_000_000)]
    pub pool: u64,
    /// Stealthier colluders (A6): half of their sessions are routed normally and really watched,
    /// so their history is not all on one operator.
    #[arg(env = "STREAMR_SIM_STEALTHY", long)]
    pub stealthy: bool,
    /// Leave out the ten classic attacks (A1–A10), e.g. to measure one threat alone.
    #[arg(env = "STREAMR_SIM_NO_CLASSIC", long)]
    pub no_classic: bool,
    /// Epochs of honest viewing the fraud engine has seen before the run (a running network's
    /// viewer history); not settled, not reported.
    #[arg(env = "STREAMR_SIM_WARMUP_EPOCHS", long, default_value_t = 6)]
    pub warmup_epochs: u64,
    /// Probes per node per epoch that play a session and sign receipts like a viewer (the rest
    /// only measure).
    #[arg(env = "STREAMR_SIM_PROBE_SESSIONS", long, default_value_t = 12)]
    pub probe_sessions: u64,
    /// Grant requests an honest viewer key may make per epoch.
    #[arg(env = "STREAMR_SIM_GRANT_BUDGET", long, default_value_t = 8)]
    pub grant_budget: u64,
    #[command(flatten)]
    pub threat: ThreatConfig,
}

/// A threat beyond the classic ten, with the attacker's budget.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ThreatConfig {
    /// The threat to mount.
    #[arg(env = "STREAMR_SIM_THREAT", id = "threat", long = "threat", value_enum)]
    pub kind: Option<Threat>,
    /// Viewer keys the attacker controls (per epoch for fresh-keys, which renews them).
    #[arg(
        env = "STREAMR_SIM_THREAT_KEYS",
        id = "threat_keys",
        long = "threat-keys",
        default_value_t = 10
    )]
    pub keys: u64,
    /// Nodes the attacker runs.
    #[arg(
        env = "STREAMR_SIM_THREAT_NODES",
        id = "threat_nodes",
        long = "threat-nodes",
        default_value_t = 3
    )]
    pub nodes: u64,
    /// Grant requests each attacker key makes per epoch (re-rolls and `exclude=` included): the
    /// coordinator's per-key budget, or more where it has none.
    #[arg(
        env = "STREAMR_SIM_THREAT_REQUESTS",
        id = "threat_requests",
        long = "threat-requests",
        default_value_t = 8
    )]
    pub requests: u64,
    /// Source /24s the attacker's keys come from.
    #[arg(
        env = "STREAMR_SIM_THREAT_PREFIXES",
        id = "threat_prefixes",
        long = "threat-prefixes",
        default_value_t = 2
    )]
    pub prefixes: u64,
    /// Sessions each attacker key plays (or fakes) per epoch.
    #[arg(
        env = "STREAMR_SIM_THREAT_SESSIONS",
        id = "threat_sessions",
        long = "threat-sessions",
        default_value_t = 2
    )]
    pub sessions: u64,
    /// Bandwidth the attacker's keys really download with, bytes/s per session (0: receipts
    /// only, no download).
    #[arg(
        env = "STREAMR_SIM_THREAT_BANDWIDTH",
        id = "threat_bandwidth",
        long = "threat-bandwidth",
        default_value_t = 0
    )]
    pub bandwidth: u64,
}

/// Threats beyond the classic ten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Threat {
    /// Hostile viewer keys concentrate sessions and bad receipts on one honest node.
    Framing,
    /// The operator's nodes collect receipts from fresh viewer keys every epoch.
    FreshKeys,
    /// Nodes with no viewers claim unattested bytes (and serve only probes).
    IdleClaims,
    /// Viewers aiming at one honest node send one receipt per session, then watch on silently.
    Withholding,
    /// Nodes up only the first third of each epoch serve the viewers routed to them then, and
    /// claim as many unattested bytes as their probes' passing share lets by.
    PartTime,
    /// Nodes that send no heartbeat two epochs in three (their viewers post receipts to the
    /// coordinator, as during an outage), then claim in the third what they served since and,
    /// as unattested, everything their grants carried through the silent epochs.
    Hoarding,
}

/// The attacks of the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Attack {
    /// Byte inflation: claims far more than receipts show.
    A1,
    /// Sybil farm: many identities in one /24.
    A2,
    /// Self-dealing bots watching the attacker's own node.
    A3,
    /// Stale or wrong content.
    A4,
    /// Fake uptime: heartbeats and claims, no service.
    A5,
    /// Receipt collusion: viewers that sign for one operator's nodes only.
    A6,
    /// Replayed and forged receipts.
    A7,
    /// Griefing viewers that stop signing (attack on honest nodes).
    A8,
    /// Serve probes well but viewers badly.
    A9,
    /// Whitewashing: re-register after a penalty.
    A10,
    /// Fresh-key viewer farm ([`Threat::FreshKeys`]).
    FreshKeys,
    /// Idle unattested claims ([`Threat::IdleClaims`]).
    IdleClaims,
    /// Part-time service with unattested claims ([`Threat::PartTime`]).
    PartTime,
    /// Claims held back through silent epochs ([`Threat::Hoarding`]).
    Hoarding,
}

impl Attack {
    /// Every attack.
    pub const ALL: [Attack; 10] = [
        Attack::A1,
        Attack::A2,
        Attack::A3,
        Attack::A4,
        Attack::A5,
        Attack::A6,
        Attack::A7,
        Attack::A8,
        Attack::A9,
        Attack::A10,
    ];

    /// Epochs within which the rules should catch it (the targets' windows).
    pub fn window_epochs(self) -> u64 {
        match self {
            Attack::A1 | Attack::A4 | Attack::A5 | Attack::A7 | Attack::IdleClaims => 1,
            _ => 3,
        }
    }
}

/// Who runs a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An honest friend node.
    Honest,
    /// An attacker mounting the attack.
    Attacker(Attack),
}

/// A simulated node.
pub struct SimNode {
    pub key: KeyPair,
    pub id: NodeId,
    pub operator: OperatorId,
    pub subnet: Subnet24,
    pub first_epoch: u64,
    pub role: Role,
    /// Probe-measured throughput, bytes per second.
    pub capacity: u64,
    /// Chance per epoch of a five-minute restart.
    pub restart_chance: f64,
    /// Replaced by a new identity (A10) and gone.
    pub retired: bool,
    /// Routing quality from the previous epoch, ppm.
    pub quality_ppm: u64,
    /// Heartbeat nonce.
    pub nonce: u64,
}

/// How a viewer behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewerKind {
    /// Signs every receipt, mostly on time.
    Normal,
    /// Lossy Wi-Fi: loses some receipts, some content arrives late.
    Lossy,
    /// A player that cannot sign: its bytes are unattested.
    Legacy,
    /// Stops signing after the first third of each session (A8).
    Griefer,
    /// A bot of the node at this index (A3).
    Bot(usize),
    /// A colluding viewer of these node indices (A6).
    Colluder(Vec<usize>),
    /// A hostile key framing the node at this index.
    Framer(usize),
    /// A fresh key of the farm of these node indices (renewed every epoch).
    Farm(Vec<usize>),
    /// Sends one receipt per session, then watches on without signing, on the node at this
    /// index where routing offers it.
    Withholder(usize),
}

/// A simulated viewer.
pub struct SimViewer {
    pub key: KeyPair,
    pub subnet: Subnet24,
    pub kind: ViewerKind,
}

/// The network at the start of the run.
pub struct Network {
    pub nodes: Vec<SimNode>,
    /// The honest node framers target.
    pub victim: Option<usize>,
    pub viewers: Vec<SimViewer>,
    pub rng: ChaCha8Rng,
}

fn random_subnet(rng: &mut ChaCha8Rng, first: u8) -> Subnet24 {
    Subnet24([first, rng.gen(), rng.gen()])
}

impl Network {
    /// Builds the honest network and the attackers, all registered long before the run.
    pub fn generate(config: &SimConfig) -> anyhow::Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut nodes = Vec::new();
        let honest_operators = (config.nodes / 2).max(1);
        for i in 0..config.nodes {
            let key = KeyPair::from_seed(rng.gen());
            nodes.push(SimNode {
                id: key.node_id(),
                key,
                operator: OperatorId::new(format!("friend-{}", i % honest_operators))?,
                subnet: random_subnet(&mut rng, 100),
                first_epoch: 0,
                role: Role::Honest,
                capacity: rng.gen_range(2_000_000..10_000_000),
                restart_chance: if rng.gen_bool(0.2) { 0.3 } else { 0.02 },
                retired: false,
                quality_ppm: 900_000,
                nonce: 0,
            });
        }
        let mut add_attacker = |rng: &mut ChaCha8Rng,
                                attack: Attack,
                                operator: String,
                                subnet: Subnet24,
                                capacity: u64|
         -> anyhow::Result<usize> {
            let key = KeyPair::from_seed(rng.gen());
            nodes.push(SimNode {
                id: key.node_id(),
                key,
                operator: OperatorId::new(operator)?,
                subnet,
                first_epoch: 0,
                role: Role::Attacker(attack),
                capacity,
                restart_chance: 0.0,
                retired: false,
                quality_ppm: 900_000,
                nonce: 0,
            });
            Ok(nodes.len() - 1)
        };
        let mut bots_of = Vec::new();
        let mut colluders_of = Vec::new();
        let classic: &[Attack] = if config.no_classic { &[] } else { &Attack::ALL };
        let threat = &config.threat;
        let mut threat_nodes = Vec::new();
        let node_attack = match threat.kind {
            Some(Threat::FreshKeys) => Some(Attack::FreshKeys),
            Some(Threat::IdleClaims) => Some(Attack::IdleClaims),
            Some(Threat::PartTime) => Some(Attack::PartTime),
            Some(Threat::Hoarding) => Some(Attack::Hoarding),
            Some(Threat::Framing | Threat::Withholding) | None => None,
        };
        if let Some(attack) = node_attack {
            for k in 0..threat.nodes {
                // Each node in a /24 and under a name of its own: no cap binds on them.
                let subnet = random_subnet(&mut rng, 99);
                threat_nodes.push(add_attacker(
                    &mut rng,
                    attack,
                    format!("{attack:?}-{k}"),
                    subnet,
                    5_000_000,
                )?);
            }
        }
        for &attack in classic {
            match attack {
                Attack::A8 => {}
                Attack::A2 => {
                    let subnet = random_subnet(&mut rng, 66);
                    for k in 0..config.attackers * 4 {
                        add_attacker(&mut rng, attack, format!("sybil-{k}"), subnet, 1_000_000)?;
                    }
                }
                Attack::A6 => {
                    let mut group = Vec::new();
                    for k in 0..config.attackers {
                        let subnet = random_subnet(&mut rng, 77);
                        let operator = format!("colluder-{}", k / 2);
                        group.push(add_attacker(&mut rng, attack, operator, subnet, 5_000_000)?);
                    }
                    for pair in group.chunks(2) {
                        colluders_of.push(pair.to_vec());
                    }
                }
                _ => {
                    for k in 0..config.attackers {
                        let subnet = random_subnet(&mut rng, 88);
                        let index = add_attacker(
                            &mut rng,
                            attack,
                            format!("{attack:?}-{k}"),
                            subnet,
                            5_000_000,
                        )?;
                        if attack == Attack::A3 {
                            bots_of.push(index);
                        }
                    }
                }
            }
        }
        let mut viewers = Vec::new();
        for _ in 0..config.viewers {
            let kind = match rng.gen_range(0..100) {
                0..=14 => ViewerKind::Lossy,
                15..=22 => ViewerKind::Legacy,
                23 => ViewerKind::Griefer,
                _ => ViewerKind::Normal,
            };
            viewers.push(SimViewer {
                key: KeyPair::from_seed(rng.gen()),
                subnet: random_subnet(&mut rng, 150),
                kind,
            });
        }
        for node in bots_of {
            let home = nodes.get(node).map(|n| n.subnet).unwrap_or_default();
            for b in 0..12 {
                viewers.push(SimViewer {
                    key: KeyPair::from_seed(rng.gen()),
                    subnet: if b % 2 == 0 {
                        home
                    } else {
                        random_subnet(&mut rng, 150)
                    },
                    kind: ViewerKind::Bot(node),
                });
            }
        }
        for group in colluders_of {
            for _ in 0..10 * group.len() {
                viewers.push(SimViewer {
                    key: KeyPair::from_seed(rng.gen()),
                    subnet: random_subnet(&mut rng, 150),
                    kind: ViewerKind::Colluder(group.clone()),
                });
            }
        }
        let victim = (matches!(threat.kind, Some(Threat::Framing | Threat::Withholding))
            && config.nodes > 0)
            .then_some(0);
        let prefixes: Vec<Subnet24> = (0..threat.prefixes.max(1))
            .map(|_| random_subnet(&mut rng, 160))
            .collect();
        let kind = match threat.kind {
            Some(Threat::Framing) => victim.map(ViewerKind::Framer),
            Some(Threat::FreshKeys) => Some(ViewerKind::Farm(threat_nodes)),
            Some(Threat::Withholding) => victim.map(ViewerKind::Withholder),
            _ => None,
        };
        if let Some(kind) = kind {
            for k in 0..threat.keys {
                viewers.push(SimViewer {
                    key: KeyPair::from_seed(rng.gen()),
                    subnet: prefixes[k as usize % prefixes.len()],
                    kind: kind.clone(),
                });
            }
        }
        Ok(Self {
            nodes,
            victim,
            viewers,
            rng,
        })
    }
}

/// A duration flag's value in whole seconds: humantime (`1h`, `90s`) or a bare number of
/// seconds, as the older `--epoch-s` and `--receipt-interval-s` took.
fn secs(value: &str) -> Result<u64, String> {
    streamr_net::cli::seconds_or_duration(value).map(|d| d.as_secs())
}
