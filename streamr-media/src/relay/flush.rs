//! When a batching publisher wakes its viewers: a sans-IO schedule (instants are passed in).
//!
//! A stream's viewers are split into [`FLUSH_GROUPS`] wake-up groups (by viewer id). Without
//! staggering, every group is woken at once, when the batch's oldest frame waited the delay
//! (`since + delay`). With staggering ([`BatchPolicy::stagger`](super::BatchPolicy::stagger)),
//! each group is woken on a grid of its own: every `delay`, at a phase of
//! `delay × (group mod n) / n`, where `n` is the groups in use (one per
//! [`STAGGER_SPACING`] of delay, at most [`FLUSH_GROUPS`], and at most one per
//! [`VIEWERS_PER_GROUP`] viewers once the stream's viewers are counted). So:
//!
//! - each viewer is still woken (and written to) once per `delay` at most, whatever the frame
//!   pattern (a grid point, not the next frame, starts the next batch);
//! - a frame waits at most `delay` before its viewers are woken (the next grid point of each
//!   group is within `delay`), and `delay / 2` on average;
//! - the node's work (and on loopback the players' reads) is spread over the interval instead of
//!   a burst of every viewer at once, so the last viewer of a burst does not wait for the
//!   others' writes: with 2000 viewers of a 200 ms batch, 250 at a time every 25 ms.
//!
//! A batch holding only audio (of a stream with video) waits for a video frame, up to the cap
//! (`max_delay`), as without staggering.

use std::time::{Duration, Instant};

/// Wake-up groups a stream's viewers are split into.
pub(crate) const FLUSH_GROUPS: usize = 8;

/// Delay per staggered group: a delay of 200 ms uses 8 groups woken 25 ms apart (about one
/// video frame apart at 30 fps), 100 ms 4, under 50 ms one (no staggering: the batches are about
/// a frame long anyway, and the publisher would wake more often than frames arrive).
pub(crate) const STAGGER_SPACING: Duration = Duration::from_millis(25);

/// Viewers per staggered group: a stream staggers over one group per this many viewers (up
/// to [`FLUSH_GROUPS`]). Each group's wake-up costs the node a few thread wake-ups of its own
/// (the runtime's workers park between groups), so a group should carry enough viewers to
/// outweigh them: 500 viewers use two groups, 2000 eight.
pub(crate) const VIEWERS_PER_GROUP: usize = 250;

/// The staggered groups a stream of `viewers` viewers uses at most.
pub(crate) fn groups_for_viewers(viewers: usize) -> usize {
    (viewers / VIEWERS_PER_GROUP).clamp(1, FLUSH_GROUPS)
}

/// Frames held for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// None.
    Nothing,
    /// Some, the oldest received at `since`; `closing` once one of them may end the batch (a
    /// video frame or metadata, or any frame of a stream without video).
    Since { since: Instant, closing: bool },
}

/// The held frames of each group and when each group is due.
#[derive(Debug, Clone)]
pub(crate) struct FlushSchedule {
    /// Origin of the staggered grid.
    epoch: Instant,
    stagger: bool,
    /// Most groups in use ([`groups_for_viewers`]).
    max_groups: usize,
    held: [Held; FLUSH_GROUPS],
}

/// A set of groups, one bit each.
pub(crate) type GroupMask = u32;

/// Every group.
pub(crate) const ALL_GROUPS: GroupMask = (1 << FLUSH_GROUPS) - 1;

impl FlushSchedule {
    /// A schedule with nothing held; a staggered one's grid starts at `epoch`.
    pub(crate) fn new(epoch: Instant, stagger: bool) -> Self {
        FlushSchedule {
            epoch,
            stagger,
            max_groups: FLUSH_GROUPS,
            held: [Held::Nothing; FLUSH_GROUPS],
        }
    }

    /// Uses at most `groups` staggered groups from now on (at least one, at most
    /// [`FLUSH_GROUPS`]; all of them until told otherwise).
    pub(crate) fn set_max_groups(&mut self, groups: usize) {
        self.max_groups = groups.clamp(1, FLUSH_GROUPS);
    }

