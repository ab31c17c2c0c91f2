//! Reading a backend's HTTP/1.1 response out of the connection's read buffer: the head (parsed
//! by httparse, hyper's own parser), how its body is framed (RFC 9112 §6.3), whether the
//! connection may be reused, and the chunked transfer coding. Pure functions over a `BytesMut`,
//! so every edge case is tested without sockets.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::DecodeError;

/// Largest response head (status line and headers) accepted. nginx answers 502 "upstream sent
/// too big header" past its 4-8 KiB buffer; 64 KiB leaves room for any sane backend (large
/// cookies, long CSP headers) while bounding what one connection can make the sidecar hold.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields accepted in one response head or trailer block (hyper's default is 100).
pub const MAX_HEADERS: usize = 128;

/// Longest chunk-size line (size, extensions, CRLF). Sizes are at most 16 hex digits; the rest
/// is room for chunk extensions, which nobody sends in practice and which are ignored.
pub const MAX_CHUNK_LINE: usize = 4096;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304, an answer to HEAD, `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the backend closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status, version and headers, as handed on to the client side.
    pub parts: http::response::Parts,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the connection can carry another request once the body is read.
    pub keep_alive: bool,
}

/// Parses one response head from the front of `buf`, consuming it. Interim 1xx responses (100
/// Continue, 103 Early Hints) are skipped. `Ok(None)`: the head is not complete yet.
///
/// Header values are slices of the read buffer (as hyper's own parser does), not copies: a
/// response's fields cost no allocation each.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, DecodeError> {
    loop {
        // Uninitialised: zeroing 128 header slots per response was a 4 KiB memset.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(DecodeError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(DecodeError::Malformed(format!(
                    "more than {MAX_HEADERS} header fields"
                )));
            }
            Err(e) => return Err(DecodeError::Malformed(format!("response head: {e}"))),
        };
        if len > MAX_HEAD_BYTES {
            return Err(DecodeError::HeadTooLarge);
        }
        let code = response.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| DecodeError::Malformed(format!("status code {code}")))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The sidecar strips `Upgrade` from requests, so a 101 is a backend bug.
            return Err(DecodeError::Malformed(
                "101 Switching Protocols to a request that asked for no upgrade".into(),
            ));
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let (framing, keep_alive, drop_length) =
            framing(status, version, response.headers, head_request)?;
        let spans = FieldSpans::new(buf.as_ptr() as usize, response.headers);
        let head = buf.split_to(len).freeze();
        let mut map = spans
            .header_map(&head, ADDED_HEADERS)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if drop_length {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a proxy must not
            // pass the overridden length on (the next hop could frame by it: request smuggling).
            map.remove(CONTENT_LENGTH);
        }
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = status;
        parts.version = version;
        parts.headers = map;
        return Ok(Some(Head {
            parts,
            framing,
            keep_alive,
        }));
    }
}

/// Where a field's name and value sit in the head: offset and length of each (a head is at most
/// 64 KiB, so 32 bits each keep the array small).
#[derive(Debug, Clone, Copy, Default)]
struct Span(u32, u32, u32, u32);

/// Fields whose positions are kept on the stack (256 bytes); a head with more spills to the
/// heap. MCP messages carry well under this.
const FEW_HEADERS: usize = 16;

/// Where each parsed field of a head sits, so that once the head is cut from the read buffer
/// and frozen, the header map can be built with values that are slices of it (no copy). The
/// parser's own slices borrow the buffer that the cut needs, hence offsets. Requests and
/// responses alike.
pub(crate) struct FieldSpans {
    few: [Span; FEW_HEADERS],
    many: Vec<Span>,
    len: usize,
}

/// A field the header map refuses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FieldError {
    /// Not a valid field name.
    #[error("invalid header name `{0}`")]
    Name(String),
    /// Not a valid field value.
    #[error("invalid value of header `{0}`")]
    Value(HeaderName),
}

impl FieldSpans {
    /// The positions of `fields`, parsed from a buffer that starts at address `base` (the head
    /// they belong to is at most [`MAX_HEAD_BYTES`] long, which the callers check first).
    #[inline]
    pub(crate) fn new(base: usize, fields: &[httparse::Header<'_>]) -> Self {
        let mut spans = Self {
            few: [Span::default(); FEW_HEADERS],
            many: Vec::new(),
            len: fields.len(),
        };
        if fields.len() > FEW_HEADERS {
            spans.many.resize(fields.len(), Span::default());
        }
        let slots = if fields.len() <= FEW_HEADERS {
            &mut spans.few[..fields.len()]
        } else {
            &mut spans.many[..]
        };
        let at = |p: *const u8| (p as usize - base) as u32;
        for (slot, h) in slots.iter_mut().zip(fields) {
            *slot = Span(
                at(h.name.as_ptr()),
                h.name.len() as u32,
                at(h.value.as_ptr()),
                h.value.len() as u32,
            );
        }
        spans
    }

    /// The header map of `head` (the frozen bytes the fields were parsed from), sized for
    /// `room` more fields.
    pub(crate) fn header_map(&self, head: &Bytes, room: usize) -> Result<HeaderMap, FieldError> {
        let spans = if self.len <= FEW_HEADERS {
            &self.few[..self.len]
        } else {
            &self.many[..]
        };
        let mut map = HeaderMap::with_capacity(spans.len() + room);
        for &Span(name_at, name_len, value_at, value_len) in spans {
            let (name_at, name_len) = (name_at as usize, name_len as usize);
            let (value_at, value_len) = (value_at as usize, value_len as usize);
            let raw_name = &head[name_at..name_at + name_len];
            let name = HeaderName::from_bytes(raw_name)
                .map_err(|_| FieldError::Name(String::from_utf8_lossy(raw_name).into_owned()))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
                .map_err(|_| FieldError::Value(name.clone()))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// Room for the fields the sidecar adds to a response (`X-Request-Id`, SSE's
/// `X-Accel-Buffering` and `Cache-Control`, rate-limit fields), so adding them never regrows the
/// map.
const ADDED_HEADERS: usize = 6;

/// Trailer fields (rare: copied rather than sliced).
fn header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, DecodeError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| DecodeError::Malformed(format!("header name `{}`", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| DecodeError::Malformed(format!("value of header `{}`", h.name)))?;
        map.append(name, value);
    }
    Ok(map)
}

/// RFC 9112 §6.3, in its order: no body for 1xx/204/304 and HEAD; Transfer-Encoding over
/// Content-Length (and then no reuse: the two disagreeing is how responses are smuggled), and
/// refused in HTTP/1.0 (§6.1: faulty framing); a
/// Content-Length must be one valid number (repeated identical values are allowed); otherwise
/// the body runs to the end of the connection. Read from the parsed fields in one pass, before
/// the header map is built. Returns the framing, whether the connection can be reused, and
/// whether a `Content-Length` beside `Transfer-Encoding` must be dropped.
fn framing(
    status: StatusCode,
    version: Version,
    fields: &[httparse::Header<'_>],
    head_request: bool,
) -> Result<(Framing, bool, bool), DecodeError> {
    let FramingFields {
        keep_alive,
        chunked_last,
        length,
        ..
    } = FramingFields::scan(version, fields);
    let drop_length = chunked_last.is_some() && length.is_some();
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, keep_alive, drop_length));
    }
    match chunked_last {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing. The
        // backend and an HTTP/1.0 reader would disagree on where the body ends, so it is not
        // relayed (read to close, or as chunked) but refused.
        Some(_) if version == Version::HTTP_10 => {
            return Err(DecodeError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 response (faulty framing, RFC 9112 §6.1)".into(),
            ));
        }
        // Transfer-Encoding wins; reuse only without a Content-Length beside it.
        Some(true) => {
            return Ok((
                Framing::Chunked,
                keep_alive && length.is_none(),
                drop_length,
            ));
        }
        // Not chunked last: the body ends when the connection does.
        Some(_) => return Ok((Framing::Close, false, drop_length)),
        None => {}
    }
    Ok(match length.transpose().map_err(DecodeError::Malformed)? {
        Some(0) => (Framing::Empty, keep_alive, false),
        Some(n) => (Framing::Length(n), keep_alive, false),
        None => (Framing::Close, false, false),
    })
}

/// The fields that decide how an HTTP/1.x response is framed and whether its connection stays
/// open, read from the parsed fields in one pass (no header-map lookups). Requests have their
/// own, stricter scan (`downstream/request.rs`).
#[derive(Debug)]
pub(crate) struct FramingFields {
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Some(true)` when the last transfer coding named is `chunked`; `None`: no
    /// `Transfer-Encoding` at all.
    pub chunked_last: Option<bool>,
    /// The `Content-Length` (repeated identical values allowed), or why it is invalid.
    pub length: Option<Result<u64, String>>,
}

