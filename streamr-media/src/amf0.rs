//! AMF0 encoding and decoding (Action Message Format version 0), used by RTMP commands and FLV
//! script data (`onMetaData`).
//!
//! Every AMF0 type is supported: number, boolean, string, object, null, undefined, reference,
//! ECMA array, strict array, date, long string, unsupported, XML document and typed object. The
//! object-end marker is structural and never appears as a value. Decoding refuses nesting deeper
//! than [`MAX_NESTING_DEPTH`] so hostile input cannot exhaust the stack.
//!
//! ```
//! use streamr_media::amf0::{self, Amf0Value};
//!
//! let values = vec![
//!     Amf0Value::String("connect".into()),
//!     Amf0Value::Number(1.0),
//!     Amf0Value::Object(vec![("app".into(), Amf0Value::String("live".into()))]),
//! ];
//! let bytes = amf0::encode_all(&values).unwrap();
//! assert_eq!(amf0::decode_all(&bytes).unwrap(), values);
//! ```

use bytes::{BufMut, BytesMut};

/// Deepest nesting of objects, arrays and typed objects the decoder accepts.
pub const MAX_NESTING_DEPTH: usize = 64;

/// AMF0 type markers.
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    #[cfg(test)]
    pub const MOVIE_CLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Amf0Value {
    /// IEEE-754 double (marker 0x00).
    Number(f64),
    /// Boolean (marker 0x01).
    Boolean(bool),
    /// UTF-8 string of at most 65535 bytes (marker 0x02).
    String(String),
    /// Anonymous object: ordered key/value properties (marker 0x03).
    Object(Vec<(String, Amf0Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06).
    Undefined,
    /// Reference to an earlier complex value by index (marker 0x07).
    Reference(u16),
    /// Associative array with a count hint (marker 0x08); `onMetaData` usually uses this.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Dense array (marker 0x0A).
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch plus a (reserved) time zone (marker 0x0B).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time zone offset in minutes; reserved, senders should write 0.
        time_zone: i16,
    },
    /// UTF-8 string longer than 65535 bytes (marker 0x0C).
    LongString(String),
    /// Unsupported marker (0x0D).
    Unsupported,
    /// XML document as a long UTF-8 string (marker 0x0F).
    XmlDocument(String),
    /// Object of a registered class (marker 0x10).
    TypedObject {
        /// The class name.
        class_name: String,
        /// Ordered key/value properties.
        properties: Vec<(String, Amf0Value)>,
    },
}

