//! Fuzzes the AMF0 decoder with arbitrary bytes: decoding never panics, and whatever decodes
//! encodes, decodes back, and encodes again to the same bytes (values are compared through their
//! encoding so NaN numbers compare equal).
#![no_main]

use streamr_media::amf0::{decode_all, encode_all};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(values) = decode_all(data) else {
        return;
    };
    let encoded = encode_all(&values).expect("decoded values encode");
    let back = decode_all(&encoded).expect("encoded values decode");
    assert_eq!(back.len(), values.len());
    let again = encode_all(&back).expect("decoded values encode again");
    assert_eq!(
        again, encoded,
        "a decode/encode round trip changed the bytes"
    );
});