impl FramingFields {
    /// Scans `fields` of a message of `version`.
    pub(crate) fn scan(version: Version, fields: &[httparse::Header<'_>]) -> Self {
        let mut keep_alive = version == Version::HTTP_11;
        let mut close = false;
        let mut chunked_last: Option<bool> = None;
        let mut length: Option<Result<u64, String>> = None;
        for field in fields {
            let name = field.name.as_bytes();
            let value = field.value;
            let tokens = || {
                value
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !t.is_empty())
            };
            match name.len() {
                10 if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) => {
                    for token in tokens() {
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                17 if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes()) => {
                    let last = tokens()
                        .next_back()
                        .map(|t| t.eq_ignore_ascii_case(b"chunked"));
                    chunked_last = last.or(chunked_last).or(Some(false));
                }
                14 if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) => {
                    // An earlier invalid value stays the answer.
                    length = Some(content_length(value, length));
                }
                _ => {}
            }
        }
        Self {
            keep_alive: keep_alive && !close,
            chunked_last,
            length,
        }
    }
}

/// One `Content-Length` field (`n` or `n, n`) given the length seen so far.
fn content_length(value: &[u8], seen: Option<Result<u64, String>>) -> Result<u64, String> {
    let mut length = seen.transpose()?;
    for part in value.split(|b| *b == b',') {
        let n = parse_decimal(part.trim_ascii()).ok_or_else(|| {
            format!(
                "invalid Content-Length `{}`",
                String::from_utf8_lossy(value)
            )
        })?;
        if length.is_some_and(|l| l != n) {
            return Err("Content-Length values disagree".into());
        }
        length = Some(n);
    }
    length.ok_or_else(|| "empty Content-Length".into())
}