impl Amf0Value {
    /// The string content when this is a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The number when this is a `Number`.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean when this is a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties when this is an `Object`, `EcmaArray` or `TypedObject`.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The value of property `key` when this value has properties (first match wins).
    pub fn property(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Decodes one value from the front of `input`, advancing it past the value.
    pub fn decode(input: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
        let mut reader = Reader {
            data: input,
            pos: 0,
        };
        let value = reader.value(0)?;
        *input = reader.data.get(reader.pos..).unwrap_or_default();
        Ok(value)
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), Amf0Error> {
        encode_value(self, out, 0)
    }
}

/// Errors from decoding or encoding AMF0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// Input ended inside a value.
    #[error("AMF0 input ends at offset {offset} while reading {what}")]
    Truncated {
        /// Byte offset at which more input was needed.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A type marker this decoder does not know or that AMF0 reserves.
    #[error("unknown or reserved AMF0 type marker {marker:#04x} at offset {offset}")]
    UnknownMarker {
        /// The marker byte.
        marker: u8,
        /// Offset of the marker.
        offset: usize,
    },
    /// An object-end marker appeared where a value was expected.
    #[error("AMF0 object-end marker outside an object at offset {offset}")]
    UnexpectedObjectEnd {
        /// Offset of the marker.
        offset: usize,
    },
    /// Objects or arrays nested deeper than [`MAX_NESTING_DEPTH`].
    #[error("AMF0 nesting deeper than {max} levels at offset {offset}")]
    TooDeep {
        /// The limit.
        max: usize,
        /// Offset at which the limit was exceeded.
        offset: usize,
    },
    /// A string, key or class name too long for its 16-bit length field.
    #[error("AMF0 {what} of {len} bytes does not fit a 16-bit length")]
    StringTooLong {
        /// Which string (property key, class name...).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A long string or array too long for its 32-bit length field.
    #[error("AMF0 {what} of {len} elements does not fit a 32-bit length")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Decodes every value in `input` (an RTMP command body or FLV script tag body).
pub fn decode_all(mut input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let total = input.len();
    let mut values = Vec::new();
    while !input.is_empty() {
        let offset = total - input.len();
        let mut reader = Reader {
            data: input,
            pos: 0,
        };
        let value = reader.value(0).map_err(|e| e.shifted(offset))?;
        input = input.get(reader.pos..).unwrap_or_default();
        values.push(value);
    }
    Ok(values)
}

/// Encodes `values` one after another.
pub fn encode_all(values: &[Amf0Value]) -> Result<BytesMut, Amf0Error> {
    let mut out = BytesMut::new();
    for value in values {
        value.encode(&mut out)?;
    }
    Ok(out)
}

impl Amf0Error {
    fn shifted(self, by: usize) -> Self {
        match self {
            Amf0Error::Truncated { offset, what } => Amf0Error::Truncated {
                offset: offset.saturating_add(by),
                what,
            },
            Amf0Error::UnknownMarker { marker, offset } => Amf0Error::UnknownMarker {
                marker,
                offset: offset.saturating_add(by),
            },
            Amf0Error::UnexpectedObjectEnd { offset } => Amf0Error::UnexpectedObjectEnd {
                offset: offset.saturating_add(by),
            },
            Amf0Error::TooDeep { max, offset } => Amf0Error::TooDeep {
                max,
                offset: offset.saturating_add(by),
            },
            other => other,
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated {
            offset: self.pos,
            what,
        })?;
        let slice = self.data.get(self.pos..end).ok_or(Amf0Error::Truncated {
            offset: self.data.len(),
            what,
        })?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Amf0Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &'static str) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array(what)?))
    }

    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, Amf0Error> {
        let bytes = self.take(len, what)?;
        // Some encoders write Latin-1 metadata; keep it readable rather than failing the stream.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn short_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let len = self.u16(what)?;
        self.utf8(usize::from(len), what)
    }

    fn long_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| Amf0Error::Truncated {
            offset: self.pos,
            what,
        })?;
        self.utf8(len, what)
    }

    /// Reads key/value pairs until the empty key followed by the object-end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string("property key")?;
            if key.is_empty() && self.data.get(self.pos) == Some(&marker::OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        if depth > MAX_NESTING_DEPTH {
            return Err(Amf0Error::TooDeep {
                max: MAX_NESTING_DEPTH,
                offset: self.pos,
            });
        }
        let marker_offset = self.pos;
        let marker = self.u8("type marker")?;
        Ok(match marker {
            marker::NUMBER => Amf0Value::Number(self.f64("number")?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8("boolean")? != 0),
            marker::STRING => Amf0Value::String(self.short_string("string")?),
            marker::OBJECT => Amf0Value::Object(self.properties(depth)?),
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::REFERENCE => Amf0Value::Reference(self.u16("reference")?),
            marker::ECMA_ARRAY => {
                // The count is only a hint (often 0); the object-end marker terminates.
                let _count = self.u32("ECMA array count")?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            marker::OBJECT_END => {
                return Err(Amf0Error::UnexpectedObjectEnd {
                    offset: marker_offset,
                })
            }
            marker::STRICT_ARRAY => {
                let count = self.u32("strict array count")?;
                // Never trust the count for allocation: each element takes at least one byte.
                let remaining = self.data.len().saturating_sub(self.pos);
                let mut items = Vec::with_capacity((count as usize).min(remaining));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64("date")?;
                let time_zone = i16::from_be_bytes(self.array("date time zone")?);
                Amf0Value::Date { millis, time_zone }
            }
            marker::LONG_STRING => Amf0Value::LongString(self.long_string("long string")?),
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string("XML document")?),
            marker::TYPED_OBJECT => {
                let class_name = self.short_string("class name")?;
                let properties = self.properties(depth)?;
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            // Movie clip and record set are reserved; AVM+ (AMF3) is not AMF0.
            _ => {
                return Err(Amf0Error::UnknownMarker {
                    marker,
                    offset: marker_offset,
                })
            }
        })
    }
}

fn put_short_string(out: &mut BytesMut, s: &str, what: &'static str) -> Result<(), Amf0Error> {
    let len =
        u16::try_from(s.len()).map_err(|_| Amf0Error::StringTooLong { what, len: s.len() })?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_long_string(out: &mut BytesMut, s: &str, what: &'static str) -> Result<(), Amf0Error> {
    let len = u32::try_from(s.len()).map_err(|_| Amf0Error::TooLong { what, len: s.len() })?;
    out.put_u32(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_properties(
    out: &mut BytesMut,
    props: &[(String, Amf0Value)],
    depth: usize,
) -> Result<(), Amf0Error> {
    for (key, value) in props {
        put_short_string(out, key, "property key")?;
        encode_value(value, out, depth + 1)?;
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
    Ok(())
}

fn encode_value(value: &Amf0Value, out: &mut BytesMut, depth: usize) -> Result<(), Amf0Error> {
    if depth > MAX_NESTING_DEPTH {
        return Err(Amf0Error::TooDeep {
            max: MAX_NESTING_DEPTH,
            offset: out.len(),
        });
    }
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() > usize::from(u16::MAX) {
                // Too long for a short string: the long-string form carries the same text.
                out.put_u8(marker::LONG_STRING);
                put_long_string(out, s, "long string")?;
            } else {
                out.put_u8(marker::STRING);
                put_short_string(out, s, "string")?;
            }
        }
        Amf0Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(out, props, depth)?;
        }
        Amf0Value::Null => out.put_u8(marker::NULL),
        Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
        Amf0Value::Reference(index) => {
            out.put_u8(marker::REFERENCE);
            out.put_u16(*index);
        }
        Amf0Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            let count = u32::try_from(props.len()).map_err(|_| Amf0Error::TooLong {
                what: "ECMA array",
                len: props.len(),
            })?;
            out.put_u32(count);
            put_properties(out, props, depth)?;
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(marker::STRICT_ARRAY);
            let count = u32::try_from(items.len()).map_err(|_| Amf0Error::TooLong {
                what: "strict array",
                len: items.len(),
            })?;
            out.put_u32(count);
            for item in items {
                encode_value(item, out, depth + 1)?;
            }
        }
        Amf0Value::Date { millis, time_zone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*time_zone);
        }
        Amf0Value::LongString(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_string(out, s, "long string")?;
        }
        Amf0Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_string(out, s, "XML document")?;
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_string(out, class_name, "class name")?;
            put_properties(out, properties, depth)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN never equals itself", |n| !n.is_nan())
                .prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,20}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            any::<u16>().prop_map(Amf0Value::Reference),
            (-1e13f64..1e13, any::<i16>())
                .prop_map(|(millis, time_zone)| Amf0Value::Date { millis, time_zone }),
            ".{0,20}".prop_map(Amf0Value::LongString),
            Just(Amf0Value::Unsupported),
            ".{0,20}".prop_map(Amf0Value::XmlDocument),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let props = prop::collection::vec(("[a-zA-Z0-9_]{1,10}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.clone().prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
                ("[a-zA-Z.]{1,12}", props).prop_map(|(class_name, properties)| {
                    Amf0Value::TypedObject {
                        class_name,
                        properties,
                    }
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_values_round_trip(values in prop::collection::vec(arb_value(), 0..5)) {
            let bytes = encode_all(&values).unwrap();
            prop_assert_eq!(decode_all(&bytes).unwrap(), values);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(value in arb_value()) {
            let bytes = encode_all(std::slice::from_ref(&value)).unwrap();
            for cut in 0..bytes.len() {
                let mut input = &bytes[..cut];
                prop_assert!(Amf0Value::decode(&mut input).is_err());
            }
        }
    }

    #[test]
    fn decodes_known_connect_command_bytes() {
        // "connect", 1.0, {app: "live"}
        let mut bytes = vec![0x02, 0x00, 0x07];
        bytes.extend_from_slice(b"connect");
        bytes.push(0x00);
        bytes.extend_from_slice(&1.0f64.to_be_bytes());
        bytes.extend_from_slice(&[0x03, 0x00, 0x03]);
        bytes.extend_from_slice(b"app");
        bytes.extend_from_slice(&[0x02, 0x00, 0x04]);
        bytes.extend_from_slice(b"live");
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_number(), Some(1.0));
        assert_eq!(
            values[2].property("app").and_then(Amf0Value::as_str),
            Some("live")
        );
    }

    #[test]
    fn hostile_nesting_is_refused_with_its_depth() {
        let bytes = [marker::STRICT_ARRAY, 0, 0, 0, 1].repeat(10_000);
        match decode_all(&bytes) {
            Err(Amf0Error::TooDeep { max, .. }) => assert_eq!(max, MAX_NESTING_DEPTH),
            other => panic!("expected TooDeep, got {other:?}"),
        }
    }

    #[test]
    fn huge_array_count_does_not_allocate_or_panic() {
        let bytes = [marker::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            decode_all(&bytes),
            Err(Amf0Error::Truncated { .. })
        ));
    }

    #[test]
    fn reserved_markers_name_marker_and_offset() {
        let bytes = [marker::NULL, marker::MOVIE_CLIP];
        assert_eq!(
            decode_all(&bytes),
            Err(Amf0Error::UnknownMarker {
                marker: 0x04,
                offset: 1
            })
        );
    }

    #[test]
    fn long_text_in_a_string_is_written_as_long_string() {
        let text = "x".repeat(70_000);
        let bytes = encode_all(&[Amf0Value::String(text.clone())]).unwrap();
        assert_eq!(bytes[0], marker::LONG_STRING);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Amf0Value::LongString(text)]
        );
    }
}
