//! Reading a client's HTTP/1.x request head out of the connection's read buffer: the request
//! line and fields (parsed by httparse, hyper's own parser), how the body is framed (RFC 9112
//! §6), whether the connection may carry another request, and `Expect`. Pure functions over a
//! `BytesMut`, so every edge case is tested without sockets.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, Uri, Version};

use crate::error::ProxyError;
use crate::upstream::h1::decode::{FieldSpans, FramingFields};

/// Largest request head (request line and fields) accepted: 431 above. Envoy's default is
/// 60 KiB and nginx's largest is 4 × 8 KiB; 64 KiB leaves room for long cookies and tokens while
/// bounding what one connection can make the sidecar hold before it has a request.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields in one request head: 431 above (hyper's and Envoy's default).
pub const MAX_REQUEST_HEADERS: usize = 100;

/// Room for the fields the sidecar adds before forwarding (`X-Forwarded-For`/`-Proto`,
/// `X-Request-Id`, claim headers), so adding them never regrows the map.
const ADDED_HEADERS: usize = 4;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` (or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and fields, as handed to the proxy.
    pub parts: http::request::Parts,
    /// How the body that follows is delimited.
    pub framing: BodyFraming,
    /// Whether the client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// Why a head cannot be read. Each answer closes the connection (the framing of whatever
/// follows is unknown).
pub type HeadError = ProxyError;

/// Parses one request head from the front of `buf`, consuming it. `Ok(None)`: not complete yet.
/// Empty lines before the request line are skipped (RFC 9112 §2.2).
///
/// Field values and the target are slices of the read buffer, not copies.
pub fn parse_request_head(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    // Uninitialised: zeroing 100 header slots per request would be a 3 KiB memset.
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_HEAD_BYTES => {
            return Err(too_large_bytes());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::RequestHeadTooLarge {
                limit: MAX_REQUEST_HEADERS,
                what: "header fields",
            });
        }
        Err(e) => {
            return Err(ProxyError::BadRequest(format!(
                "malformed request head: {e}"
            )));
        }
    };
    if len > MAX_REQUEST_HEAD_BYTES {
        return Err(too_large_bytes());
    }
    let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
        .map_err(|_| ProxyError::BadRequest("invalid method".into()))?;
    let version = if request.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where the target and each field sit, so they can be cut from the frozen head (the
    // parser's slices borrow the buffer that `split_to` needs).
    let base = buf.as_ptr() as usize;
    let path = request.path.unwrap_or_default();
    let target = (path.as_ptr() as usize - base, path.len());
    let Scan {
        framing,
        keep_alive,
        expect_continue,
    } = scan(version, request.headers)?;
    let spans = FieldSpans::new(base, request.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|e| ProxyError::BadRequest(format!("invalid request target: {e}")))?;
    let headers = spans
        .header_map(&head, ADDED_HEADERS)
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive,
        expect_continue,
    }))
}

fn too_large_bytes() -> ProxyError {
    ProxyError::RequestHeadTooLarge {
        limit: MAX_REQUEST_HEAD_BYTES,
        what: "bytes",
    }
}

/// What the framing fields of a request say.
struct Scan {
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
}

/// Reads `Content-Length`, `Transfer-Encoding`, `Connection` and `Expect` from the parsed
/// fields, before the header map is built (one pass, no map lookups).
///
/// RFC 9112 §6.3 for requests: `Transfer-Encoding` must end in `chunked` (else the length cannot
/// be known: 400); with `Content-Length` beside it the request is refused, since two framings
/// that may disagree are how requests are smuggled past a proxy; a `Content-Length` must be one
/// valid number (repeated identical values are allowed); neither means no body. HTTP/1.1 stays
/// open unless the client says `close`, HTTP/1.0 only when it says `keep-alive`.
fn scan(version: Version, fields: &[httparse::Header<'_>]) -> Result<Scan, HeadError> {
    let FramingFields {
        keep_alive,
        chunked_last,
        length,
        expect,
    } = FramingFields::scan(version, fields);
    let length = length.transpose().map_err(ProxyError::BadRequest)?;
    let framing = match (chunked_last, length) {
        (Some(_), _) if version == Version::HTTP_10 => {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ProxyError::BadRequest(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        (Some(false), None) => {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding does not end in `chunked`".into(),
            ));
        }
        (Some(true), None) => BodyFraming::Chunked,
        (None, None | Some(0)) => BodyFraming::Empty,
        (None, Some(n)) => BodyFraming::Length(n),
    };
    let expect_continue = match expect {
        None => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => {
            version == Version::HTTP_11
        }
        Some(v) => {
            return Err(ProxyError::ExpectationFailed(
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
    };
    Ok(Scan {
        framing,
        keep_alive,
        expect_continue,
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
