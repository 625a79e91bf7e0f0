//! The synthetic network: nodes, viewers and the attacks they mount.

use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use streamr_core::{KeyPair, NodeId, OperatorId, Subnet24};

/// Simulation parameters.
#[derive(Args, Clone, Debug, Serialize)]
pub struct SimConfig {
    /// Seed of every random choice; equal seeds give equal reports.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Honest nodes.
    #[arg(long, default_value_t = 120)]
    pub nodes: usize,
    /// Honest viewers.
    #[arg(long, default_value_t = 800)]
    pub viewers: usize,
    /// Streams.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Epochs to simulate.
    #[arg(long, default_value_t = 12)]
    pub epochs: u64,
    /// Epoch length, seconds.
    #[arg(long, default_value_t = 3600)]
    pub epoch_s: u64,
    /// Attacker nodes per attack (A2 uses four times as many identities).
    #[arg(long, default_value_t = 3)]
    pub attackers: usize,
    /// Seconds between a viewer's receipts.
    #[arg(long, default_value_t = 120)]
    pub receipt_interval_s: u64,
    /// Probes per node per epoch.
    #[arg(long, default_value_t = 120)]
    pub probes: u64,
    /// Stream bitrate, bytes per second.
    #[arg(long, default_value_t = 500_000)]
    pub bitrate: u64,
    /// Pool per epoch, micro-units.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub pool: u64,
    /// Stealthier colluders (A6): half of their sessions are routed normally and really watched,
    /// so their history is not all on one operator.
    #[arg(long)]
    pub stealthy: bool,
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
            Attack::A1 | Attack::A4 | Attack::A5 | Attack::A7 => 1,
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
        for attack in Attack::ALL {
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
        Ok(Self {
            nodes,
            viewers,
            rng,
        })
    }
}
