//! Fuzzes the direct HTTP loop's request-head reader (`streamr_net::http::head::classify`): no
//! input makes it panic; a `GET` it would answer ends within the bytes read, reads the same from
//! exactly its own bytes, and its target is a path.
#![no_main]

use streamr_net::http::head::{classify, Head};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Head::Get { len, uri, close } = classify(data) {
        assert!(len <= data.len(), "a head of {len} bytes in {} read", data.len());
        assert!(uri.path().starts_with('/'), "target {uri}");
        assert_eq!(
            classify(&data[..len]),
            Head::Get { len, uri, close },
            "the head alone reads differently"
        );
    }
});
