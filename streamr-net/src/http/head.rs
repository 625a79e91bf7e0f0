//! The sans-IO half of the direct loop ([`serve_direct`](super::serve_direct)): which request
//! heads it answers itself, and the response head hyper would have written for an answer.
//!
//! The loop answers only plain `GET`s over HTTP/1.1 without a body, upgrade or expectation;
//! every other head (and every head httparse cannot parse, or parses as longer than
//! [`MAX_DIRECT_HEAD`]) goes to hyper with the bytes read, so its answer is unchanged. The
//! response head follows hyper 1's server encoder: the status line, the headers in map order
//! (lower case, one line per value, a `connection` header's values on one line),
//! `connection: close` when the request asked to close, `content-length` (or
//! `transfer-encoding: chunked` for a body of unknown length) when the headers have none, and
//! `date` last.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode, Uri};

/// The longest request head the direct loop reads; a longer one goes to hyper (which answers
/// an oversize head as before).
pub const MAX_DIRECT_HEAD: usize = 8192;

/// Most headers a head the direct loop answers may have (more go to hyper).
const MAX_HEADERS: usize = 32;

/// What to do with the bytes read so far on a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head is not complete yet: read more (unless it is [`MAX_DIRECT_HEAD`] long already).
    Partial,
    /// A head the loop does not answer (or cannot parse): hyper serves the connection.
    Other,
    /// A `GET` the loop may answer: `len` head bytes, the request target, and whether the
    /// client asked to close the connection after the response.
    Get {
        /// Length of the head in bytes (the request ends there: it has no body).
        len: usize,
        /// The request target, parsed the way hyper parses it.
        uri: Uri,
        /// The request carried `Connection: close`.
        close: bool,
    },
}

/// Classifies the bytes at the start of `buf` (see [`Head`]).
pub fn classify(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_DIRECT_HEAD => return Head::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Head::Other,
    };
    if len > MAX_DIRECT_HEAD || request.method != Some("GET") || request.version != Some(1) {
        return Head::Other;
    }
    let Some(target) = request.path.filter(|path| path.starts_with('/')) else {
        return Head::Other;
    };
    let mut close = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            match connection_asks_close(header.value) {
                Some(asks) => close |= asks,
                None => return Head::Other,
            }
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Head::Other;
        }
    }
    match Uri::try_from(target) {
        Ok(uri) => Head::Get { len, uri, close },
        Err(_) => Head::Other,
    }
}

/// Whether a `Connection` value asks to close: `Some(true)` if a token is `close`,
/// `Some(false)` if every token is `keep-alive`, `None` for any other token (hyper decides).
fn connection_asks_close(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// How the body after a response head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// As it is (a length header was written, or the status has no body).
    Plain,
    /// In chunks (`transfer-encoding: chunked` was written).
    Chunked,
    /// Not at all: the status has no body.
    None,
}

/// The body's length as hyper sees it: `None` for an empty body at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The body is at its end before its first frame.
    Empty,
    /// The body says its exact length.
    Known(u64),
    /// The body does not know its length.
    Unknown,
}

