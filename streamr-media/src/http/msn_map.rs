//! A relay's media sequence numbers made the origin's, without I/O.
//!
//! A relay cuts the origin's segments and parts byte for byte, but counts them from its own
//! join. Before it lists anything it learns the origin's number of one part it cut (by the
//! part's hash, from the origin's signed part reports: see [`super::OriginNumbering`]), and
//! from then on adds the difference to every number it gives, so the playlists of the origin
//! and every relay name a segment alike (`EXT-X-MEDIA-SEQUENCE`, `_HLS_msn`, part URIs).
//! While it learns, what the segmenter and the packager produce is held back in order; when
//! it cannot learn in time the held events are released under its own numbers (the caller
//! logs a warning). Numbers released never go back: an offset that would renumber the next
//! segment at or below one released already is refused.

use crate::hls::{LlEvent, SegmenterEvent};

/// Events of one kind, as the segmenter or the packager gave them.
#[derive(Debug)]
pub(crate) enum Batch {
    /// MPEG-TS segmenter events.
    Ts(Vec<SegmenterEvent>),
    /// LL-HLS packager events.
    Ll(Vec<LlEvent>),
    /// The segment with this number, still open, is listed with EXT-X-GAP in both renditions
    /// (a relay's frames stopped following its upstream's there).
    Gap(u64),
}

/// A part the relay cut and holds, whose origin place would tell the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldPart {
    /// The relay's own sequence number of its segment.
    pub(crate) sequence: u64,
    /// Its index in the segment.
    pub(crate) index: u32,
    /// BLAKE3 hash of its bytes.
    pub(crate) hash: blake3::Hash,
}

/// Why a learned place was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The origin's part sits at another index in its segment: not the same cut.
    OtherIndex,
    /// Numbers would go back (the origin's numbering started over while the relay's playlist
    /// went on).
    GoesBack,
    /// Nothing is being learned.
    NotLearning,
}

/// The relay's numbering against the origin's.
#[derive(Debug)]
pub(crate) struct MsnMap {
    /// Added to every own sequence number released.
    offset: i64,
    /// `Some` while learning: the events held back, oldest first.
    held: Option<Vec<Batch>>,
    /// The newest sequence number released.
    released: Option<u64>,
}

impl MsnMap {
    /// Numbers are the relay's own (an origin, or a relay with nothing to learn from).
    pub(crate) fn own() -> Self {
        MsnMap {
            offset: 0,
            held: None,
            released: None,
        }
    }

    /// Holds everything back until the origin's numbers are learned.
    pub(crate) fn learning() -> Self {
        MsnMap {
            held: Some(Vec::new()),
            ..MsnMap::own()
        }
    }

    /// Starts learning again (the upstream's timeline started over: the origin's numbers may
    /// have too); the current offset stays the fallback.
    pub(crate) fn relearn(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// True while events are held back.
    pub(crate) fn is_learning(&self) -> bool {
        self.held.is_some()
    }

    /// The offset in use (origin number minus own number).
    pub(crate) fn offset(&self) -> i64 {
        self.offset
    }

    /// Takes events just produced: held back while learning, else returned renumbered.
    pub(crate) fn push(&mut self, batch: Batch) -> Option<Batch> {
        let empty = match &batch {
            Batch::Ts(events) => events.is_empty(),
            Batch::Ll(events) => events.is_empty(),
            Batch::Gap(_) => false,
        };
        if empty {
            return None;
        }
        match &mut self.held {
            Some(held) => {
                held.push(batch);
                None
            }
            None => Some(self.renumber(batch)),
        }
    }

    /// The oldest part held (the first to ask the origin's place of).
    pub(crate) fn first_part(&self) -> Option<HeldPart> {
        self.held_parts().next()
    }

    /// The newest part held (asked when the oldest was not found).
    pub(crate) fn newest_part(&self) -> Option<HeldPart> {
        self.held_parts().last()
    }

    fn held_parts(&self) -> impl Iterator<Item = HeldPart> + '_ {
        self.held
            .iter()
            .flatten()
            .filter_map(|batch| match batch {
                Batch::Ll(events) => Some(events),
                Batch::Ts(_) | Batch::Gap(_) => None,
            })
            .flatten()
            .filter_map(|event| match event {
                LlEvent::PartReady(part) => Some(HeldPart {
                    sequence: part.sequence,
                    index: part.index,
                    hash: part.hash,
                }),
                _ => None,
            })
    }

