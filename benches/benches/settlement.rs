//! Reward settlement at scale: receipt verification (one by one, batched, newest first with
//! superseded receipts skipped, and `as_shipped`: the way the coordinator verifies the receipts a
//! node hands in with each heartbeat), one epoch of 50 000 nodes and 1 000 000 signed receipts
//! through the whole pipeline, and Merkle proofs for every node. Signed receipts are generated
//! once per bench process.

use std::hint::black_box;
use std::sync::OnceLock;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use streamr_core::{
    segment_hash, EpochInputs, EpochObservations, FraudConfig, FraudEngine, KeyPair, NodeClaims,
    NodeId, NodeProfile, OperatorId, OriginDigests, ProbeSummary, ReceiptTally, ReceiptVerifier,
    SegmentChain, SegmentRecord, SessionGrant, SessionId, Settlement, SettlementConfig,
    SignatureCheck, Signed, SignedReceipt, StreamId, Subnet24, VerifierConfig, ViewerProfile,
    ViewerReceipt,
};

const NODES: usize = 50_000;
const SESSIONS_PER_NODE: usize = 4;
const RECEIPTS_PER_SESSION: u64 = 5;
const VIEWERS: usize = 20_000;
const T0: u64 = 1_800_000_000_000;
const BITRATE: u64 = 500_000;
const EPOCH_MS: u64 = 3_600_000;

/// One pre-generated epoch: grants, signed receipts per node, origin digests.
struct Fixture {
    nodes: Vec<NodeId>,
    grants: Vec<SessionGrant>,
    /// Every receipt with the node that submits it, grouped by node in node order.
    submissions: Vec<(NodeId, SignedReceipt)>,
    origin: OriginDigests,
    viewers: Vec<ViewerProfile>,
}

fn seed(kind: u8, i: usize) -> [u8; 32] {
    let mut s = [kind; 32];
    s[..8].copy_from_slice(&(i as u64).to_be_bytes());
    s
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let stream = StreamId::new("live").expect("stream id");
        let mut chain = SegmentChain::genesis(0);
        let mut origin = OriginDigests::new();
        let mut digests = Vec::new();
        for seq in 0..EPOCH_MS / 2_000 {
            let digest = chain.push(&segment_hash(&seq.to_be_bytes()));
            digests.push(digest);
            origin.insert(
                stream.clone(),
                seq,
                SegmentRecord {
                    digest,
                    published_ms: T0 + seq * 2_000,
                },
            );
        }
        let viewer_keys: Vec<KeyPair> = (0..VIEWERS)
            .map(|i| KeyPair::from_seed(seed(2, i)))
            .collect();
        let nodes: Vec<NodeId> = (0..NODES).map(|i| NodeId::from_bytes(seed(3, i))).collect();
        let mut grants = Vec::new();
        let mut submissions = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            for s in 0..SESSIONS_PER_NODE {
                let index = n * SESSIONS_PER_NODE + s;
                let viewer = &viewer_keys[index % VIEWERS];
                let mut sid = [0u8; 16];
                sid[..8].copy_from_slice(&(index as u64).to_be_bytes());
                let session_id = SessionId::from_bytes(sid);
                let start = T0 + (index as u64 % 1_000) * 1_000;
                grants.push(SessionGrant {
                    session_id,
                    viewer: viewer.viewer_key(),
                    node_id: *node,
                    stream_id: stream.clone(),
                    max_bytes: BITRATE * 3_600,
                    expiry_ms: T0 + EPOCH_MS + 60_000,
                });
                for r in 1..=RECEIPTS_PER_SESSION {
                    let t = start + r * 120_000;
                    let segment = (t - 4_000 - T0) / 2_000;
                    submissions.push((
                        *node,
                        Signed::sign(
                            ViewerReceipt {
                                session_id,
                                seq: r,
                                bytes_total: BITRATE * r * 120,
                                last_segment_seq: segment,
                                segments_digest: digests[segment as usize],
                                t_ms: t,
                            },
                            viewer,
                        ),
                    ));
                }
            }
        }
        let viewers = viewer_keys
            .iter()
            .enumerate()
            .map(|(i, k)| ViewerProfile {
                viewer: k.viewer_key(),
                subnet: Subnet24([150, (i >> 8) as u8, i as u8]).into(),
                operator: None,
            })
            .collect();
        Fixture {
            nodes,
            grants,
            submissions,
            origin,
            viewers,
        }
    })
}

