//! Fuzzes the coordinator's reading of a stored node session key (the `sealed_key` column a
//! replica opens for a session another replica wrote): no stored text makes it panic, and
//! any key sealed for a row opens back to itself (see `streamr_coord::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = streamr_coord::fuzzing::open_sealed_session_key(data);
});
