//! Wall-clock stamps carried inside H.264 video frames, so hop latency can be measured through
//! any server: timestamps may be rebased on the way (SRS starts each player at 0), the frame's
//! own bytes are not.
//!
//! The publisher puts an SEI NAL unit (user data unregistered, with [`STAMP_UUID`]) in front of
//! each coded frame's NAL units, holding the send time in microseconds since the Unix epoch as
//! 16 ASCII hex digits (no zero bytes, so no emulation prevention is needed). Players look for
//! it among the first bytes of each video tag.

use bytes::{BufMut, Bytes, BytesMut};

/// The SEI payload's UUID (no zero bytes).
pub const STAMP_UUID: [u8; 16] = *b"streamr-latency!";
/// Bytes the stamp adds to a frame: 4-byte NAL length, NAL header, SEI type and size, UUID,
/// 16 hex digits, RBSP trailing bits.
pub const STAMP_LEN: usize = 4 + 1 + 2 + 16 + 16 + 1;
/// Bytes of a video tag body a player must see to read the stamp: FLV AVC header (5) + stamp.
pub const STAMP_PREFIX: usize = 5 + STAMP_LEN;

/// `payload` (an FLV AVC video tag body) with a stamp of `unix_micros` in front of its NAL
/// units; other payloads (sequence headers, other codecs) unchanged.
pub fn stamp_video(payload: &Bytes, unix_micros: u64) -> Bytes {
    // Codec 7 (AVC), AVCPacketType 1 (NAL units).
    if payload.len() < 5 || payload[0] & 0x0f != 7 || payload[1] != 1 {
        return payload.clone();
    }
    let mut out = BytesMut::with_capacity(payload.len() + STAMP_LEN);
    out.put_slice(&payload[..5]);
    out.put_u32((STAMP_LEN - 4) as u32);
    out.put_u8(0x06); // SEI
    out.put_u8(5); // user data unregistered
    out.put_u8(32); // UUID + 16 digits
    out.put_slice(&STAMP_UUID);
    out.put_slice(format!("{unix_micros:016x}").as_bytes());
    out.put_u8(0x80);
    out.put_slice(&payload[5..]);
    out.freeze()
}

/// The stamp in a video tag body's first bytes, in microseconds since the Unix epoch.
pub fn read_stamp(prefix: &[u8]) -> Option<u64> {
    let nal = prefix.get(5 + 4..STAMP_PREFIX)?;
    if nal.get(..3)? != [0x06, 5, 32] || nal.get(3..19)? != STAMP_UUID {
        return None;
    }
    let digits = std::str::from_utf8(nal.get(19..35)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_frame_keeps_its_nal_units_and_gives_the_stamp_back() {
        let frame = Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a]);
        let stamped = stamp_video(&frame, 1_733_400_000_123_456);
        assert_eq!(stamped.len(), frame.len() + STAMP_LEN);
        assert_eq!(&stamped[STAMP_PREFIX..], &frame[5..]);
        assert_eq!(read_stamp(&stamped), Some(1_733_400_000_123_456));
        // No zero byte in the NAL unit: nothing a decoder could take for a start code.
        assert!(!stamped[9..STAMP_PREFIX].contains(&0));
        // Sequence headers and unstamped frames are left alone.
        let header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64]);
        assert_eq!(stamp_video(&header, 1), header);
        assert_eq!(read_stamp(&frame), None);
    }
}

/// Turns the stamps of a player's video frames into hop-latency samples. A server with a GOP
/// cache starts a player with frames of the current GOP from the past, so samples count from
/// the second keyframe on, when the player is live.
#[derive(Debug, Default)]
pub struct LatencyProbe {
    keyframes: u32,
}

impl LatencyProbe {
    /// Looks at the first bytes of a video tag body; returns the latency in milliseconds of a
    /// stamped frame received now, once the player is live.
    pub fn video(&mut self, prefix: &[u8]) -> Option<f64> {
        // A keyframe carrying NAL units (not a sequence header).
        if prefix.first().is_some_and(|b| b >> 4 == 1) && prefix.get(1) == Some(&1) {
            self.keyframes = self.keyframes.saturating_add(1);
        }
        let stamp = read_stamp(prefix)?;
        (self.keyframes >= 2).then(|| crate::unix_ms() - stamp as f64 / 1000.0)
    }
}
