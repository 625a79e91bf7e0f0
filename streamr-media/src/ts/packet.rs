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
    let total: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve((total / MAX_PAYLOAD + 2) * TS_PACKET_LEN);
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
        if remaining < space {
            let gap = space - remaining;
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
        remaining -= payload_len;
        first = false;
    }
}