const RECEIPTS_PER_NODE: usize = SESSIONS_PER_NODE * RECEIPTS_PER_SESSION as usize;
/// Nodes whose receipts one `verify_submissions` call takes in the epoch bench (whole nodes, so
/// tallies stay per node and no session is split over two calls).
const POOL_NODES: usize = 400;

/// `shards` verifiers over the first `nodes` nodes, contiguous ranges of nodes each, every
/// grant of those nodes admitted; `supersede_older` as in [`VerifierConfig`].
fn verifiers(
    f: &Fixture,
    nodes: usize,
    shards: usize,
    check: SignatureCheck,
    supersede_older: bool,
) -> Vec<ReceiptVerifier> {
    let config = VerifierConfig {
        signature_check: check,
        supersede_older,
        ..VerifierConfig::default()
    };
    let per_shard = nodes.div_ceil(shards.max(1));
    let mut out: Vec<ReceiptVerifier> = (0..shards)
        .map(|_| ReceiptVerifier::new(config.clone()))
        .collect();
    for (i, grant) in f.grants.iter().take(nodes * SESSIONS_PER_NODE).enumerate() {
        let shard = i / SESSIONS_PER_NODE / per_shard;
        out[shard]
            .admit_grant(grant.clone(), T0)
            .expect("valid viewer key");
    }
    out
}