    /// Whether any group holds frames.
    pub(crate) fn is_holding(&self) -> bool {
        self.held.iter().any(|held| *held != Held::Nothing)
    }

    /// A message was appended at `now`; `closing` when it may end a batch.
    pub(crate) fn hold(&mut self, now: Instant, closing: bool) {
        for held in &mut self.held {
            *held = match *held {
                Held::Nothing => Held::Since {
                    since: now,
                    closing,
                },
                Held::Since {
                    since,
                    closing: was_closing,
                } => Held::Since {
                    since,
                    closing: was_closing || closing,
                },
            };
        }
    }

    /// Groups in use with `delay`: one per [`STAGGER_SPACING`], at least one, at most
    /// [`FLUSH_GROUPS`] and the most set ([`FlushSchedule::set_max_groups`]); one without
    /// staggering.
    pub(crate) fn groups_in_use(&self, delay: Duration) -> usize {
        if !self.stagger {
            return 1;
        }
        let groups = delay.as_nanos() / STAGGER_SPACING.as_nanos();
        usize::try_from(groups)
            .unwrap_or(FLUSH_GROUPS)
            .clamp(1, self.max_groups)
    }

    /// When `group`'s held frames are due, if it holds any (`delay` capped by `max_delay`).
    pub(crate) fn due_at(
        &self,
        group: usize,
        delay: Duration,
        max_delay: Duration,
    ) -> Option<Instant> {
        let Held::Since { since, closing } = *self.held.get(group)? else {
            return None;
        };
        let delay = delay.min(max_delay);
        let cap = since + max_delay;
        if !closing {
            return Some(cap);
        }
        if !self.stagger {
            return Some(since + delay);
        }
        Some(self.grid_point(group, since, delay).min(cap))
    }

    /// The first point after `since` of `group`'s grid for `delay` (a frame arriving on a grid
    /// point waits for the next one, so a group is never woken twice at one point).
    fn grid_point(&self, group: usize, since: Instant, delay: Duration) -> Instant {
        let period = delay.as_nanos();
        if period == 0 {
            return since;
        }
        let groups = self.groups_in_use(delay) as u128;
        let phase = period * (group as u128 % groups) / groups;
        let elapsed = since.saturating_duration_since(self.epoch).as_nanos();
        let offset = if elapsed < phase {
            phase
        } else {
            let periods = (elapsed - phase) / period + 1;
            phase.saturating_add(periods.saturating_mul(period))
        };
        let offset = Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX));
        self.epoch.checked_add(offset).unwrap_or(since + delay)
    }

    /// The earliest instant a group is due, if any holds frames.
    pub(crate) fn deadline(&self, delay: Duration, max_delay: Duration) -> Option<Instant> {
        (0..FLUSH_GROUPS)
            .filter_map(|group| self.due_at(group, delay, max_delay))
            .min()
    }

    /// The groups due at `now`, which then hold nothing.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        delay: Duration,
        max_delay: Duration,
    ) -> GroupMask {
        let mut due = 0;
        for group in 0..FLUSH_GROUPS {
            if self
                .due_at(group, delay, max_delay)
                .is_some_and(|at| at <= now)
            {
                due |= 1 << group;
                self.held[group] = Held::Nothing;
            }
        }
        due
    }

    /// The groups holding frames, which then hold nothing.
    pub(crate) fn take_all(&mut self) -> GroupMask {
        let mut holding = 0;
        for (group, held) in self.held.iter_mut().enumerate() {
            if *held != Held::Nothing {
                holding |= 1 << group;
                *held = Held::Nothing;
            }
        }
        holding
    }
}

