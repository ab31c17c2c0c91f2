//! Reading a client's HTTP/1.x request head out of the connection's read buffer: the request
//! line and fields (parsed by httparse, hyper's own parser), how the body is framed (RFC 9112
//! §6), whether the connection may carry another request, and `Expect`. Pure functions over a
//! `BytesMut`, so every edge case is tested without sockets.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, Uri, Version};

use super::decode::{FieldSpans, parse_decimal};
use super::is_tchar;

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
/// follows is unknown). The request path's error type maps each to its answer (400, 417, 431,
/// 501), so the messages here are the ones clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is larger than a limit.
    #[error("request head larger than {limit} {what}")]
    TooLarge {
        /// The limit that was crossed.
        limit: usize,
        /// What it counts: `bytes` or `header fields`.
        what: &'static str,
    },
    /// Not a valid HTTP/1.1 request head (the message names what).
    #[error("{0}")]
    Malformed(String),
    /// A transfer coding other than `chunked`.
    #[error("unsupported transfer coding `{0}`")]
    UnsupportedTransferCoding(String),
    /// An `Expect` other than `100-continue`.
    #[error("unsupported expectation `Expect: {0}`")]
    ExpectationFailed(String),
}

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
            return Err(HeadError::TooLarge {
                limit: MAX_REQUEST_HEADERS,
                what: "header fields",
            });
        }
        Err(e) => {
            return Err(HeadError::Malformed(format!("malformed request head: {e}")));
        }
    };
    if len > MAX_REQUEST_HEAD_BYTES {
        return Err(too_large_bytes());
    }
    let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method".into()))?;
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
        host,
    } = scan(version, request.headers, base)?;
    let spans = FieldSpans::new(base, request.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|e| HeadError::Malformed(format!("invalid request target: {e}")))?;
    check_target(&uri, host.map(|(at, len)| &head[at..at + len]))?;
    let headers = spans
        .header_map(&head, ADDED_HEADERS)
        .map_err(|e| HeadError::Malformed(e.to_string()))?;
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

fn too_large_bytes() -> HeadError {
    HeadError::TooLarge {
        limit: MAX_REQUEST_HEAD_BYTES,
        what: "bytes",
    }
}

/// What the framing fields of a request say.
struct Scan {
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    /// The `Host` field's value (at most one is allowed).
    host: Option<(usize, usize)>,
}

