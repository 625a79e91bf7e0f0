//! Settlement, ledger and payout properties over random epoch histories.

use proptest::prelude::*;

use crate::*;

fn node(i: u8) -> NodeId {
    NodeId::from_bytes([i; 32])
}

fn contribution(i: u8, bytes: u64, availability_ppm: u64) -> NodeEpochInput {
    NodeEpochInput {
        node_id: node(i),
        operator: OperatorId::new(format!("op{}", i % 5)).unwrap(),
        subnet: Subnet24([10, 0, i % 7]).into(),
        verified_bytes: bytes,
        on_time_bytes: bytes - bytes / 10,
        flagged_bytes: bytes / 20,
        availability_ppm,
        unattested_bytes: bytes / 3,
        probe_capacity_bytes: bytes / 4,
        probation_ppm: PPM,
    }
}

fn history_strategy() -> impl Strategy<Value = Vec<EpochInputs>> {
    let epoch = (
        1u64..10_000_000_000,
        proptest::collection::btree_map(0u8..30, (0u64..1 << 40, 0u64..=PPM), 0..20),
        proptest::collection::vec((0u8..30, 0u64..5_000_000_000), 0..4),
    );
    (proptest::collection::vec(epoch, 1..8), 0u64..4).prop_map(|(epochs, vesting_epochs)| {
        epochs
            .into_iter()
            .enumerate()
            .map(|(e, (pool, nodes, penalties))| EpochInputs {
                epoch: e as u64,
                pool,
                config: SettlementConfig {
                    vesting_epochs,
                    ..SettlementConfig::default()
                },
                nodes: nodes
                    .into_iter()
                    .map(|(i, (bytes, avail))| contribution(i, bytes, avail))
                    .collect(),
                penalties: penalties
                    .into_iter()
                    .map(|(i, amount)| PenaltyOrder {
                        node_id: node(i),
                        amount,
                        rule: "test".into(),
                    })
                    .collect(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn settlement_keeps_the_books_and_replays_bit_for_bit(history in history_strategy()) {
        let mut settlement = Settlement::new();
        let mut statements = Vec::new();
        let mut issued = 0u64;
        for inputs in &history {
            let before: Vec<(NodeId, u64)> = inputs
                .penalties
                .iter()
                .map(|p| (p.node_id, settlement.balance(&p.node_id).map_or(0, NodeBalance::unvested)))
                .collect();
            let outcome = settlement.settle_epoch(inputs).unwrap();
            issued += inputs.pool;
            let s = &outcome.statement;
            // Rewards plus what stayed in the pool equal the pool exactly.
            prop_assert_eq!(s.distributed + outcome.split.unallocated, inputs.pool);
            prop_assert!(settlement.ledger().is_balanced());
            prop_assert_eq!(settlement.ledger().issued(), issued);
            // A penalty never takes more than what was unvested (plus this epoch's reward).
            let credited: u64 = outcome.split.rewards.iter().map(|r| r.amount).sum();
            let at_risk: u64 = before.iter().map(|(_, u)| *u).sum::<u64>() + credited;
            prop_assert!(s.penalties <= at_risk);
            for leaf in &outcome.leaves {
                prop_assert!(leaf.cumulative_vested <= leaf.cumulative_earned);
                let b = settlement.balance(&leaf.node_id).unwrap();
                prop_assert_eq!(
                    settlement.ledger().balance(&Account::Unvested(leaf.node_id)),
                    b.unvested()
                );
            }
            for (i, leaf) in outcome.leaves.iter().enumerate() {
                prop_assert!(outcome.tree.proof(i).unwrap().verify(&s.merkle_root, leaf));
            }
            statements.push(s.clone());
        }
        for pair in statements.windows(2) {
            prop_assert_eq!(pair[1].previous_hash, pair[0].hash());
        }
        prop_assert_eq!(replay_epochs(&history).unwrap(), statements);
    }

    #[test]
    fn paying_out_twice_never_pays_twice(history in history_strategy(), fixed in 0u64..1000) {
        let mut settlement = Settlement::new();
        for inputs in &history {
            settlement.settle_epoch(inputs).unwrap();
        }
        let policy = PayoutPolicy {
            default_threshold: 1_000,
            thresholds: [(node(3), u64::MAX)].into_iter().collect(),
            fees: FeeSchedule { fixed, proportional_ppm: 2_500 },
        };
        let mut chain = SimulatedPayoutSink::new();
        // A crash after the sink paid but before the ledger recorded it: the same plan again.
        let lost = settlement.plan_payouts(&policy);
        for item in &lost {
            chain.pay(item).unwrap();
        }
        let paid = settlement.pay_out(1_000, &policy, &mut chain).unwrap();
        prop_assert_eq!(&paid, &lost);
        prop_assert!(settlement.pay_out(1_001, &policy, &mut chain).unwrap().is_empty());
        for item in &paid {
            prop_assert_eq!(chain.paid(&item.node_id), item.net);
            prop_assert_eq!(item.gross, item.net + item.fixed_fee + item.proportional_fee);
            prop_assert_eq!(settlement.ledger().balance(&Account::PaidOut(item.node_id)), item.net);
            prop_assert!(item.node_id != node(3));
        }
        prop_assert_eq!(chain.transfers().len(), paid.len());
        prop_assert!(settlement.ledger().is_balanced());
    }
}

#[test]
fn penalties_take_newest_unvested_rewards_and_vesting_waits() {
    let mut settlement = Settlement::new();
    let config = SettlementConfig {
        vesting_epochs: 2,
        ..SettlementConfig::default()
    };
    let mut inputs = EpochInputs {
        epoch: 0,
        pool: 1_000,
        config,
        nodes: vec![contribution(1, 1_000_000, PPM)],
        penalties: vec![],
    };
    for epoch in 0..3 {
        inputs.epoch = epoch;
        settlement.settle_epoch(&inputs).unwrap();
    }
    // Epoch 0's tranche vested at the close of epoch 2; epochs 1 and 2 are unvested.
    let b = settlement.balance(&node(1)).unwrap();
    assert_eq!((b.cumulative_vested, b.unvested()), (200, 400));
    inputs.epoch = 3;
    inputs.pool = 0;
    inputs.penalties = vec![PenaltyOrder {
        node_id: node(1),
        amount: 10_000,
        rule: "test".into(),
    }];
    let outcome = settlement.settle_epoch(&inputs).unwrap();
    assert_eq!(outcome.statement.penalties, 400);
    let b = settlement.balance(&node(1)).unwrap();
    assert_eq!(
        (b.cumulative_earned, b.cumulative_vested, b.unvested()),
        (200, 200, 0)
    );
    inputs.epoch = 5;
    assert_eq!(
        settlement.settle_epoch(&inputs).unwrap_err(),
        SettlementError::EpochOutOfOrder {
            previous: 3,
            got: 5
        }
    );
}

#[test]
fn rewards_move_from_unvested_to_vested_to_paid_with_threshold_and_fees() {
    let mut settlement = Settlement::new();
    let mut sink = SimulatedPayoutSink::new();
    let policy = PayoutPolicy {
        default_threshold: 300,
        thresholds: Default::default(),
        fees: FeeSchedule {
            fixed: 5,
            proportional_ppm: 10_000,
        },
    };
    let mut inputs = EpochInputs {
        epoch: 0,
        pool: 1_000,
        config: SettlementConfig {
            vesting_epochs: 2,
            ..SettlementConfig::default()
        },
        nodes: vec![contribution(1, 1_000_000, PPM)],
        penalties: vec![],
    };
    let mut stages = Vec::new();
    for epoch in 0..4 {
        inputs.epoch = epoch;
        settlement.settle_epoch(&inputs).unwrap();
        settlement.pay_out(epoch, &policy, &mut sink).unwrap();
        let lifecycle = PayoutLifecycle::of(settlement.ledger(), &node(1));
        assert!(lifecycle.is_conserved(), "{lifecycle:?}");
        stages.push((
            lifecycle.unvested,
            lifecycle.vested,
            lifecycle.paid,
            lifecycle.fees,
        ));
    }
    assert_eq!(
        stages,
        [
            // Epoch 0's reward vests at the close of epoch 2...
            (200, 0, 0, 0),
            (400, 0, 0, 0),
            // ...where the 200 vested stay below the 300 threshold and are held back...
            (400, 200, 0, 0),
            // ...until 400 have vested: paid out less 5 fixed and 1 % (4).
            (400, 0, 391, 9),
        ]
    );
    assert_eq!(sink.paid(&node(1)), 391);
    assert_eq!(sink.transfers(), [(node(1), 391)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_earned_unit_is_unvested_vested_paid_or_fees(
        history in history_strategy(),
        threshold in 0u64..50_000_000,
        fixed in 0u64..10_000,
        proportional_ppm in 0u64..100_000,
    ) {
        let mut settlement = Settlement::new();
        let mut sink = SimulatedPayoutSink::new();
        let policy = PayoutPolicy {
            default_threshold: threshold,
            thresholds: Default::default(),
            fees: FeeSchedule { fixed, proportional_ppm },
        };
        for inputs in &history {
            settlement.settle_epoch(inputs).unwrap();
            let paid = settlement.pay_out(inputs.epoch, &policy, &mut sink).unwrap();
            for item in &paid {
                prop_assert!(item.gross >= threshold);
                prop_assert_eq!(item.gross, item.net + item.fixed_fee + item.proportional_fee);
            }
            // What is left vested is not payable yet: below the threshold or the fees.
            prop_assert!(settlement.plan_payouts(&policy).is_empty());
            for i in 0u8..30 {
                let lifecycle = PayoutLifecycle::of(settlement.ledger(), &node(i));
                prop_assert!(lifecycle.is_conserved(), "{:?}", lifecycle);
                prop_assert_eq!(lifecycle.paid, sink.paid(&node(i)));
                if let Some(balance) = settlement.balance(&node(i)) {
                    prop_assert_eq!(lifecycle.unvested, balance.unvested());
                }
            }
        }
    }
}
