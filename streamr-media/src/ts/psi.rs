//! Program specific information: the PAT and PMT sections, each in one packet.

use crc::{Crc, CRC_32_MPEG_2};

use super::packet::{SYNC_BYTE, TS_PACKET_LEN};

const MPEG2_CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_MPEG_2);

/// The PID of the program association table.
pub const PAT_PID: u16 = 0x0000;
/// The PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// The program number of the single program.
pub const PROGRAM_NUMBER: u16 = 1;

/// An elementary stream listed in the PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PmtStream {
    pub(crate) stream_type: u8,
    pub(crate) pid: u16,
}

/// Appends a packet carrying one PSI section (table id, id field, body) to `out`.
fn write_section(out: &mut Vec<u8>, pid: u16, cc: u8, table_id: u8, id: u16, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[
        SYNC_BYTE,
        0x40 | ((pid >> 8) as u8 & 0x1F),
        pid as u8,
        0x10 | (cc & 0x0F),
        0, // pointer field
    ]);
    let section_start = out.len();
    // section_length counts from after itself to the end of the CRC.
    let section_len = (5 + body.len() + 4) as u16;
    let [id0, id1] = id.to_be_bytes();
    out.extend_from_slice(&[
        table_id,
        0xB0 | ((section_len >> 8) as u8 & 0x0F),
        section_len as u8,
        id0,
        id1,
        0xC1, // version 0, current_next 1
        0,    // section_number
        0,    // last_section_number
    ]);
    out.extend_from_slice(body);
    let crc = MPEG2_CRC.checksum(out.get(section_start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
    out.resize(start + TS_PACKET_LEN, 0xFF);
}

/// Appends the PAT packet (one program, PMT on [`PMT_PID`]).
pub(crate) fn write_pat(out: &mut Vec<u8>, cc: u8) {
    let [p0, p1] = PROGRAM_NUMBER.to_be_bytes();
    let body = [p0, p1, 0xE0 | ((PMT_PID >> 8) as u8 & 0x1F), PMT_PID as u8];
    write_section(out, PAT_PID, cc, 0x00, 1, &body);
}

/// Appends the PMT packet listing `streams`, with the PCR on `pcr_pid`.
pub(crate) fn write_pmt(out: &mut Vec<u8>, cc: u8, pcr_pid: u16, streams: &[PmtStream]) {
    let mut body = [0u8; 4 + 2 * 5];
    body[..4].copy_from_slice(&[
        0xE0 | ((pcr_pid >> 8) as u8 & 0x1F),
        pcr_pid as u8,
        0xF0, // program_info_length 0
        0,
    ]);
    let mut len = 4;
    for stream in streams.iter().take(2) {
        body[len..len + 5].copy_from_slice(&[
            stream.stream_type,
            0xE0 | ((stream.pid >> 8) as u8 & 0x1F),
            stream.pid as u8,
            0xF0, // ES_info_length 0
            0,
        ]);
        len += 5;
    }
    write_section(out, PMT_PID, cc, 0x02, PROGRAM_NUMBER, &body[..len]);
}
