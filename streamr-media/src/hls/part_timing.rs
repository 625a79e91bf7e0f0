//! The LL-HLS PART-TARGET a stream's frame timing allows, without I/O.
//!
//! Parts are cut on frame boundaries, so each part lasts a whole number of frame intervals.
//! RFC 8216bis 4.4.4.9 wants every part at most PART-TARGET, and every part other than a
//! segment's last and the independent ones at least 85 % of it: a window 15 % of the target
//! wide that the frames must land in. Regular frames land in it when whole frames fill 85 %
//! of the target ([`fit_to_frames`]); irregular ones (a variable frame rate, an encoder's
//! jitter) land in it for sure only when no frame interval is wider than the window
//! ([`window_holds`]): a part still under 85 % then ends at most one interval later, within
//! the target. [`FrameTiming`] measures the intervals of a node's first segment and picks the
//! target from them: from the interval that 95 % of them do not exceed rather than the widest,
//! and among few steps (the configured target, four times it, the longest allowed), so that nodes measuring different stretches
//! of the same stream (a relay measures the GOP it joined at) pick the same target; a rarer,
//! wider interval breaks the parts of its segment, which is then listed whole on every node
//! alike.

use super::ll_packager::{PART_JITTER_MS, PART_MIN_PERCENT};

/// The longest PART-TARGET chosen from a stream's timing, in milliseconds (the longest a node
/// may be configured with).
pub const MAX_PART_TARGET_MS: u32 = 2_000;

/// Fewer frame intervals than this measured tell nothing: the target stays the one derived
/// from the stream's declared frame rate.
const MIN_INTERVALS: u64 = 20;

/// Irregular frames get the configured target times this (or [`MAX_PART_TARGET_MS`] when
/// its window is still too narrow): few steps, so that nodes measuring different stretches of
/// a stream seldom land on different ones.
const VFR_FACTOR: u32 = 4;

/// The share of the measured intervals, in percent, that the chosen target's window holds.
const HELD_PERCENT: u64 = 95;

/// The widest interval any part target may hold, in milliseconds: 15 % of
/// [`MAX_PART_TARGET_MS`].
const WIDEST_HELD_MS: u64 = MAX_PART_TARGET_MS as u64 * (100 - PART_MIN_PERCENT) / 100;

/// The frame intervals of the track that times parts (video when there is video), measured in
/// whole milliseconds as the stream stamps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameTiming {
    /// How many intervals of each length (index: milliseconds) were measured.
    counts: Vec<u64>,
    count: u64,
}

impl Default for FrameTiming {
    fn default() -> Self {
        FrameTiming {
            counts: vec![0; WIDEST_HELD_MS as usize + 1],
            count: 0,
        }
    }
}

impl FrameTiming {
    /// Records one interval between consecutive frames. One wider than any part target may
    /// hold ([`MAX_PART_TARGET_MS`]) is a stall, not frame timing, and is left out.
    pub(crate) fn record(&mut self, interval_ms: u64) {
        let Some(slot) = usize::try_from(interval_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .and_then(|ms| self.counts.get_mut(ms))
        else {
            return;
        };
        *slot += 1;
        self.count += 1;
    }

    /// The narrowest interval measured, in milliseconds.
    fn shortest_ms(&self) -> u64 {
        self.counts.iter().position(|n| *n > 0).unwrap_or(0) as u64
    }

    /// The widest interval measured, in milliseconds.
    fn longest_ms(&self) -> u64 {
        self.counts.iter().rposition(|n| *n > 0).unwrap_or(0) as u64
    }

    /// The mean interval measured, rounded to whole milliseconds. Over a stretch of regular
    /// frames it is the stream's frame interval whichever stretch was measured: the
    /// millisecond rounding of the timestamps does not add up (`n` intervals sum to the span
    /// from the first frame to the last, `n` frame intervals give or take the rounding of its
    /// two ends: over [`MIN_INTERVALS`] intervals, ±1 ms of rounding moves the mean 0.1 ms at
    /// most), unlike the widest or narrowest interval, which depend on whether the stretch
    /// happened to hold the frames rounded furthest apart.
    fn mean_ms(&self) -> u64 {
        let sum: u64 = self
            .counts
            .iter()
            .enumerate()
            .map(|(ms, n)| (ms as u64).saturating_mul(*n))
            .sum();
        (sum + self.count / 2) / self.count.max(1)
    }

    /// The narrowest interval that [`HELD_PERCENT`] of those measured do not exceed.
    fn held_ms(&self) -> u64 {
        let wanted = (self.count * HELD_PERCENT).div_ceil(100);
        let mut seen = 0;
        for (ms, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return ms as u64;
            }
        }
        self.longest_ms()
    }