fn bench_signatures(c: &mut Criterion) {
    const SAMPLE_NODES: usize = 1_024;
    let f = fixture();
    let sample = &f.submissions[..SAMPLE_NODES * RECEIPTS_PER_NODE];
    let per_node: Vec<(NodeId, Vec<SignedReceipt>)> = sample
        .chunks(RECEIPTS_PER_NODE)
        .map(|chunk| (chunk[0].0, chunk.iter().map(|(_, r)| r.clone()).collect()))
        .collect();
    let mut group = c.benchmark_group("receipt_signatures");
    group.throughput(Throughput::Elements(sample.len() as u64));
    // (name, signature check, pooled across nodes, batch size, newest first)
    let cases = [
        ("one_by_one", SignatureCheck::OneByOne, false, 256, false),
        (
            "batch_per_node_20",
            SignatureCheck::Batch,
            false,
            256,
            false,
        ),
        ("batch_pooled_256", SignatureCheck::Batch, true, 256, false),
        (
            "batch_pooled_1024",
            SignatureCheck::Batch,
            true,
            1_024,
            false,
        ),
        (
            "newest_first_per_node_20",
            SignatureCheck::Batch,
            false,
            256,
            true,
        ),
        (
            "newest_first_pooled_256",
            SignatureCheck::Batch,
            true,
            256,
            true,
        ),
        (
            "newest_first_pooled_1024",
            SignatureCheck::Batch,
            true,
            1_024,
            true,
        ),
    ];
    for (name, check, pooled, batch_size, newest_first) in cases {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut verifier = verifiers(f, SAMPLE_NODES, 1, check, newest_first)
                        .pop()
                        .expect("one verifier");
                    verifier.set_batch_size(batch_size);
                    verifier
                },
                |mut verifier| {
                    let now = T0 + EPOCH_MS;
                    let outcomes: Vec<_> = if pooled {
                        verifier.verify_submissions(sample, &f.origin, now)
                    } else {
                        per_node
                            .iter()
                            .flat_map(|(node, receipts)| {
                                verifier.verify_batch(node, receipts, &f.origin, now)
                            })
                            .collect()
                    };
                    let mut tally = ReceiptTally::default();
                    outcomes.iter().for_each(|o| tally.record(o));
                    let expected = if newest_first {
                        SAMPLE_NODES * SESSIONS_PER_NODE
                    } else {
                        sample.len()
                    };
                    // Superseded receipts count as submitted only.
                    assert_eq!(
                        (tally.submitted, tally.accepted, tally.forged),
                        (sample.len() as u64, expected as u64, 0)
                    );
                    tally
                },
                BatchSize::LargeInput,
            )
        });
    }
    // As the coordinator ships (streamr-coord/src/receipts.rs, `supersede_older` off): nodes
    // heartbeat every 5 s and viewers sign a receipt every 2 s, so each heartbeat carries 2 or 3
    // receipts per session. Per session and heartbeat the coordinator builds a verifier, admits
    // the grant, replays the session's stored last receipt (one more signature check) and
    // verifies the new receipts in one `verify_batch`. Database reads are left out.
    let sessions: Vec<(&SessionGrant, &[(NodeId, SignedReceipt)])> = f
        .grants
        .iter()
        .zip(sample.chunks(RECEIPTS_PER_SESSION as usize))
        .collect();
    group.bench_function("as_shipped_per_heartbeat_2_or_3", |b| {
        b.iter(|| {
            let now = T0 + EPOCH_MS;
            let mut tally = ReceiptTally::default();
            for (grant, receipts) in &sessions {
                let receipts: Vec<SignedReceipt> =
                    receipts.iter().map(|(_, r)| r.clone()).collect();
                let mut previous: Option<&SignedReceipt> = None;
                for heartbeat in [&receipts[..2], &receipts[2..]] {
                    let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
                    verifier
                        .admit_grant((*grant).clone(), T0)
                        .expect("valid viewer key");
                    if let Some(last) = previous {
                        let replay = verifier.verify_batch(
                            &grant.node_id,
                            std::slice::from_ref(last),
                            &f.origin,
                            now,
                        );
                        assert!(replay[0].is_ok(), "{replay:?}");
                    }
                    for outcome in verifier.verify_batch(&grant.node_id, heartbeat, &f.origin, now)
                    {
                        tally.record(&outcome);
                    }
                    previous = heartbeat.last();
                }
            }
            assert_eq!(
                (tally.submitted, tally.accepted),
                (sample.len() as u64, sample.len() as u64)
            );
            tally
        })
    });
    group.finish();
}

/// Verification (sharded over two threads by node, newest first unless the shards say
/// otherwise), fraud rules, reward split, ledger, vesting and the Merkle root for one epoch.
fn settle(f: &Fixture, shards: Vec<ReceiptVerifier>) -> streamr_core::EpochStatement {
    let (sessions, claims, _) = verify_all(f, shards);
    close_epoch(f, sessions, claims)
}

