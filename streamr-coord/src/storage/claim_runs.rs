//! Counting a signed heartbeat's claim once: the rule that turns a node's running claim
//! totals ([`streamr_core::ClaimTotals`]) into the bytes to add to its epoch activity, given
//! what has been counted of its run so far. Pure, so the backends apply the same rule inside
//! the transaction that claims the heartbeat's nonce.

/// A node's claim totals in one run, as a heartbeat carries them or as stored after the
/// last counted one (`node_claim_runs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimRun {
    /// The run: the nonce of its first heartbeat (larger for a later run).
    pub run: i64,
    /// Attested bytes claimed in the run.
    pub bytes_total: i64,
    /// Unattested bytes claimed in the run.
    pub unattested_total: i64,
}

/// What a heartbeat's claim totals add, and what is stored after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedClaim {
    /// Attested bytes to add to the node's epoch activity.
    pub bytes: i64,
    /// Unattested bytes to add.
    pub unattested: i64,
    /// The run's totals counted so far, to store (unchanged when nothing is counted).
    pub stored: ClaimRun,
}

/// Counts the part of `claimed` beyond what `stored` (the node's last counted run, if any)
/// has counted already:
/// - the run first seen (or a later run than the stored one, after a restart): all of it;
/// - the stored run: each total's growth, nothing where a total is not above the stored one
///   (a claim restated after a lost answer, or a heartbeat older than one counted);
/// - an earlier run than the stored one (a heartbeat of a process that has been replaced):
///   nothing, as its claims cannot be told apart from those counted before.
pub fn count_claim(stored: Option<ClaimRun>, claimed: ClaimRun) -> CountedClaim {
    let all = CountedClaim {
        bytes: claimed.bytes_total.max(0),
        unattested: claimed.unattested_total.max(0),
        stored: claimed,
    };
    let Some(stored) = stored else { return all };
    match claimed.run.cmp(&stored.run) {
        std::cmp::Ordering::Greater => all,
        std::cmp::Ordering::Less => CountedClaim {
            bytes: 0,
            unattested: 0,
            stored,
        },
        std::cmp::Ordering::Equal => CountedClaim {
            bytes: claimed
                .bytes_total
                .saturating_sub(stored.bytes_total)
                .max(0),
            unattested: claimed
                .unattested_total
                .saturating_sub(stored.unattested_total)
                .max(0),
            stored: ClaimRun {
                run: stored.run,
                bytes_total: stored.bytes_total.max(claimed.bytes_total),
                unattested_total: stored.unattested_total.max(claimed.unattested_total),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(run: i64, bytes_total: i64, unattested_total: i64) -> ClaimRun {
        ClaimRun {
            run,
            bytes_total,
            unattested_total,
        }
    }

    fn counted(stored: Option<ClaimRun>, claimed: ClaimRun) -> (i64, i64) {
        let counted = count_claim(stored, claimed);
        (counted.bytes, counted.unattested)
    }

    #[test]
    fn a_restated_claim_counts_nothing_and_a_new_one_its_growth() {
        // The first heartbeat of a run counts all it claims.
        assert_eq!(counted(None, run(10, 1_000, 50)), (1_000, 50));
        // Its claim put back and sent again with the next interval's: only the new part.
        assert_eq!(
            counted(Some(run(10, 1_000, 50)), run(10, 1_700, 50)),
            (700, 0)
        );
        // The same totals again (a lost answer, no new bytes): nothing.
        assert_eq!(
            counted(Some(run(10, 1_700, 50)), run(10, 1_700, 50)),
            (0, 0)
        );
        // An older heartbeat of the run arriving late: nothing, and the stored totals stay.
        let late = count_claim(Some(run(10, 1_700, 50)), run(10, 1_000, 40));
        assert_eq!((late.bytes, late.unattested), (0, 0));
        assert_eq!(late.stored, run(10, 1_700, 50));
    }

    #[test]
    fn a_later_run_counts_from_zero_and_an_earlier_one_counts_nothing() {
        assert_eq!(counted(Some(run(10, 9_000, 9)), run(20, 300, 4)), (300, 4));
        let stale = count_claim(Some(run(20, 300, 4)), run(10, 9_500, 9));
        assert_eq!((stale.bytes, stale.unattested), (0, 0));
        assert_eq!(stale.stored, run(20, 300, 4));
    }

    proptest! {
        /// However a run's heartbeats are repeated or reordered, the counted sum is the
        /// largest totals claimed, never more.
        #[test]
        fn a_run_counts_its_largest_totals_once_whatever_the_order(
            steps in proptest::collection::vec((0i64..1_000, 0i64..1_000), 1..20),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..40),
        ) {
            let mut totals = Vec::new();
            let (mut bytes, mut unattested) = (0i64, 0i64);
            for (b, u) in steps {
                bytes += b;
                unattested += u;
                totals.push(run(7, bytes, unattested));
            }
            let mut stored = None;
            let (mut sum_b, mut sum_u) = (0i64, 0i64);
            let (mut max_b, mut max_u) = (0i64, 0i64);
            for index in order {
                let claimed = *index.get(&totals);
                max_b = max_b.max(claimed.bytes_total);
                max_u = max_u.max(claimed.unattested_total);
                let counted = count_claim(stored, claimed);
                sum_b += counted.bytes;
                sum_u += counted.unattested;
                stored = Some(counted.stored);
            }
            prop_assert_eq!((sum_b, sum_u), (max_b, max_u));
        }
    }
}