/// Reads `Content-Length`, `Transfer-Encoding`, `Connection`, `Expect` and `Host` from the
/// parsed fields, before the header map is built (one pass, no map lookups). Stricter than the
/// response side (`upstream/h1/decode.rs`), which reads a trusted backend: a client's framing
/// is what the backend will frame by too, so anything two parsers could read differently is
/// refused (RFC 9112 §6.3, hyper's server):
///
/// - `Transfer-Encoding` must be exactly `chunked`: one field, one coding (case-insensitive,
///   surrounding whitespace allowed). Any other coding (`gzip, chunked`, `identity`) gets 501,
///   as RFC 9112 §6.1 asks for codings the server does not implement (the sidecar decodes
///   none); `chunked` twice (in one field or two), parameters, empty or malformed lists get
///   400. Beside `Content-Length`, or in an HTTP/1.0 request, it is 400: two framings that may
///   disagree are how requests are smuggled past a proxy;
/// - a `Content-Length` must be one valid number (repeated identical values are allowed);
///   neither field means no body;
/// - exactly one `Host` in an HTTP/1.1 request, at most one in HTTP/1.0 (RFC 9112 §3.2);
/// - HTTP/1.1 stays open unless the client says `close`, HTTP/1.0 only when it says
///   `keep-alive`.
fn scan(version: Version, fields: &[httparse::Header<'_>], base: usize) -> Result<Scan, HeadError> {
    let mut keep_alive = version == Version::HTTP_11;
    let mut close = false;
    let mut codings = Codings::default();
    let mut length: Option<Result<u64, String>> = None;
    let mut expect = None;
    let mut host = None;
    let mut hosts = 0u32;
    let mut host_value: &[u8] = &[];
    for field in fields {
        let name = field.name.as_bytes();
        let value = field.value;
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                host = Some((value.as_ptr() as usize - base, value.len()));
                host_value = value;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => codings.field(value),
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // One field with one decimal value, as hyper's server and nginx require: a list
                // (`40, 40`) or a repeated field is how a front and a back end come to disagree.
                length = Some(match length {
                    Some(_) => Err("more than one Content-Length field".into()),
                    None => request_content_length(value),
                });
            }
            6 if expect.is_none() && name.eq_ignore_ascii_case(b"expect") => {
                expect = Some(value);
            }
            _ => {}
        }
    }
    if hosts > 1 {
        return Err(HeadError::Malformed(
            "more than one Host field (RFC 9112 §3.2)".into(),
        ));
    }
    if hosts == 0 && version == Version::HTTP_11 {
        return Err(HeadError::Malformed(
            "no Host field in an HTTP/1.1 request (RFC 9112 §3.2)".into(),
        ));
    }
    if hosts == 1 && !is_host_value(host_value) {
        return Err(HeadError::Malformed(format!(
            "invalid Host `{}`: not a host with an optional port",
            String::from_utf8_lossy(host_value)
        )));
    }
    let length = length.transpose().map_err(HeadError::Malformed)?;
    let framing = match (codings.fields, length) {
        (0, None | Some(0)) => BodyFraming::Empty,
        (0, Some(n)) => BodyFraming::Length(n),
        _ if version == Version::HTTP_10 => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request".into(),
            ));
        }
        (_, Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        (_, None) => codings.framing()?,
    };
    let expect_continue = match expect {
        None => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => {
            version == Version::HTTP_11
        }
        Some(v) => {
            return Err(HeadError::ExpectationFailed(
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
    };
    Ok(Scan {
        framing,
        keep_alive: keep_alive && !close,
        expect_continue,
        host,
    })
}

/// A request's `Content-Length`: one decimal number, nothing else (no list, no sign, no spaces
/// inside).
fn request_content_length(value: &[u8]) -> Result<u64, String> {
    parse_decimal(value.trim_ascii()).ok_or_else(|| {
        format!(
            "invalid Content-Length `{}`: one decimal number expected",
            String::from_utf8_lossy(value)
        )
    })
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): an IP
/// literal in brackets or a reg-name (unreserved, sub-delims, percent-encoded bytes), then an
/// optional port of digits. No userinfo, no spaces, not empty (the sidecar's targets always have
/// an authority, so the RFC's empty Host for authority-less URIs never applies). Checked on the
/// bytes, without building a `Uri` (every request pays it).
fn is_host_value(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let (host, port) = match value.first() {
        None => return false,
        Some(b'[') => match value.iter().position(|b| *b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                (&value[..=end], &value[end + 1..])
            }
            None => return false,
        },
        Some(_) => match value.iter().rposition(|b| *b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && !host.is_empty() && (host[0] == b'[' || is_reg_name(host))
}

/// RFC 3986 `reg-name`: unreserved and sub-delims characters and `%XX` escapes.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let escape = name.get(i + 1..i + 3);
                if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// What the `Transfer-Encoding` fields of a request say, gathered field by field.
#[derive(Default)]
struct Codings<'a> {
    /// `Transfer-Encoding` fields seen.
    fields: u32,
    /// The only field's value is exactly `chunked` (with optional surrounding whitespace).
    exactly_chunked: bool,
    /// `chunked` codings seen, over all fields.
    chunked: u32,
    /// The first coding other than `chunked` (a valid token, parameters cut off).
    other: Option<&'a [u8]>,
}

impl<'a> Codings<'a> {
    fn field(&mut self, value: &'a [u8]) {
        self.fields += 1;
        self.exactly_chunked = self.fields == 1 && trim_ows(value).eq_ignore_ascii_case(b"chunked");
        for element in value.split(|b| *b == b',') {
            let name = trim_ows(element.split(|b| *b == b';').next().unwrap_or_default());
            if name.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            } else if self.other.is_none() && !name.is_empty() && name.iter().all(|b| is_tchar(*b))
            {
                self.other = Some(name);
            }
        }
    }

    /// The framing of a request with at least one `Transfer-Encoding` field.
    fn framing(&self) -> Result<BodyFraming, HeadError> {
        if let Some(coding) = self.other {
            return Err(HeadError::UnsupportedTransferCoding(
                String::from_utf8_lossy(coding).into_owned(),
            ));
        }
        if self.fields == 1 && self.exactly_chunked {
            return Ok(BodyFraming::Chunked);
        }
        Err(HeadError::Malformed(if self.chunked > 1 {
            "Transfer-Encoding names `chunked` more than once".into()
        } else {
            "Transfer-Encoding must be exactly `chunked`".into()
        }))
    }
}

/// `s` without leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    let end = s.len()
        - s[start..]
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
    &s[start..end]
}

/// Which request targets are served (RFC 9112 §3.2): origin-form (`/mcp`) and absolute-form
/// (`http://host/mcp`, which proxies send) whose authority is the `Host` field's value, so the
/// `auth.allowed_hosts` check, which reads `Host`, covers it. Authority-form (CONNECT's
/// `host:port`) and asterisk-form (`OPTIONS *`) are refused with 400: the sidecar is neither a
/// forward proxy nor has server-wide options.
fn check_target(uri: &Uri, host: Option<&[u8]>) -> Result<(), HeadError> {
    let refuse = |why: String| Err(HeadError::Malformed(why));
    match (uri.scheme_str(), uri.authority()) {
        (None, None) if uri.path() == "*" => {
            refuse("asterisk-form request target `*` is not served here".into())
        }
        (None, None) => Ok(()),
        (None, Some(_)) => refuse("authority-form request target is not served here".into()),
        (Some(scheme), authority) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return refuse(format!("request target with scheme `{scheme}`"));
            }
            let Some(authority) = authority.filter(|a| !a.host().is_empty()) else {
                return refuse("absolute-form request target without a host".into());
            };
            if authority.as_str().contains('@') {
                return refuse("request target with userinfo (RFC 9110 §4.2.4)".into());
            }
            match host {
                Some(h) if !h.eq_ignore_ascii_case(authority.as_str().as_bytes()) => {
                    refuse(format!(
                        "request target authority `{authority}` differs from Host `{}`",
                        String::from_utf8_lossy(h)
                    ))
                }
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