    /// The PART-TARGET for these intervals, in milliseconds, given the configured target and
    /// the one derived from the declared frame rate (`provisional`, used while measuring):
    ///
    /// - `provisional` when too few intervals were measured, when its 15 % window holds the
    ///   interval 95 % of those measured do not exceed, or when the frames are regular (the
    ///   widest and the narrowest within twice [`PART_JITTER_MS`], the rounding of millisecond
    ///   timestamps) and as many of their mean interval as fit it fill 85 % of it
    ///   ([`whole_frames_fill`]);
    /// - for other regular frames, the configured target fitted to their mean interval
    ///   ([`fit_to_frames`]);
    /// - for irregular frames, four times the configured target when its window holds that
    ///   interval, otherwise [`MAX_PART_TARGET_MS`].
    ///
    /// When every frame is a sync sample (an audio-only stream), every part is independent
    /// and the 85 % rule does not apply: `provisional` unless the widest interval does not fit
    /// it, then the configured target fitted to that interval.
    ///
    /// A function of the measured intervals alone: nodes that measure alike choose alike, and
    /// the few steps keep streams whose timing varies alike (a variable frame rate) on the same
    /// value.
    pub(crate) fn part_target_ms(&self, configured: u32, provisional: u32, all_sync: bool) -> u32 {
        let held = self.held_ms();
        if self.count < MIN_INTERVALS || window_holds(provisional, held) {
            return provisional;
        }
        if all_sync {
            let longest = self.longest_ms();
            return if longest.saturating_add(PART_JITTER_MS) <= u64::from(provisional) {
                provisional
            } else {
                fit_to_frames(configured, longest as f64)
            };
        }
        let (shortest, longest) = (self.shortest_ms(), self.longest_ms());
        if longest.saturating_sub(shortest) <= 2 * PART_JITTER_MS {
            // Regular frames: timed by their mean interval, the same in every stretch of the
            // stream, rather than by the widest one, which varies with the stretch (frames 49 ms
            // apart with ±1 ms of rounding measure 50 or 51 ms at the widest: 310 or 350 ms). A
            // part of `k` frames lasts `k` mean intervals give or take the rounding of its two
            // ends, which [`fit_to_frames`] allows for.
            let frame = self.mean_ms();
            if whole_frames_fill(provisional, frame, frame) {
                return provisional;
            }
            return fit_to_frames(configured.clamp(1, MAX_PART_TARGET_MS), frame as f64);
        }
        let configured = configured.clamp(1, MAX_PART_TARGET_MS);
        [configured.saturating_mul(VFR_FACTOR), MAX_PART_TARGET_MS]
            .into_iter()
            .map(|target| target.min(MAX_PART_TARGET_MS))
            .find(|target| window_holds(*target, held))
            .unwrap_or(MAX_PART_TARGET_MS)
    }
}

/// Whether a frame interval of `interval_ms` always fits the window between 85 % of
/// `target_ms` and `target_ms`: a part ending under 85 % of the target then ends at most one
/// interval later, still within it.
pub(crate) fn window_holds(target_ms: u32, interval_ms: u64) -> bool {
    interval_ms.saturating_mul(100) <= u64::from(target_ms) * (100 - PART_MIN_PERCENT)
}