    /// The origin numbers `part` (held) `msn` and indexes it `index`: the offset is set and the
    /// held events are returned renumbered. `Err` (nothing released, still learning) when the
    /// place does not fit.
    pub(crate) fn learned(
        &mut self,
        part: HeldPart,
        msn: u64,
        index: u32,
    ) -> Result<Vec<Batch>, Refused> {
        let Some(held) = &self.held else {
            return Err(Refused::NotLearning);
        };
        if index != part.index {
            return Err(Refused::OtherIndex);
        }
        let offset = i128::from(msn) - i128::from(part.sequence);
        let offset = i64::try_from(offset).map_err(|_| Refused::GoesBack)?;
        let first = held.iter().find_map(first_sequence);
        if let (Some(first), Some(released)) = (first, self.released) {
            if shift(first, offset) <= released {
                return Err(Refused::GoesBack);
            }
        }
        self.offset = offset;
        Ok(self.release())
    }

    /// Gives up learning: the held events are returned under the current offset (own numbers
    /// unless one was learned before).
    pub(crate) fn give_up(&mut self) -> Vec<Batch> {
        self.release()
    }

    fn release(&mut self) -> Vec<Batch> {
        let held = self.held.take().unwrap_or_default();
        held.into_iter().map(|batch| self.renumber(batch)).collect()
    }

    fn renumber(&mut self, batch: Batch) -> Batch {
        let offset = self.offset;
        let mut newest = self.released;
        let mut seen = |sequence: u64| {
            newest = Some(newest.map_or(sequence, |n| n.max(sequence)));
        };
        let batch = match batch {
            Batch::Ts(mut events) => {
                for event in &mut events {
                    if let SegmenterEvent::SegmentReady(segment) = event {
                        segment.sequence = shift(segment.sequence, offset);
                        seen(segment.sequence);
                    }
                }
                Batch::Ts(events)
            }
            Batch::Ll(mut events) => {
                for event in &mut events {
                    match event {
                        LlEvent::SegmentStarted { sequence, .. } => {
                            *sequence = shift(*sequence, offset);
                            seen(*sequence);
                        }
                        LlEvent::PartReady(part) => {
                            part.sequence = shift(part.sequence, offset);
                            seen(part.sequence);
                        }
                        LlEvent::SegmentReady(segment) => {
                            segment.sequence = shift(segment.sequence, offset);
                            seen(segment.sequence);
                        }
                        LlEvent::PartsWithdrawn { sequence } => {
                            *sequence = shift(*sequence, offset);
                            seen(*sequence);
                        }
                    }
                }
                Batch::Ll(events)
            }
            Batch::Gap(sequence) => {
                let sequence = shift(sequence, offset);
                seen(sequence);
                Batch::Gap(sequence)
            }
        };
        self.released = newest;
        batch
    }
}

/// `sequence` moved by `offset`, kept within `u64`.
fn shift(sequence: u64, offset: i64) -> u64 {
    if offset >= 0 {
        sequence.saturating_add(offset.unsigned_abs())
    } else {
        sequence.saturating_sub(offset.unsigned_abs())
    }
}

