//! Fuzzes what the prober reads from a node's media playlist (`streamr_core::probe_judge`):
//! picking probe candidates and placing a segment never panic on any text, every candidate is a
//! listed URI, and every listed candidate has a place.
#![no_main]

use streamr_core::probe_judge::{place_in, probe_candidates};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let playlist = String::from_utf8_lossy(data);
    let candidates = probe_candidates(&playlist);
    for uri in &candidates {
        assert!(
            playlist.lines().any(|line| line.trim() == *uri),
            "candidate {uri:?} is not listed"
        );
        assert!(place_in(&playlist, uri).is_some(), "{uri:?} has no place");
    }
    let _ = place_in(&playlist, "");
});
