//! The HLS timing an origin chose for a stream, announced to the relays that pull it, without
//! I/O.
//!
//! A node fixes a stream's LL-HLS PART-TARGET and its MPEG-TS EXT-X-TARGETDURATION from the
//! first segment it sees (see [`LlPackager::part_target_ms`](super::LlPackager::part_target_ms)
//! and [`Segmenter::target_duration_secs`](super::Segmenter::target_duration_secs)). A relay
//! joins later and would measure another stretch of the stream, so the origin announces what
//! it chose in an AMF0 data message of the stream itself (`onStreamrHlsTiming`), which the hub
//! keeps beside `onMetaData` and sends every relay before its first frame; as a node notice
//! ([`Frame::is_node_notice`](crate::relay::Frame::is_node_notice)) it never reaches players.
//! A relay's packager and segmenter take the announced values instead of measuring, and the
//! relay's hub passes the message on to the relays pulling from it. Its integrity needs no signature of
//! its own: a relay that took a wrong value cuts parts that do not match the origin's signed
//! part reports, and is not paid for them.

use bytes::Bytes;

use crate::amf0::{decode_all, encode_all, Amf0Value};
use crate::relay::frame::data_message_name;

/// The AMF0 name of the data message.
pub const HLS_TIMING_MESSAGE: &str = "onStreamrHlsTiming";

/// The timing an origin chose for a stream's HLS renditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsTiming {
    /// The LL-HLS PART-TARGET in milliseconds; `None` when the origin serves no LL-HLS.
    pub part_target_ms: Option<u32>,
    /// The MPEG-TS EXT-X-TARGETDURATION in seconds.
    pub target_duration_secs: u32,
}

impl HlsTiming {
    /// The data message's payload: the name, then an object with `partTarget` (ms, left out
    /// without LL-HLS) and `targetDuration` (s).
    pub fn encode(&self) -> Bytes {
        let mut properties = Vec::with_capacity(2);
        if let Some(ms) = self.part_target_ms {
            properties.push(("partTarget".to_owned(), Amf0Value::Number(f64::from(ms))));
        }
        properties.push((
            "targetDuration".to_owned(),
            Amf0Value::Number(f64::from(self.target_duration_secs)),
        ));
        let values = [
            Amf0Value::String(HLS_TIMING_MESSAGE.to_owned()),
            Amf0Value::Object(properties),
        ];
        // Strings and numbers always encode.
        encode_all(&values).map(|b| b.freeze()).unwrap_or_default()
    }

    /// The timing a data message's payload (with or without a `@setDataFrame` prefix)
    /// announces; `None` for any other message or out-of-range values (a PART-TARGET outside
    /// 1 ms..=[`MAX_PART_TARGET_MS`](super::MAX_PART_TARGET_MS), a target duration outside
    /// 1..=3600 s).
    pub fn decode(payload: &[u8]) -> Option<HlsTiming> {
        if !is_timing_message(payload) {
            return None;
        }
        let values = decode_all(payload).ok()?;
        let mut values = values
            .iter()
            .skip_while(|value| value.as_str() == Some("@setDataFrame"));
        values.next()?;
        let object = values.next()?;
        let whole = |key: &str, max: u32| {
            object
                .property(key)
                .and_then(Amf0Value::as_number)
                .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(max))
                .map(|n| n as u32)
        };
        let part_target_ms = match object.property("partTarget") {
            Some(_) => Some(whole("partTarget", super::MAX_PART_TARGET_MS)?),
            None => None,
        };
        Some(HlsTiming {
            part_target_ms,
            target_duration_secs: whole("targetDuration", 3_600)?,
        })
    }
}

/// Whether a data message's payload is an `onStreamrHlsTiming` message (its first string,
/// after an optional `@setDataFrame`), read without decoding the rest.
pub fn is_timing_message(payload: &[u8]) -> bool {
    data_message_name(payload) == Some(HLS_TIMING_MESSAGE.as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_timing_in_range_survives_the_round_trip(
            part_target_ms in proptest::option::of(1..=super::super::MAX_PART_TARGET_MS),
            target_duration_secs in 1..=3_600u32,
        ) {
            let timing = HlsTiming { part_target_ms, target_duration_secs };
            prop_assert_eq!(HlsTiming::decode(&timing.encode()), Some(timing));
        }

        #[test]
        fn any_bytes_decode_without_a_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let decoded = HlsTiming::decode(&payload);
            prop_assert!(decoded.is_none() || is_timing_message(&payload));
        }
    }

    #[test]
    fn a_timing_survives_the_round_trip() {
        for timing in [
            HlsTiming {
                part_target_ms: Some(1_400),
                target_duration_secs: 4,
            },
            HlsTiming {
                part_target_ms: None,
                target_duration_secs: 2,
            },
        ] {
            let payload = timing.encode();
            assert!(is_timing_message(&payload));
            assert_eq!(HlsTiming::decode(&payload), Some(timing));
        }
    }

    #[test]
    fn other_messages_and_wrong_values_are_not_a_timing() {
        let encode = |values: &[Amf0Value]| encode_all(values).unwrap().freeze();
        let metadata = encode(&[
            Amf0Value::String("onMetaData".into()),
            Amf0Value::EcmaArray(vec![("framerate".into(), Amf0Value::Number(30.0))]),
        ]);
        assert!(!is_timing_message(&metadata));
        assert_eq!(HlsTiming::decode(&metadata), None);
        let with = |part: f64, target: f64| {
            encode(&[
                Amf0Value::String("@setDataFrame".into()),
                Amf0Value::String(HLS_TIMING_MESSAGE.into()),
                Amf0Value::Object(vec![
                    ("partTarget".into(), Amf0Value::Number(part)),
                    ("targetDuration".into(), Amf0Value::Number(target)),
                ]),
            ])
        };
        assert_eq!(
            HlsTiming::decode(&with(350.0, 6.0)),
            Some(HlsTiming {
                part_target_ms: Some(350),
                target_duration_secs: 6
            })
        );
        assert_eq!(HlsTiming::decode(&with(0.0, 6.0)), None);
        assert_eq!(HlsTiming::decode(&with(350.5, 6.0)), None);
        assert_eq!(HlsTiming::decode(&with(350.0, 0.0)), None);
        assert_eq!(HlsTiming::decode(&with(5_000.0, 6.0)), None);
        assert_eq!(HlsTiming::decode(b"\x02\x00"), None);
    }
}
