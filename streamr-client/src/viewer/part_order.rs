//! The order LL-HLS parts are played in: a part the coordinator confirms as the origin's must sit
//! after the last confirmed one at the origin. Node numbering differs between nodes (each counts
//! the segments it lists), so places are compared in the origin's numbering: its run (chosen anew
//! when its media sequence starts over), the segment's media sequence number and the part's index.
//! A node replaying an older part the origin did report, or serving parts out of order, is
//! caught here before the bytes reach the output.

/// A part's place at the origin: run, media sequence number of its segment, index in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginPlace {
    /// The origin's numbering run.
    pub(crate) run: String,
    /// Media sequence number of the part's segment.
    pub(crate) msn: i64,
    /// Index of the part in its segment.
    pub(crate) index: i64,
}

/// The last origin place played, and the rule that the next one comes after it.
#[derive(Debug, Default)]
pub(crate) struct PartOrder {
    last: Option<OriginPlace>,
}

impl PartOrder {
    /// The run of the last place accepted.
    pub(crate) fn run(&self) -> Option<&str> {
        self.last.as_ref().map(|last| last.run.as_str())
    }

    /// Accepts `place` when it comes after the last accepted place of the same run (or starts a
    /// new run: the origin restarted its numbering) and remembers it; `Err` with the last place
    /// when it does not, and nothing is remembered.
    pub(crate) fn admit(&mut self, place: OriginPlace) -> Result<(), OriginPlace> {
        match &self.last {
            Some(last)
                if last.run == place.run && (place.msn, place.index) <= (last.msn, last.index) =>
            {
                Err(last.clone())
            }
            _ => {
                self.last = Some(place);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn place(run: &str, msn: i64, index: i64) -> OriginPlace {
        OriginPlace {
            run: run.into(),
            msn,
            index,
        }
    }

    #[test]
    fn parts_move_forward_within_a_run_and_a_new_run_starts_over() {
        let mut order = PartOrder::default();
        assert!(order.admit(place("a", 7, 2)).is_ok(), "anything starts");
        assert!(order.admit(place("a", 7, 3)).is_ok(), "the next part");
        assert!(
            order.admit(place("a", 9, 0)).is_ok(),
            "a gap is not a replay"
        );
        assert_eq!(
            order.admit(place("a", 9, 0)),
            Err(place("a", 9, 0)),
            "the same part again"
        );
        assert_eq!(
            order.admit(place("a", 8, 5)),
            Err(place("a", 9, 0)),
            "an older part"
        );
        assert!(
            order.admit(place("b", 1, 0)).is_ok(),
            "the origin's numbering started over"
        );
        assert!(
            order.admit(place("b", 0, 4)).is_err(),
            "and is ordered from there"
        );
    }

    proptest! {
        /// Whatever a node serves, the places let through are strictly increasing per run.
        #[test]
        fn only_strictly_later_places_pass(places in prop::collection::vec((0i64..6, 0i64..4), 0..40)) {
            let mut order = PartOrder::default();
            let mut passed: Vec<(i64, i64)> = Vec::new();
            for (msn, index) in places {
                if order.admit(place("r", msn, index)).is_ok() {
                    passed.push((msn, index));
                }
            }
            prop_assert!(passed.windows(2).all(|w| w[0] < w[1]), "{passed:?}");
        }
    }
}