/// Appends to `out` the HTTP/1.1 response head hyper writes for `status` and `headers` with a
/// body of `length`, answering a `GET` (`close`: the request asked to close). Returns how the
/// body is framed and whether the connection closes after the response.
pub fn encode_response_head(
    status: StatusCode,
    headers: &HeaderMap,
    length: BodyLength,
    close: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut is_last = close;
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut wrote_connection = false;
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        || status.is_informational();
    for name in headers.keys() {
        let mut values = headers.get_all(name).iter();
        match *name {
            header::CONTENT_LENGTH => {
                if length == BodyLength::Empty {
                    continue;
                }
                if let Some(value) = values.next() {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    wrote_len = true;
                }
            }
            header::CONNECTION => {
                out.extend_from_slice(b"connection: ");
                let mut asks_close = false;
                for (n, value) in values.enumerate() {
                    if n > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(value.as_bytes());
                    asks_close |= connection_asks_close(value.as_bytes()) == Some(true);
                }
                if close && !asks_close {
                    out.extend_from_slice(b", close");
                }
                is_last |= asks_close;
                wrote_connection = true;
                out.extend_from_slice(b"\r\n");
            }
            _ => {
                wrote_date |= *name == header::DATE;
                for value in values {
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if close && !wrote_connection {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let mut framing = Framing::Plain;
    if !wrote_len {
        match length {
            BodyLength::Unknown if !bodiless => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                framing = Framing::Chunked;
            }
            BodyLength::Unknown => {}
            BodyLength::Empty | BodyLength::Known(0) => {
                if !bodiless {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
            }
            BodyLength::Known(len) => {
                if !bodiless {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(len.to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if bodiless {
        framing = Framing::None;
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        with_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, is_last)
}

/// The size line of a chunk of `len` bytes (hyper's: upper-case hex).
pub fn chunk_size_line(len: usize) -> Vec<u8> {
    format!("{len:X}\r\n").into_bytes()
}

/// An IMF-fixdate is 29 bytes long.
const DATE_LEN: usize = 29;

thread_local! {
    /// The current second and its `date` value, formatted once a second per thread.
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Calls `f` with the current time as an HTTP `date` value.
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == DATE_LEN {
                cached.1.copy_from_slice(formatted.as_bytes());
                cached.0 = second;
            } else {
                return f(formatted.as_bytes());
            }
        }
        f(&cached.1)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn get(head: &str) -> Head {
        classify(head.as_bytes())
    }

    #[test]
    fn plain_gets_are_answered_and_everything_else_is_not() {
        let Head::Get { len, uri, close } =
            get("GET /live/a.m3u8?t=1 HTTP/1.1\r\nHost: x\r\n\r\nGET")
        else {
            panic!("a GET")
        };
        assert_eq!(
            (len, uri.path(), uri.query(), close),
            (42, "/live/a.m3u8", Some("t=1"), false)
        );
        assert!(matches!(
            get("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n"),
            Head::Get { close: true, .. }
        ));
        assert_eq!(get("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        for other in [
            "HEAD / HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
            "GET\r\n\r\n",
        ] {
            assert_eq!(get(other), Head::Other, "{other:?}");
        }
        let long = format!(
            "GET / HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_DIRECT_HEAD)
        );
        assert_eq!(get(&long), Head::Other);
        assert_eq!(get(&long[..MAX_DIRECT_HEAD]), Head::Other);
        let many: String = (0..=MAX_HEADERS).map(|n| format!("h{n}: v\r\n")).collect();
        assert_eq!(get(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Head::Other);
    }

    #[test]
    fn response_heads_follow_hypers_encoder() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
        headers.append(header::VARY, HeaderValue::from_static("a"));
        headers.append(header::VARY, HeaderValue::from_static("b"));
        let mut out = Vec::new();
        let framing = encode_response_head(
            StatusCode::OK,
            &headers,
            BodyLength::Known(5),
            true,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(framing, (Framing::Plain, true));
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\nvary: a\r\nvary: b\r\n\
                 connection: close\r\ncontent-length: 5\r\ndate: "
            ),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        let mut out = Vec::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let framing = encode_response_head(
            StatusCode::NOT_FOUND,
            &headers,
            BodyLength::Empty,
            false,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(framing, (Framing::Plain, false));
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-type"),
            "{text}"
        );
        assert!(
            text.contains("vary: b\r\ncontent-length: 0\r\ndate"),
            "{text}"
        );
        let mut out = Vec::new();
        let framing = encode_response_head(
            StatusCode::OK,
            &HeaderMap::new(),
            BodyLength::Unknown,
            false,
            &mut out,
        );
        assert_eq!(framing, (Framing::Chunked, false));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\ntransfer-encoding: chunked\r\n"));
        assert_eq!(chunk_size_line(255), b"FF\r\n");
    }

    proptest! {
        /// A head read in two pieces is classified as it is read whole: the first piece is
        /// partial (or, if it is not a head's prefix, not answered), never a different GET.
        #[test]
        fn classifying_is_stable_across_reads(
            target in "/[a-z0-9./?=&%-]{0,40}",
            connection in prop::sample::select(vec!["", "close", "keep-alive", "Keep-Alive, close", "te"]),
            extra in prop::collection::vec(("[a-zA-Z-]{1,12}", "[ -~]{0,20}"), 0..4),
            split in 0usize..200,
        ) {
            let mut head = format!("GET {target} HTTP/1.1\r\n");
            if !connection.is_empty() {
                head.push_str(&format!("Connection: {connection}\r\n"));
            }
            for (name, value) in &extra {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let whole = classify(head.as_bytes());
            if let Head::Get { len, .. } = &whole {
                prop_assert_eq!(*len, head.len());
            }
            let split = split.min(head.len());
            if split < head.len() {
                let first = classify(&head.as_bytes()[..split]);
                prop_assert!(first == Head::Partial || first == Head::Other, "{:?}", first);
                if whole != Head::Other {
                    prop_assert_eq!(first, Head::Partial);
                }
            }
            // Bytes after the head (a pipelined request) do not change the answer.
            let mut pipelined = head.clone().into_bytes();
            pipelined.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            prop_assert_eq!(classify(&pipelined), whole);
        }
    }
}
