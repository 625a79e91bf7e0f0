//! Fuzzes the FLV→MPEG-TS muxer with arbitrary tag sequences (as `arbitrary_tags` reads
//! them: chunks split at 0xFE, each chunk's first byte picking the tag type): it never panics, a
//! refused tag appends nothing, and the output is whole 188-byte packets with the sync byte, on the
//! known PIDs, whose continuity counters step by one on every PID.
#![no_main]

use std::collections::HashMap;

use streamr_media::ts::{
    arbitrary_tags, mux_arbitrary_tags, FlvTsMuxer, AUDIO_PID, PAT_PID, PMT_PID, SYNC_BYTE,
    TS_PACKET_LEN, VIDEO_PID,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut muxer = FlvTsMuxer::new();
    let mut out = Vec::new();
    for (selector, tag) in arbitrary_tags(data) {
        let before = out.len();
        if muxer.write_tag(&tag, &mut out).is_err() {
            assert_eq!(out.len(), before, "a refused tag appended bytes");
        }
        if selector & 0x80 != 0 {
            muxer.write_tables(&mut out);
        }
    }
    assert_eq!(
        mux_arbitrary_tags(data),
        out.len(),
        "the muxer is not deterministic"
    );
    assert_eq!(out.len() % TS_PACKET_LEN, 0, "a partial packet");
    let mut counters: HashMap<u16, u8> = HashMap::new();
    for packet in out.chunks(TS_PACKET_LEN) {
        assert_eq!(packet[0], SYNC_BYTE, "a packet without the sync byte");
        let pid = u16::from_be_bytes([packet[1], packet[2]]) & 0x1FFF;
        assert!(
            [PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID].contains(&pid),
            "unknown PID {pid:#x}"
        );
        if packet[3] & 0x10 == 0 {
            continue; // no payload: the counter does not advance
        }
        let cc = packet[3] & 0x0F;
        if let Some(last) = counters.insert(pid, cc) {
            assert_eq!(
                cc,
                (last + 1) & 0x0F,
                "continuity counter jump on PID {pid:#x}"
            );
        }
    }
});
