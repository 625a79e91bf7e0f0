//! Transport stream packets: PES packetization with adaptation fields, PCR and stuffing.

/// Size of every MPEG-TS packet.
pub const TS_PACKET_LEN: usize = 188;
/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;
const TS_HEADER_LEN: usize = 4;
const MAX_PAYLOAD: usize = TS_PACKET_LEN - TS_HEADER_LEN;

/// The 90 kHz clock wraps at 2^33.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Writes a 5-byte PES timestamp field with the given 4-bit prefix.
pub(crate) fn put_timestamp(out: &mut [u8; 5], prefix: u8, ts: u64) {
    let ts = ts & TIMESTAMP_MASK;
    *out = [
        (prefix << 4) | (((ts >> 29) as u8) & 0x0E) | 1,
        (ts >> 22) as u8,
        (((ts >> 14) as u8) & 0xFE) | 1,
        (ts >> 7) as u8,
        (((ts << 1) as u8) & 0xFE) | 1,
    ];
}

/// A PES header: start code, stream id, length and PTS (and DTS when it differs).
pub(crate) struct PesHeader {
    bytes: [u8; 19],
    len: usize,
}

impl PesHeader {
    /// `payload_len` is the elementary stream bytes after this header, or `None` for an unbounded
    /// video PES (PES_packet_length 0). Returns `None` when a bounded length does not fit 16 bits.
    pub(crate) fn new(
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        payload_len: Option<usize>,
    ) -> Option<Self> {
        let dts = dts.filter(|d| (d & TIMESTAMP_MASK) != (pts & TIMESTAMP_MASK));
        let header_data_len: usize = if dts.is_some() { 10 } else { 5 };
        let packet_len = match payload_len {
            Some(len) => u16::try_from(len.checked_add(3 + header_data_len)?).ok()?,
            None => 0,
        };
        let mut bytes = [0u8; 19];
        let [l0, l1] = packet_len.to_be_bytes();
        bytes[..9].copy_from_slice(&[
            0,
            0,
            1,
            stream_id,
            l0,
            l1,
            0x80, // marker bits '10', not scrambled
            if dts.is_some() { 0xC0 } else { 0x80 },
            header_data_len as u8,
        ]);
        let mut field = [0u8; 5];
        match dts {
            Some(dts) => {
                put_timestamp(&mut field, 0x3, pts);
                bytes[9..14].copy_from_slice(&field);
                put_timestamp(&mut field, 0x1, dts);
                bytes[14..19].copy_from_slice(&field);
            }
            None => {
                put_timestamp(&mut field, 0x2, pts);
                bytes[9..14].copy_from_slice(&field);
            }
        }
        Some(PesHeader {
            bytes,
            len: 9 + header_data_len,
        })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What the first packet of a PES carries in its adaptation field.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FirstPacketFlags {
    /// Program clock reference base (90 kHz); written with extension 0.
    pub(crate) pcr: Option<u64>,
    /// random_access_indicator: a decoder can start here (keyframe).
    pub(crate) random_access: bool,
}

/// Splits one PES (given as consecutive byte slices) into 188-byte packets on `pid`, appending
/// them to `out` and advancing the continuity counter. The last packet is padded with
/// adaptation-field stuffing. No allocation beyond growing `out`.
pub(crate) fn write_pes_packets(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    flags: FirstPacketFlags,
    parts: &[&[u8]],
) {
    write_pes_packets_spread(out, pid, cc, flags, parts, 0);
}

/// Like [`write_pes_packets`], but spreads the PES over at least `min_packets` packets (each
/// carrying at least one payload byte, the rest stuffed), so a caller can advance the continuity
/// counter to a chosen value. Returns false, writing nothing, when the PES has fewer bytes than
/// `min_packets`.
pub(crate) fn write_pes_packets_spread(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    flags: FirstPacketFlags,
    parts: &[&[u8]],
    min_packets: usize,
) -> bool {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < min_packets {
        return false;
    }
    let mut emitted = 0usize;
    out.reserve((total / MAX_PAYLOAD + 2 + min_packets) * TS_PACKET_LEN);
    let mut part_index = 0usize;
    let mut part_pos = 0usize;
    let mut remaining = total;
    let mut first = true;
    while first || remaining > 0 {
        // Adaptation field: length byte + flags byte + optional PCR, then stuffing.
        let mut af_flags = 0u8;
        let mut af_body = 0usize;
        if first && (flags.pcr.is_some() || flags.random_access) {
            af_body = 1;
            if flags.random_access {
                af_flags |= 0x40;
            }
            if flags.pcr.is_some() {
                af_flags |= 0x10;
                af_body += 6;
            }
        }
        let mut af_len = if af_body > 0 { 1 + af_body } else { 0 };
        let mut stuffing = 0usize;
        let space = MAX_PAYLOAD - af_len;
        // Leave one byte for each packet still owed to `min_packets`.
        let owed_after = min_packets.saturating_sub(emitted + 1);
        let take = remaining
            .saturating_sub(owed_after)
            .max(1)
            .min(remaining)
            .min(space);
        if take < space {
            let gap = space - take;
            if af_len == 0 {
                // A lone length byte of 0 pads one byte; more needs the flags byte too.
                af_len = gap;
                stuffing = gap.saturating_sub(2);
                if gap >= 2 {
                    af_body = 1;
                }
            } else {
                af_len += gap;
                stuffing = gap;
            }
        }
        let payload_len = MAX_PAYLOAD - af_len;
        let pusi = if first { 0x40 } else { 0 };
        let afc = if af_len > 0 { 0x30 } else { 0x10 };
        out.extend_from_slice(&[
            SYNC_BYTE,
            pusi | ((pid >> 8) as u8 & 0x1F),
            pid as u8,
            afc | (*cc & 0x0F),
        ]);
        *cc = (*cc + 1) & 0x0F;
        if af_len > 0 {
            out.push((af_len - 1) as u8);
            if af_body > 0 {
                out.push(af_flags);
                if let (true, Some(base)) = (first, flags.pcr) {
                    let base = base & TIMESTAMP_MASK;
                    out.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        (((base & 1) as u8) << 7) | 0x7E,
                        0,
                    ]);
                }
            }
            out.resize(out.len() + stuffing, 0xFF);
        }
        // Copy payload_len bytes from the parts.
        let mut need = payload_len;
        while need > 0 {
            let Some(part) = parts.get(part_index) else {
                break;
            };
            let rest = part.get(part_pos..).unwrap_or_default();
            let n = rest.len().min(need);
            out.extend_from_slice(rest.get(..n).unwrap_or_default());
            need -= n;
            part_pos += n;
            if part_pos >= part.len() {
                part_index += 1;
                part_pos = 0;
            }
        }
        remaining = remaining.saturating_sub(payload_len);
        first = false;
        emitted += 1;
    }
    true
}