/// The first own sequence number `batch` gives.
fn first_sequence(batch: &Batch) -> Option<u64> {
    match batch {
        Batch::Ts(events) => events.iter().find_map(|event| match event {
            SegmenterEvent::SegmentReady(segment) => Some(segment.sequence),
            _ => None,
        }),
        Batch::Ll(events) => events.first().map(|event| match event {
            LlEvent::SegmentStarted { sequence, .. } => *sequence,
            LlEvent::PartReady(part) => part.sequence,
            LlEvent::SegmentReady(segment) => segment.sequence,
            LlEvent::PartsWithdrawn { sequence } => *sequence,
        }),
        Batch::Gap(sequence) => Some(*sequence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::{Part, Segment};
    use bytes::Bytes;

    fn part(sequence: u64, index: u32) -> LlEvent {
        let bytes = Bytes::from(format!("{sequence}.{index}"));
        LlEvent::PartReady(Part {
            sequence,
            index,
            duration_ms: 350,
            independent: index == 0,
            hash: blake3::hash(&bytes),
            bytes,
        })
    }

    fn segment(sequence: u64) -> SegmenterEvent {
        SegmenterEvent::SegmentReady(Segment {
            sequence,
            start_timestamp_ms: 0,
            duration_ms: 1_000,
            discontinuity: false,
            starts_with_keyframe: true,
            hash: blake3::hash(b""),
            bytes: Bytes::new(),
        })
    }

    fn sequences(batches: &[Batch]) -> Vec<u64> {
        batches
            .iter()
            .flat_map(|batch| match batch {
                Batch::Ts(events) => events
                    .iter()
                    .filter_map(|e| match e {
                        SegmenterEvent::SegmentReady(s) => Some(s.sequence),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                Batch::Ll(events) => events.iter().filter_map(first_of).collect(),
                Batch::Gap(sequence) => vec![*sequence],
            })
            .collect()
    }

    fn first_of(event: &LlEvent) -> Option<u64> {
        first_sequence(&Batch::Ll(vec![event.clone()]))
    }

    #[test]
    fn nothing_is_released_until_the_origin_number_is_learned_then_all_in_order() {
        let mut map = MsnMap::learning();
        assert!(map.push(Batch::Ll(vec![part(3, 0)])).is_none());
        assert!(map.push(Batch::Ll(vec![part(3, 1)])).is_none());
        assert!(map.push(Batch::Ts(vec![segment(3)])).is_none());
        assert!(
            map.push(Batch::Ll(vec![])).is_none(),
            "empty batches vanish"
        );
        let first = map.first_part().expect("a held part");
        assert_eq!((first.sequence, first.index), (3, 0));
        assert_eq!(map.newest_part().map(|p| p.index), Some(1));
        assert_eq!(
            map.learned(first, 41, 1).map(|b| b.len()),
            Err(Refused::OtherIndex),
            "another cut"
        );
        let released = map.learned(first, 41, 0).expect("fits");
        assert_eq!(sequences(&released), vec![41, 41, 41]);
        assert!(!map.is_learning());
        assert_eq!(map.offset(), 38);
        let next = map
            .push(Batch::Ll(vec![part(4, 0)]))
            .expect("released at once");
        assert_eq!(sequences(&[next]), vec![42]);
    }

    #[test]
    fn giving_up_releases_own_numbers_and_numbers_never_go_back() {
        let mut map = MsnMap::learning();
        map.push(Batch::Ll(vec![part(0, 0)]));
        assert_eq!(sequences(&map.give_up()), vec![0]);
        map.push(Batch::Ll(vec![part(1, 0)]));
        // Then learned after a restart of the upstream's timeline: the origin started over
        // below what was listed.
        map.relearn();
        map.push(Batch::Ll(vec![part(2, 0)]));
        let held = map.first_part().expect("held");
        assert_eq!(
            map.learned(held, 1, 0).map(|b| b.len()),
            Err(Refused::GoesBack)
        );
        assert!(map.is_learning());
        let later = map.learned(held, 9, 0).expect("forward is fine");
        assert_eq!(sequences(&later), vec![9]);
        assert_eq!(
            map.learned(held, 10, 0).map(|b| b.len()),
            Err(Refused::NotLearning)
        );
    }

    #[test]
    fn an_origin_keeps_its_own_numbers() {
        let mut map = MsnMap::own();
        let out = map.push(Batch::Ts(vec![segment(5)])).expect("released");
        assert_eq!(sequences(&[out]), vec![5]);
        assert_eq!(shift(5, -7), 0);
    }

    #[test]
    fn a_gap_is_held_in_order_and_takes_the_origins_number() {
        let mut map = MsnMap::learning();
        assert!(map.push(Batch::Ll(vec![part(3, 0)])).is_none());
        assert!(map.push(Batch::Gap(3)).is_none());
        assert!(map.push(Batch::Ts(vec![segment(3)])).is_none());
        let first = map.first_part().expect("a held part");
        let released = map.learned(first, 41, 0).expect("learned");
        assert!(matches!(released[1], Batch::Gap(41)));
        assert_eq!(sequences(&released), vec![41, 41, 41]);
        let next = map.push(Batch::Gap(4)).expect("released");
        assert_eq!(sequences(&[next]), vec![42]);
    }
}
