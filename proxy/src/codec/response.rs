//! Writing a response head to a client in HTTP/1.1, with the framing the server chooses for the
//! body (RFC 9112 §6): the length the response declares or its body knows, else chunked (or,
//! for an HTTP/1.0 client, the end of the connection). Connection-level fields are the server's
//! to write; a `Date` is added when the response has none (RFC 9110 §6.6.1), as hyper does.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{StatusCode, Version};

use super::decode::parse_decimal;
use super::encode::header;

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body is sent (1xx, 204, 304, an answer to HEAD).
    None,
    /// `Content-Length: n` and exactly n bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the connection closes (an HTTP/1.0 client, unknown length).
    Close,
}

/// What the request the response answers says about it.
#[derive(Debug, Clone, Copy)]
pub struct Answering {
    /// The request was `HEAD`: fields as for GET, no body.
    pub head: bool,
    /// The request's HTTP version.
    pub version: Version,
    /// Whether the connection can stay open after this response (the client's wish and the
    /// server's state).
    pub keep_alive: bool,
}

/// The body as the server sees it before its first frame.
#[derive(Debug, Clone, Copy)]
pub struct BodyShape {
    /// The body has nothing to send.
    pub end_stream: bool,
    /// Its exact length, when known.
    pub exact: Option<u64>,
}

/// Appends the status line and fields of `parts` to `out`. Returns the framing to write the
/// body with and whether the connection stays open after it.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    answering: Answering,
    body: BodyShape,
) -> (ResponseFraming, bool) {
    let status = parts.status;
    let mut keep_alive = answering.keep_alive;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // One pass: the fields are written and the connection-level ones noted (comparing standard
    // names is cheap; three map lookups per answer were not).
    let mut declared = None;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == CONNECTION {
            if value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                keep_alive = false;
            }
        } else if name == CONTENT_LENGTH {
            // A length the response itself declares (a backend's, passed through) is kept; an
            // invalid one is dropped and the body decides.
            if declared.is_none() {
                declared = Some(parse_decimal(value.as_bytes()));
            }
        } else if name != TRANSFER_ENCODING {
            has_date |= name == DATE;
            header(out, name.as_str(), value.as_bytes());
        }
    }
    let declared = declared.flatten();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless || answering.head {
        ResponseFraming::None
    } else if let Some(n) = declared {
        ResponseFraming::Length(n)
    } else if body.end_stream {
        ResponseFraming::Length(0)
    } else if let Some(n) = body.exact {
        ResponseFraming::Length(n)
    } else if answering.version == Version::HTTP_11 {
        ResponseFraming::Chunked
    } else {
        keep_alive = false;
        ResponseFraming::Close
    };
    if !has_date {
        with_date(|date| header(out, "date", date));
    }
    let length = match framing {
        ResponseFraming::Length(n) => Some(n),
        // HEAD and 304 keep the length the GET would have had; 204 and 1xx never carry one.
        ResponseFraming::None if status == StatusCode::NOT_MODIFIED => declared,
        ResponseFraming::None if answering.head && !bodiless => declared,
        _ => None,
    };
    if let Some(n) = length {
        header(
            out,
            "content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        );
    }
    if framing == ResponseFraming::Chunked {
        header(out, "transfer-encoding", b"chunked");
    }
    if !keep_alive {
        header(out, "connection", b"close");
    } else if answering.version == Version::HTTP_10 {
        header(out, "connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

thread_local! {
    /// The `Date` value of the current second, formatted once per second per thread.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the IMF-fixdate of now (`Tue, 01 Dec 2026 18:31:40 GMT`).
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == cache.1.len() {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = secs;
            } else {
                f(text.as_bytes());
                return;
            }
        }
        f(&cache.1);
    });
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