/// The PID of a packet.
fn packet_pid(packet: &[u8]) -> Option<u16> {
    let high = u16::from(*packet.get(1)? & 0x1F);
    Some((high << 8) | u16::from(*packet.get(2)?))
}

/// The payload of a packet (after its header and adaptation field), if it has one.
fn packet_payload(packet: &[u8]) -> Option<&[u8]> {
    let control = (packet.get(3)? >> 4) & 0x3;
    let start = match control {
        0b01 => 4,
        0b11 => 5 + usize::from(*packet.get(4)?),
        _ => return None,
    };
    packet.get(start..)
}

/// The PCR and random-access flag of a packet's adaptation field.
fn packet_flags(packet: &[u8]) -> FirstPacketFlags {
    let mut flags = FirstPacketFlags::default();
    let has_field = packet.get(3).is_some_and(|b| b & 0x20 != 0);
    if !has_field || packet.get(4).is_none_or(|len| *len == 0) {
        return flags;
    }
    let Some(&field_flags) = packet.get(5) else {
        return flags;
    };
    flags.random_access = field_flags & 0x40 != 0;
    if field_flags & 0x10 != 0 {
        if let Some(pcr) = packet.get(6..11) {
            let base = pcr
                .iter()
                .take(4)
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            flags.pcr = Some((base << 1) | u64::from(pcr.get(4).copied().unwrap_or(0) >> 7));
        }
    }
    flags
}