/// The wake-up group of the viewer with `id`.
pub(crate) fn group_of(id: u64) -> usize {
    (id % FLUSH_GROUPS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs a publisher of video every 33 ms and audio every 23 ms for `millis` on a simulated
    /// clock (1 ms steps), waking the due groups at each message and at each deadline as the
    /// node does, and returns each group's wake-up instants (ms since the start) and, for every
    /// video frame, how long until its group 0 was woken.
    fn simulate(stagger: bool, delay: Duration, millis: u64) -> (Vec<Vec<u64>>, Vec<u64>) {
        let t0 = Instant::now();
        let at = |ms_: u64| t0 + ms(ms_);
        let mut schedule = FlushSchedule::new(t0, stagger);
        let mut wakes = vec![Vec::new(); FLUSH_GROUPS];
        let mut waiting_video: Vec<u64> = Vec::new();
        let mut waits = Vec::new();
        let max_delay = ms(200);
        for now in 0..millis {
            let (video, audio) = (now % 33 == 0, now % 23 == 0);
            if video || audio {
                schedule.hold(at(now), video);
            }
            if video {
                waiting_video.push(now);
            }
            // The node wakes at the deadline; messages at the same instant come first.
            let due = schedule.take_due(at(now), delay, max_delay);
            for (group, wakes) in wakes.iter_mut().enumerate() {
                if due & (1 << group) != 0 {
                    wakes.push(now);
                    if group == 0 {
                        waits.extend(waiting_video.drain(..).map(|sent| now - sent));
                    }
                }
            }
            if let Some(deadline) = schedule.deadline(delay, max_delay) {
                assert!(deadline >= at(now), "a deadline passed unnoticed");
            }
        }
        (wakes, waits)
    }

    #[test]
    fn without_staggering_every_group_wakes_together_when_the_oldest_frame_waited() {
        let (wakes, waits) = simulate(false, ms(200), 2000);
        assert!(wakes.iter().all(|w| *w == wakes[0]));
        // The first frame at 0: due at 200; the next batch starts with the next message.
        assert_eq!(wakes[0][0], 200);
        assert!(waits.iter().all(|w| *w <= 200), "{waits:?}");
    }

    #[test]
    fn staggered_groups_wake_once_per_delay_at_their_own_phase() {
        let (wakes, waits) = simulate(true, ms(200), 4000);
        for (group, times) in wakes.iter().enumerate() {
            // Phase 25 ms × group, then every 200 ms (group 0's first point, 0, is the first
            // frame's own instant: it waits for the next).
            let first = u64::from(group == 0);
            let expected: Vec<u64> = (first..20).map(|k| group as u64 * 25 + k * 200).collect();
            assert_eq!(*times, expected, "group {group}");
        }
        // A video frame waits at most the delay, less than it on average.
        assert!(waits.iter().all(|w| *w <= 200), "{waits:?}");
        let mean = waits.iter().sum::<u64>() as f64 / waits.len() as f64;
        assert!(mean < 120.0, "mean wait {mean}");
    }

    #[test]
    fn the_groups_in_use_follow_the_delay() {
        let schedule = FlushSchedule::new(Instant::now(), true);
        let groups: Vec<_> = [0, 10, 49, 50, 100, 125, 199, 200, 350]
            .iter()
            .map(|d| schedule.groups_in_use(ms(*d)))
            .collect();
        assert_eq!(groups, [1, 1, 1, 2, 4, 5, 7, 8, 8]);
        assert_eq!(
            FlushSchedule::new(Instant::now(), false).groups_in_use(ms(200)),
            1
        );
        // A stream with few viewers uses fewer groups.
        let mut few = FlushSchedule::new(Instant::now(), true);
        few.set_max_groups(groups_for_viewers(500));
        assert_eq!(few.groups_in_use(ms(200)), 2);
        let counts: Vec<_> = [0, 249, 250, 999, 1000, 2000, 100_000]
            .iter()
            .map(|v| groups_for_viewers(*v))
            .collect();
        assert_eq!(counts, [1, 1, 1, 3, 4, 8, 8]);
        // Five groups of 125 ms: groups 0 and 5 share a phase.
        let t0 = Instant::now();
        let mut schedule = FlushSchedule::new(t0, true);
        schedule.hold(t0 + ms(1), true);
        let due: Vec<_> = (0..FLUSH_GROUPS)
            .map(|g| schedule.due_at(g, ms(125), ms(200)).unwrap() - t0)
            .collect();
        assert_eq!(
            due,
            [
                ms(125),
                ms(25),
                ms(50),
                ms(75),
                ms(100),
                ms(125),
                ms(25),
                ms(50)
            ]
        );
    }

    #[test]
    fn a_zero_delay_wakes_at_each_closing_frame_and_audio_waits_for_video_up_to_the_cap() {
        for stagger in [false, true] {
            let t0 = Instant::now();
            let mut schedule = FlushSchedule::new(t0, stagger);
            schedule.hold(t0 + ms(10), false);
            assert_eq!(
                schedule.deadline(Duration::ZERO, ms(150)),
                Some(t0 + ms(160))
            );
            assert_eq!(schedule.take_due(t0 + ms(100), Duration::ZERO, ms(150)), 0);
            schedule.hold(t0 + ms(33), true);
            assert_eq!(
                schedule.deadline(Duration::ZERO, ms(150)),
                Some(t0 + ms(10))
            );
            assert_eq!(
                schedule.take_due(t0 + ms(33), Duration::ZERO, ms(150)),
                ALL_GROUPS
            );
            assert!(!schedule.is_holding());
            assert_eq!(schedule.deadline(Duration::ZERO, ms(150)), None);
        }
    }

    #[test]
    fn audio_alone_waits_for_the_cap_when_staggered() {
        let t0 = Instant::now();
        let mut schedule = FlushSchedule::new(t0, true);
        schedule.hold(t0 + ms(5), false);
        assert_eq!(schedule.deadline(ms(200), ms(200)), Some(t0 + ms(205)));
        assert_eq!(schedule.take_due(t0 + ms(204), ms(200), ms(200)), 0);
        assert_eq!(
            schedule.take_due(t0 + ms(205), ms(200), ms(200)),
            ALL_GROUPS
        );
    }

    #[test]
    fn a_delay_above_the_cap_is_capped_and_take_all_empties_every_group() {
        let t0 = Instant::now();
        let mut schedule = FlushSchedule::new(t0, false);
        schedule.hold(t0, true);
        assert_eq!(schedule.deadline(ms(500), ms(200)), Some(t0 + ms(200)));
        assert_eq!(schedule.take_all(), ALL_GROUPS);
        assert_eq!(schedule.take_all(), 0);
        assert_eq!(group_of(9), 1);
    }

    proptest::proptest! {
        /// Whatever the messages and the delay, a closing frame's group is due within the
        /// delay (capped) of it, and a group woken at a grid point is not due again before
        /// the next one (at most one wake-up per delay per group while the delay holds).
        #[test]
        fn a_frame_waits_at_most_the_delay_and_groups_wake_at_most_once_per_delay(
            gaps in proptest::collection::vec(0u64..120, 1..60),
            delay_ms in 0u64..400,
            stagger: bool,
        ) {
            let t0 = Instant::now();
            let (delay, cap) = (ms(delay_ms), ms(200));
            let bound = delay.min(cap);
            let mut schedule = FlushSchedule::new(t0, stagger);
            let mut now = t0;
            let mut last_wake: [Option<Instant>; FLUSH_GROUPS] = [None; FLUSH_GROUPS];
            for gap in gaps {
                let next = now + ms(gap);
                // Wake every group due before the next message, at its deadline.
                while let Some(deadline) = schedule.deadline(delay, cap).filter(|d| *d <= next) {
                    let due = schedule.take_due(deadline, delay, cap);
                    proptest::prop_assert!(due != 0);
                    for (group, last) in last_wake.iter_mut().enumerate() {
                        if due & (1 << group) != 0 {
                            if let (Some(last), true) = (*last, stagger) {
                                proptest::prop_assert!(deadline - last >= bound,
                                    "group {} woken {:?} apart", group, deadline - last);
                            }
                            *last = Some(deadline);
                        }
                    }
                }
                now = next;
                schedule.hold(now, true);
                for group in 0..FLUSH_GROUPS {
                    let due = schedule.due_at(group, delay, cap).unwrap();
                    proptest::prop_assert!(due >= now && due - now <= bound);
                }
            }
        }
    }
}