/// CPU time (user + system) the calling thread (`thread-self`) or the whole process (`self`)
/// has used, from `/proc/<which>/stat` (Linux; in units of 10 ms). `None` elsewhere.
fn cpu_seconds(which: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15, in USER_HZ (100 per second on Linux).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Verifies every receipt, one thread per shard; returns session usage, node claims and each
/// thread's CPU seconds.
fn verify_all(
    f: &Fixture,
    shards: Vec<ReceiptVerifier>,
) -> (Vec<streamr_core::SessionUsage>, Vec<NodeClaims>, Vec<f64>) {
    let per_shard = NODES.div_ceil(shards.len().max(1)) * RECEIPTS_PER_NODE;
    let usage: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .zip(f.submissions.chunks(per_shard))
            .map(|(mut verifier, submissions)| {
                scope.spawn(move || {
                    let cpu_start = cpu_seconds("thread-self");
                    let mut tallies = Vec::new();
                    for pooled in submissions.chunks(POOL_NODES * RECEIPTS_PER_NODE) {
                        let outcomes =
                            verifier.verify_submissions(pooled, &f.origin, T0 + EPOCH_MS);
                        for (node_receipts, node_outcomes) in pooled
                            .chunks(RECEIPTS_PER_NODE)
                            .zip(outcomes.chunks(RECEIPTS_PER_NODE))
                        {
                            let mut tally = ReceiptTally::default();
                            node_outcomes.iter().for_each(|o| tally.record(o));
                            tallies.push((node_receipts[0].0, tally));
                        }
                    }
                    let usage = verifier.take_usage();
                    let cpu = cpu_start
                        .zip(cpu_seconds("thread-self"))
                        .map_or(f64::NAN, |(start, end)| end - start);
                    (usage, tallies, cpu)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut sessions = Vec::new();
    let mut claims = Vec::new();
    let mut cpu = Vec::new();
    for (shard_usage, tallies, thread_cpu) in usage {
        cpu.push(thread_cpu);
        let claimed: std::collections::HashMap<NodeId, u64> =
            shard_usage
                .iter()
                .fold(std::collections::HashMap::new(), |mut m, u| {
                    *m.entry(u.node_id).or_default() += u.bytes;
                    m
                });
        for (node, receipts) in tallies {
            claims.push(NodeClaims {
                node_id: node,
                claimed_bytes: claimed.get(&node).copied().unwrap_or(0),
                unattested_bytes: 0,
                sessions: SESSIONS_PER_NODE as u64,
                receipts,
                viewer_posted: ReceiptTally::default(),
                heartbeats: Some(1),
            });
        }
        sessions.extend(shard_usage);
    }
    assert_eq!(sessions.len(), NODES * SESSIONS_PER_NODE);
    (sessions, claims, cpu)
}

/// One epoch outside criterion, reporting CPU time next to wall time: on a loaded machine the
/// wall time says little, while the CPU time of the busier verification thread plus that of the
/// rules is what the epoch takes on two idle cores. `newest_first` as
/// [`VerifierConfig::supersede_older`]. Returns the epoch's statement.
fn report_epoch_cpu(f: &Fixture, newest_first: bool) -> streamr_core::EpochStatement {
    let shards = verifiers(f, NODES, 2, SignatureCheck::Batch, newest_first);
    let started = std::time::Instant::now();
    let (sessions, claims, threads) = verify_all(f, shards);
    let verified = started.elapsed().as_secs_f64();
    let rules_cpu = cpu_seconds("thread-self");
    let statement = close_epoch(f, sessions, claims);
    let rules_cpu = rules_cpu
        .zip(cpu_seconds("thread-self"))
        .map_or(f64::NAN, |(start, end)| end - start);
    let wall = started.elapsed().as_secs_f64();
    let busiest = threads.iter().copied().fold(0.0, f64::max);
    println!(
        "settlement epoch (one run, {}): wall {wall:.2} s (verification {verified:.2} s); CPU: \
         verification threads {threads:.2?} s, rules and ledger {rules_cpu:.2} s; \
         on two idle cores ≈ {:.2} s",
        if newest_first {
            "newest first"
        } else {
            "every receipt checked"
        },
        busiest + rules_cpu
    );
    statement
}

/// Fraud rules, reward split, ledger, vesting and the Merkle root.
fn close_epoch(
    f: &Fixture,
    sessions: Vec<streamr_core::SessionUsage>,
    claims: Vec<NodeClaims>,
) -> streamr_core::EpochStatement {
    let probe = ProbeSummary {
        total: 60,
        passed: 59,
        timeouts: 1,
        capacity_bytes_per_s: 5_000_000,
        ..ProbeSummary::default()
    };
    let observations = EpochObservations {
        epoch: 1_000,
        epoch_ms: EPOCH_MS,
        nodes: f
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeProfile {
                node_id: *n,
                operator: OperatorId::new(format!("op{}", i / 2)).expect("operator"),
                subnet: Subnet24([100, (i >> 8) as u8, i as u8]).into(),
                first_epoch: 0,
                average_reward: 20_000,
            })
            .collect(),
        viewers: f.viewers.clone(),
        sessions,
        claims,
        probes: f.nodes.iter().map(|n| (*n, probe)).collect(),
        bitrates: vec![(StreamId::new("live").expect("stream id"), BITRATE)],
        operator_route_share_ppm: vec![],
        recently_penalized: vec![],
        grants: None,
        probe_traffic: Vec::new(),
    };
    let report = FraudEngine::new(FraudConfig::default()).assess(&observations);
    let inputs = EpochInputs {
        epoch: 1_000,
        pool: 1_000_000_000,
        config: SettlementConfig {
            vesting_epochs: 0,
            ..SettlementConfig::default()
        },
        nodes: report.node_inputs,
        penalties: report.penalties,
    };
    let outcome = Settlement::new().settle_epoch(&inputs).expect("settles");
    assert_eq!(outcome.statement.leaf_count, NODES as u64);
    outcome.statement
}

fn bench_settlement(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("settlement");
    group.sample_size(10);
    group.throughput(Throughput::Elements(
        (NODES * SESSIONS_PER_NODE) as u64 * RECEIPTS_PER_SESSION,
    ));
    let report = std::sync::Once::new();
    group.bench_function("epoch_50k_nodes_1m_receipts_2_threads", |b| {
        report.call_once(|| {
            // The path before newest-first verification, as a same-run baseline (slow: opt in).
            let newest_first = report_epoch_cpu(f, true);
            if std::env::var_os("SETTLEMENT_BASELINE").is_some() {
                // Superseding changes how receipts are counted, never what an epoch pays.
                assert_eq!(report_epoch_cpu(f, false), newest_first);
            }
        });
        b.iter_batched(
            || verifiers(f, NODES, 2, SignatureCheck::Batch, true),
            |shards| black_box(settle(f, shards)),
            BatchSize::PerIteration,
        )
    });
    // Verified once, and only if this case runs.
    let verified = OnceLock::new();
    group.bench_function("rules_and_ledger_50k_nodes_200k_sessions", |b| {
        let (sessions, claims) = verified.get_or_init(|| {
            let (sessions, claims, _) =
                verify_all(f, verifiers(f, NODES, 2, SignatureCheck::Batch, true));
            (sessions, claims)
        });
        b.iter_batched(
            || (sessions.clone(), claims.clone()),
            |(sessions, claims)| black_box(close_epoch(f, sessions, claims)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_proofs(c: &mut Criterion) {
    let f = fixture();
    let inputs = EpochInputs {
        epoch: 0,
        pool: 1_000_000_000,
        config: SettlementConfig {
            vesting_epochs: 0,
            ..SettlementConfig::default()
        },
        nodes: f
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| streamr_core::NodeEpochInput {
                node_id: *n,
                operator: OperatorId::new(format!("op{i}")).expect("operator"),
                subnet: Subnet24([100, (i >> 8) as u8, i as u8]).into(),
                verified_bytes: 1_000_000 + i as u64,
                on_time_bytes: 1_000_000,
                flagged_bytes: 0,
                availability_ppm: 1_000_000,
                unattested_bytes: 0,
                probe_capacity_bytes: 0,
                probation_ppm: 1_000_000,
            })
            .collect(),
        penalties: vec![],
    };
    let outcome = Settlement::new().settle_epoch(&inputs).expect("settles");
    let mut group = c.benchmark_group("merkle");
    group.sample_size(10);
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("prove_and_verify_all_50k", |b| {
        b.iter(|| {
            let root = outcome.statement.merkle_root;
            let verified = outcome
                .leaves
                .iter()
                .enumerate()
                .filter(|(i, leaf)| {
                    outcome
                        .tree
                        .proof(*i)
                        .is_some_and(|p| p.verify(&root, leaf))
                })
                .count();
            assert_eq!(verified, NODES);
            verified
        })
    });
    group.bench_function("build_tree_50k", |b| {
        b.iter(|| black_box(streamr_core::MerkleTree::build(&outcome.leaves).root()))
    });
    group.finish();
}

criterion_group!(benches, bench_signatures, bench_proofs, bench_settlement);
criterion_main!(benches);