/// Where one PID's packets are in a buffer: how many, and the byte range of its last PES.
#[derive(Debug, Clone, Copy)]
struct PidSpan {
    pid: u16,
    packets: usize,
    last_pes_start: usize,
    last_pes_end: usize,
}

/// Spreads the last PES of every PID found in `buffer[from..]` (whole packets) over more packets
/// so that each PID has a multiple of 16 packets there: a stretch whose counters start at 0 then
/// ends at 15, and the next stretch, starting at 0 again, continues it without a continuity
/// error. PIDs carrying no PES start (tables) are left alone. A PES too short to spread, or one
/// whose packets are not contiguous, is left alone too.
pub(crate) fn pad_continuity_to_16(buffer: &mut Vec<u8>, from: usize) {
    let mut spans: Vec<PidSpan> = Vec::with_capacity(2);
    let mut offset = from;
    while let Some(packet) = buffer.get(offset..offset + TS_PACKET_LEN) {
        let Some(pid) = packet_pid(packet) else {
            break;
        };
        let starts_pes = packet.get(1).is_some_and(|b| b & 0x40 != 0)
            && packet_payload(packet).is_some_and(|p| p.starts_with(&[0, 0, 1]));
        let end = offset + TS_PACKET_LEN;
        match spans.iter_mut().find(|s| s.pid == pid) {
            Some(span) => {
                span.packets += 1;
                if starts_pes {
                    span.last_pes_start = offset;
                }
                span.last_pes_end = end;
            }
            None if starts_pes => spans.push(PidSpan {
                pid,
                packets: 1,
                last_pes_start: offset,
                last_pes_end: end,
            }),
            None => {}
        }
        offset = end;
    }
    // Later spans first, so the offsets of earlier ones stay valid.
    spans.sort_by_key(|s| std::cmp::Reverse(s.last_pes_start));
    for span in spans {
        let extra = (16 - span.packets % 16) % 16;
        if extra == 0 {
            continue;
        }
        let Some(range) = buffer.get(span.last_pes_start..span.last_pes_end) else {
            continue;
        };
        let mut pes = Vec::with_capacity(range.len());
        let mut contiguous = true;
        for packet in range.chunks(TS_PACKET_LEN) {
            match (packet_pid(packet), packet_payload(packet)) {
                (Some(pid), Some(payload)) if pid == span.pid => pes.extend_from_slice(payload),
                _ => contiguous = false,
            }
        }
        let first = range.get(..TS_PACKET_LEN).unwrap_or_default();
        let mut cc = first.get(3).map_or(0, |b| b & 0x0F);
        let flags = packet_flags(first);
        let packets = range.len() / TS_PACKET_LEN + extra;
        let mut spread = Vec::with_capacity(packets * TS_PACKET_LEN);
        if contiguous
            && write_pes_packets_spread(&mut spread, span.pid, &mut cc, flags, &[&pes], packets)
            && spread.len() == packets * TS_PACKET_LEN
        {
            buffer.splice(span.last_pes_start..span.last_pes_end, spread);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(buffer: &[u8], pid: u16) -> Vec<u8> {
        buffer
            .chunks(TS_PACKET_LEN)
            .filter(|p| packet_pid(p) == Some(pid))
            .map(|p| p[3] & 0x0F)
            .collect()
    }

    fn payload_of(buffer: &[u8], pid: u16) -> Vec<u8> {
        buffer
            .chunks(TS_PACKET_LEN)
            .filter(|p| packet_pid(p) == Some(pid))
            .flat_map(|p| packet_payload(p).unwrap_or_default().to_vec())
            .collect()
    }

    fn pes_starts(buffer: &[u8], pid: u16) -> Vec<(Option<u64>, bool)> {
        buffer
            .chunks(TS_PACKET_LEN)
            .filter(|p| packet_pid(p) == Some(pid) && p[1] & 0x40 != 0)
            .map(|p| {
                let flags = packet_flags(p);
                (flags.pcr, flags.random_access)
            })
            .collect()
    }

    proptest::proptest! {
        /// Any interleaving of PES of any size on two PIDs: after padding, every PID's counters
        /// run 0, 1, ... 15 and end at 15, and the payload bytes and first-packet flags are
        /// unchanged.
        #[test]
        fn padding_keeps_payloads_and_flags_and_ends_counters_at_15(
            pes in proptest::collection::vec((proptest::bool::ANY, 20usize..3_000, proptest::option::of(0u64..(1 << 33))), 1..40),
        ) {
            let mut buffer = Vec::new();
            let mut continuity = [0u8; 2];
            for (index, (audio, len, pcr)) in pes.iter().enumerate() {
                let pid = if *audio { 0x101 } else { 0x100 };
                let body: Vec<u8> = (0..*len).map(|i| (i + index) as u8).collect();
                let flags = FirstPacketFlags { pcr: *pcr, random_access: index % 3 == 0 };
                write_pes_packets(&mut buffer, pid, &mut continuity[usize::from(*audio)], flags, &[&[0, 0, 1, 0xE0], &body]);
            }
            let before: Vec<_> = [0x100, 0x101].iter().map(|pid| (payload_of(&buffer, *pid), pes_starts(&buffer, *pid))).collect();
            pad_continuity_to_16(&mut buffer, 0);
            proptest::prop_assert_eq!(buffer.len() % TS_PACKET_LEN, 0);
            for (pid, (payload, starts)) in [0x100u16, 0x101].iter().zip(before) {
                let ccs = counters(&buffer, *pid);
                if ccs.is_empty() {
                    continue;
                }
                proptest::prop_assert_eq!(ccs.len() % 16, 0);
                proptest::prop_assert!(ccs.iter().enumerate().all(|(i, cc)| usize::from(*cc) == i % 16));
                proptest::prop_assert_eq!(payload_of(&buffer, *pid), payload);
                proptest::prop_assert_eq!(pes_starts(&buffer, *pid), starts);
            }
        }
    }

    #[test]
    fn padding_ends_every_pes_pid_at_counter_15_and_keeps_the_payload() {
        let mut buffer = Vec::new();
        let mut video_cc = 0;
        let mut audio_cc = 0;
        let video = vec![0xAB; 1_000];
        let audio = vec![0xCD; 300];
        for index in 0..3u64 {
            let flags = FirstPacketFlags {
                pcr: Some(90_000 + index),
                random_access: index == 0,
            };
            write_pes_packets(
                &mut buffer,
                0x100,
                &mut video_cc,
                flags,
                &[&[0, 0, 1, 0xE0], &video],
            );
            write_pes_packets(
                &mut buffer,
                0x101,
                &mut audio_cc,
                FirstPacketFlags::default(),
                &[&[0, 0, 1, 0xC0], &audio],
            );
        }
        let payload = |buffer: &[u8], pid| -> Vec<u8> {
            buffer
                .chunks(TS_PACKET_LEN)
                .filter(|p| packet_pid(p) == Some(pid))
                .flat_map(|p| packet_payload(p).unwrap().to_vec())
                .collect()
        };
        let before_video = payload(&buffer, 0x100);
        let before_audio = payload(&buffer, 0x101);
        let last_video_flags = buffer
            .chunks(TS_PACKET_LEN)
            .filter(|p| packet_pid(p) == Some(0x100) && p[1] & 0x40 != 0)
            .map(|p| packet_flags(p).pcr)
            .next_back()
            .unwrap();
        pad_continuity_to_16(&mut buffer, 0);
        assert_eq!(buffer.len() % TS_PACKET_LEN, 0);
        for pid in [0x100, 0x101] {
            let ccs = counters(&buffer, pid);
            assert_eq!(ccs.len() % 16, 0, "pid {pid:#x}: {ccs:?}");
            assert_eq!(*ccs.last().unwrap(), 15);
            assert!(ccs
                .iter()
                .enumerate()
                .all(|(i, cc)| usize::from(*cc) == i % 16));
        }
        assert_eq!(payload(&buffer, 0x100), before_video);
        assert_eq!(payload(&buffer, 0x101), before_audio);
        let after_flags = buffer
            .chunks(TS_PACKET_LEN)
            .filter(|p| packet_pid(p) == Some(0x100) && p[1] & 0x40 != 0)
            .map(|p| packet_flags(p).pcr)
            .next_back()
            .unwrap();
        assert_eq!(after_flags, last_video_flags);
    }
}