/// Digits only (no sign, no spaces), at most 19 of them, so the value fits a u64 (a
/// `Content-Length`, in responses and in requests).
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The part of a length-delimited body that `buf` holds (at most `left` bytes), cut from it;
/// `None` when `buf` is empty. `left` counts down. Request and response bodies alike.
pub(crate) fn take_length(left: &mut u64, buf: &mut BytesMut) -> Option<Bytes> {
    if buf.is_empty() || *left == 0 {
        return None;
    }
    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= take as u64;
    Some(buf.split_to(take).freeze())
}

/// What the chunked decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (part of a chunk, as much as the buffer held).
    Data(Bytes),
    /// The trailer fields after the last chunk; the body is complete.
    Trailers(HeaderMap),
    /// The body is complete (no trailers).
    Done,
    /// More bytes are needed.
    NeedMore,
}

/// The chunked transfer coding (RFC 9112 §7.1), decoded incrementally so chunk data is handed
/// on as soon as it arrives (an SSE event is never held back waiting for the rest of its chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes to go.
    Data(u64),
    /// After a chunk's data: expecting its CRLF.
    DataEnd,
    /// After the last chunk: expecting trailer fields and the final CRLF.
    Trailers,
    /// The body is complete.
    Done,
}

impl Chunked {
    /// Decodes from the front of `buf` as far as it can, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        loop {
            match self {
                Self::Size => {
                    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(DecodeError::Malformed("chunk size line too long".into()));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if end >= MAX_CHUNK_LINE {
                        return Err(DecodeError::Malformed("chunk size line too long".into()));
                    }
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    *self = if size == 0 {
                        Self::Trailers
                    } else {
                        Self::Data(size)
                    };
                }
                Self::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Self::DataEnd;
                    }
                    return Ok(Decoded::Data(data));
                }
                Self::DataEnd => match buf.first() {
                    None => return Ok(Decoded::NeedMore),
                    Some(b'\n') => {
                        buf.advance(1);
                        *self = Self::Size;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(Decoded::NeedMore),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        *self = Self::Size;
                    }
                    Some(_) => {
                        return Err(DecodeError::Malformed(
                            "chunk data longer than its size".into(),
                        ));
                    }
                },
                Self::Trailers => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(buf, &mut headers) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let map = if fields.is_empty() {
                                None
                            } else {
                                Some(header_map(fields)?)
                            };
                            buf.advance(len);
                            *self = Self::Done;
                            return Ok(map.map_or(Decoded::Done, Decoded::Trailers));
                        }
                        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                            return Err(DecodeError::HeadTooLarge);
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(e) => {
                            return Err(DecodeError::Malformed(format!("chunked trailers: {e}")));
                        }
                    }
                }
                Self::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// The size in a chunk-size line (`1a;ext=1\r`): hex digits up to `;`, optional whitespace.
fn chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(DecodeError::Malformed(format!(
            "chunk size `{}`",
            String::from_utf8_lossy(digits)
        )));
    }
    let mut size = 0u64;
    for d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => {
                return Err(DecodeError::Malformed(format!(
                    "chunk size `{}`",
                    String::from_utf8_lossy(digits)
                )));
            }
        };
        size = (size << 4) | u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