/// Whether parts of as many frames as fit `target_ms` at intervals of at most `longest_ms`
/// fill 85 % of it at intervals of at least `shortest_ms`.
fn whole_frames_fill(target_ms: u32, shortest_ms: u64, longest_ms: u64) -> bool {
    let frames = u64::from(target_ms) / longest_ms.max(1);
    frames >= 1
        && frames.saturating_mul(shortest_ms).saturating_mul(100)
            >= u64::from(target_ms) * PART_MIN_PERCENT
}

/// The part target for frames every `frame_ms` and a configured target `configured`: with `k`
/// the whole frames that fit `configured` less twice [`PART_JITTER_MS`] (timestamps are rounded
/// to whole milliseconds), `configured` itself when `k` frames fill at least 85 % of it,
/// otherwise `k` frames plus that jitter allowance, and one frame plus it when not even one
/// fits (under ~3 fps at 350 ms).
pub(crate) fn fit_to_frames(configured: u32, frame_ms: f64) -> u32 {
    let configured = u64::from(configured.max(1));
    if !frame_ms.is_finite() || frame_ms < 1.0 {
        return u32::try_from(configured).unwrap_or(u32::MAX);
    }
    let slack = 2 * PART_JITTER_MS;
    let frames = (configured.saturating_sub(slack) as f64 / frame_ms).floor();
    let filled = frames * frame_ms;
    let target = if frames < 1.0 {
        frame_ms.ceil() as u64 + slack
    } else if (filled - PART_JITTER_MS as f64) * 100.0 >= (configured * PART_MIN_PERCENT) as f64 {
        configured
    } else {
        filled.ceil() as u64 + slack
    };
    u32::try_from(target).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(intervals: impl IntoIterator<Item = u64>) -> FrameTiming {
        let mut timing = FrameTiming::default();
        for interval in intervals {
            timing.record(interval);
        }
        timing
    }

    #[test]
    fn regular_frames_keep_the_target_derived_from_the_declared_rate() {
        // 30 fps as millisecond timestamps stamp it.
        let thirty = timing((0..90).map(|i| if i % 3 == 2 { 34 } else { 33 }));
        assert_eq!(thirty.part_target_ms(350, 350, false), 350);
        // 10 fps: three frames make a part; the declared rate gave the same.
        let ten = timing([100; 40]);
        assert_eq!(fit_to_frames(350, 100.0), 310);
        assert_eq!(ten.part_target_ms(350, 310, false), 310);
        // Declared 30 fps, timed at 10 fps: three frames still fill 350 ms.
        assert_eq!(ten.part_target_ms(350, 350, false), 350);
        // Timed at 7 fps, two frames (286 ms) do not: the timing wins.
        let seven = timing([143; 40]);
        assert_eq!(
            seven.part_target_ms(350, 350, false),
            fit_to_frames(350, 143.0)
        );
        assert_eq!(fit_to_frames(350, 143.0), 296);
        // Opus every 60 ms: five packets fill 350 ms; every 120 ms, independent parts of two.
        assert_eq!(timing([60; 40]).part_target_ms(350, 350, false), 350);
        assert_eq!(timing([120; 40]).part_target_ms(350, 350, true), 350);
        assert_eq!(timing([250; 40]).part_target_ms(350, 200, true), 260);
    }

    /// Frames 49 ms apart stamped with ±1 ms of rounding: a stretch whose widest interval is
    /// 51 ms and one whose widest is 50 ms (an origin's first segment and the first a node
    /// joining later measures) pick the same target, whether the rate was declared or not.
    #[test]
    fn stretches_of_regular_frames_with_rounding_pick_the_same_target() {
        let wide = timing((0..40).map(|i| match i % 8 {
            0 => 51,
            1 => 47,
            _ => 49,
        }));
        let narrow = timing((0..24).map(|i| match i % 6 {
            0 => 50,
            1 => 48,
            _ => 49,
        }));
        let declared = fit_to_frames(350, 49.0);
        assert_eq!(declared, 304);
        for provisional in [declared, 350] {
            assert_eq!(wide.part_target_ms(350, provisional, false), provisional);
            assert_eq!(narrow.part_target_ms(350, provisional, false), provisional);
        }
    }

    proptest::proptest! {
        /// Any two stretches of at least [`MIN_INTERVALS`] intervals of a regular stream whose
        /// timestamps are rounded to the millisecond pick the same target, with the frame rate
        /// declared or not.
        #[test]
        fn every_stretch_of_a_regular_stream_picks_the_same_target(
            interval in 8u64..400,
            jitter in proptest::collection::vec(0u64..=2, 60..240),
            first in proptest::prelude::any::<proptest::sample::Index>(),
            second in proptest::prelude::any::<proptest::sample::Index>(),
            declared in proptest::prelude::any::<bool>(),
        ) {
            let stamps: Vec<u64> = jitter
                .iter()
                .enumerate()
                .map(|(i, j)| (i as u64 * interval + j).saturating_sub(1))
                .collect();
            let starts = stamps.len() - MIN_INTERVALS as usize;
            let provisional = if declared { fit_to_frames(350, interval as f64) } else { 350 };
            let target = |start: usize| {
                timing(stamps[start..].windows(2).map(|w| w[1] - w[0]))
                    .part_target_ms(350, provisional, false)
            };
            proptest::prop_assert_eq!(target(first.index(starts)), target(second.index(starts)));
        }
    }

    #[test]
    fn too_few_intervals_keep_the_provisional_target() {
        assert_eq!(timing([120; 19]).part_target_ms(350, 350, false), 350);
    }

    #[test]
    fn a_variable_frame_rate_gets_four_times_the_target() {
        // Intervals from 10 to 120 ms: 15 % of 350 ms is 52 ms, of 1400 ms 210.
        let vfr = timing((0..120).map(|i| 10 + (i * 53) % 111));
        assert_eq!(vfr.part_target_ms(350, 350, false), 1_400);
        // Frames dropped at random from 30 fps: one interval in twenty may be wider.
        let dropped = timing((0..100).map(|i| match i % 20 {
            0 => 233,
            1..=4 => 100,
            5..=9 => 67,
            _ => 33,
        }));
        assert_eq!(dropped.part_target_ms(350, 350, false), 1_400);
        // Encoder jitter around 33 ms stays within 15 % of 350 ms.
        let jitter = timing((0..120).map(|i| 25 + (i * 7) % 20));
        assert_eq!(jitter.part_target_ms(350, 350, false), 350);
        // Stalls are not frame timing; the target never passes the longest allowed.
        let stalls = timing((0..40).map(|i| if i % 4 == 0 { 900 } else { 33 + i % 2 }));
        assert_eq!(stalls.part_target_ms(350, 350, false), 350);
        let slow = timing((0..40).map(|i| 200 + (i % 2) * 90));
        assert_eq!(slow.part_target_ms(350, 350, false), MAX_PART_TARGET_MS);
    }

    #[test]
    fn the_chosen_target_holds_nineteen_intervals_in_twenty() {
        for wide in 20..=300u64 {
            // One interval in ten is `wide`: the target's window holds it.
            let measured = timing((0..40).map(|i| if i % 10 == 0 { wide } else { 12 }));
            let target = measured.part_target_ms(350, 350, false);
            assert!(window_holds(target, wide), "{wide} ms in {target} ms");
            assert!(target <= MAX_PART_TARGET_MS);
            // One in forty is not worth a longer target.
            let rare = timing((0..40).map(|i| if i == 0 { wide } else { 12 }));
            assert_eq!(rare.part_target_ms(350, 350, false), 350);
        }
    }
}
