//! The chunked transfer coding of request bodies (RFC 9112 §7.1), decoded strictly.
//!
//! The response side (`upstream/h1/decode.rs`) reads a backend the sidecar is configured to
//! trust and tolerates what harmless backends send (bare LF line ends). A client is not
//! trusted, and the sidecar forwards what it decoded to a backend whose own parser may read the
//! same bytes differently, so anything two parsers could disagree on is refused here, at least
//! as strictly as hyper's server (which this leg replaced):
//!
//! - chunk-size line: 1 to 16 hex digits first (no leading whitespace, sign or `0x`), then
//!   optional extensions `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`,
//!   then CRLF; trailing whitespace before the CRLF is tolerated (hyper does);
//! - every line ends in CRLF: a bare LF, or a CR not followed by LF, is refused;
//! - chunk data is followed by exactly CRLF;
//! - trailer fields: CRLF line ends, field syntax per httparse (no obs-fold), at most
//!   [`MAX_TRAILER_BYTES`] and [`MAX_REQUEST_HEADERS`] fields;
//! - a chunk whose size, with the body read so far, exceeds `listen.max_body_bytes` is refused
//!   when its size line is read (413), not after the bytes were waited for.

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::decode::Decoded;
use super::is_tchar;
use super::request::MAX_REQUEST_HEADERS;

/// Longest chunk-size line, extensions and CRLF included. The size is at most 16 digits; the
/// rest is room for extensions, which the sidecar ignores and nobody sends in practice.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most bytes of chunk extensions in one body (hyper's limit): with [`MAX_CHUNK_LINE`] alone, a
/// body of 1-byte chunks could carry 4 KiB of ignored extension per data byte.
pub const MAX_CHUNK_EXTENSION_BYTES: usize = 16 * 1024;

/// Largest trailer section (hyper's limit).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why a chunked request body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The coding is malformed (400).
    #[error("{0}")]
    Malformed(&'static str),
    /// The chunks announce more than the body limit (413).
    #[error("the chunk sizes exceed the {limit}-byte body limit")]
    TooLarge {
        /// The limit (`listen.max_body_bytes`).
        limit: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes to go.
    Data(u64),
    /// After a chunk's data: expecting CRLF.
    DataEnd,
    /// After the last chunk: expecting trailer fields and the final CRLF.
    Trailers,
    /// The body is complete.
    Done,
}

/// A chunked request body being decoded, incrementally (data is handed on as it arrives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestChunked {
    state: State,
    /// `listen.max_body_bytes`.
    limit: u64,
    /// Data bytes announced so far (every chunk size read, summed).
    announced: u64,
    /// Extension bytes seen so far.
    extension_bytes: usize,
    /// Bytes at the front of the buffer already searched for the end of the current size line
    /// or trailer section, so a line arriving a byte at a time is scanned once, not once per
    /// byte (quadratic in the line length otherwise).
    scanned: usize,
    /// Trailer fields counted in the scanned part.
    trailer_fields: usize,
}

impl RequestChunked {
    /// A decoder for a body of at most `limit` data bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            state: State::Size,
            limit,
            announced: 0,
            extension_bytes: 0,
            scanned: 0,
            trailer_fields: 0,
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `buf` as far as it can, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let from = self.scanned;
                    let Some(end) = buf
                        .iter()
                        .take(MAX_CHUNK_LINE)
                        .skip(from)
                        .position(|b| *b == b'\n')
                        .map(|at| from + at)
                    else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(ChunkError::Malformed("chunk size line too long"));
                        }
                        self.scanned = buf.len();
                        return Ok(Decoded::NeedMore);
                    };
                    self.scanned = 0;
                    let (size, extension) = chunk_size_line(&buf[..end])?;
                    self.extension_bytes += extension;
                    if self.extension_bytes > MAX_CHUNK_EXTENSION_BYTES {
                        return Err(ChunkError::Malformed("too many chunk extension bytes"));
                    }
                    self.announced = self.announced.saturating_add(size);
                    if self.announced > self.limit {
                        return Err(ChunkError::TooLarge { limit: self.limit });
                    }
                    buf.advance(end + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => match (buf.first(), buf.get(1)) {
                    (None, _) | (Some(b'\r'), None) => return Ok(Decoded::NeedMore),
                    (Some(b'\r'), Some(b'\n')) => {
                        buf.advance(2);
                        self.state = State::Size;
                    }
                    _ => {
                        return Err(ChunkError::Malformed(
                            "chunk data not followed by CRLF (longer than its size?)",
                        ));
                    }
                },
                State::Trailers => {
                    let Some((len, fields)) =
                        trailer_section(buf, &mut self.scanned, &mut self.trailer_fields)?
                    else {
                        return Ok(Decoded::NeedMore);
                    };
                    let map = if fields == 0 {
                        None
                    } else {
                        Some(trailer_map(&buf[..len])?)
                    };
                    buf.advance(len);
                    self.state = State::Done;
                    return Ok(map.map_or(Decoded::Done, Decoded::Trailers));
                }
                State::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// The size in a chunk-size line (`line` is up to, not including, its LF) and how many bytes of
/// extensions it carries.
fn chunk_size_line(line: &[u8]) -> Result<(u64, usize), ChunkError> {
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(ChunkError::Malformed(
            "chunk size line ends in a bare LF, not CRLF",
        ));
    };
    if line.contains(&b'\r') {
        return Err(ChunkError::Malformed(
            "stray CR (not followed by LF) in a chunk size line",
        ));
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError::Malformed(
            "chunk size line does not start with a hex digit",
        ));
    }
    if digits > 16 {
        return Err(ChunkError::Malformed(
            "chunk size has more than 16 hex digits",
        ));
    }
    let size = line[..digits].iter().fold(0u64, |n, d| {
        // Checked above: a hex digit, and at most 16 of them fit in 64 bits.
        (n << 4) | u64::from(hex_value(*d))
    });
    let rest = &line[digits..];
    let extension = rest.len();
    let rest = skip_bws(rest);
    if !rest.is_empty() {
        check_extensions(rest)?;
    }
    Ok((size, extension))
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d.wrapping_sub(b'A').wrapping_add(10),
    }
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn take_token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| is_tchar(**b)).count();
    s.split_at(n)
}

/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ) BWS`, starting at the
/// first `;` (leading BWS already skipped).
fn check_extensions(mut s: &[u8]) -> Result<(), ChunkError> {
    const BAD: ChunkError =
        ChunkError::Malformed("invalid chunk extension (RFC 9112 §7.1.1: `;name[=value]`)");
    while !s.is_empty() {
        s = s.strip_prefix(b";").ok_or(BAD)?;
        let (name, rest) = take_token(skip_bws(s));
        if name.is_empty() {
            return Err(BAD);
        }
        s = skip_bws(rest);
        if let Some(rest) = s.strip_prefix(b"=") {
            let rest = skip_bws(rest);
            s = if rest.first() == Some(&b'"') {
                skip_quoted_string(rest).ok_or(BAD)?
            } else {
                let (value, rest) = take_token(rest);
                if value.is_empty() {
                    return Err(BAD);
                }
                rest
            };
            s = skip_bws(s);
        }
    }
    Ok(())
}

/// The rest after a quoted-string at the front of `s` (which starts with `"`).
fn skip_quoted_string(s: &[u8]) -> Option<&[u8]> {
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if !(escaped == b'\t' || escaped == b' ' || (escaped >= 0x21 && escaped != 0x7f)) {
                    return None;
                }
                i += 2;
            }
            // qdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text.
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

/// The length of the complete trailer section at the front of `buf` (its final empty line
/// included) and its number of fields; `None`: not complete yet. Every line must end in CRLF
/// with no other CR in it. `start` and `fields` carry the complete lines already checked from
/// one call to the next.
fn trailer_section(
    buf: &[u8],
    start: &mut usize,
    fields: &mut usize,
) -> Result<Option<(usize, usize)>, ChunkError> {
    loop {
        let Some(nl) = buf[*start..].iter().position(|b| *b == b'\n') else {
            if buf.len() > MAX_TRAILER_BYTES {
                return Err(ChunkError::Malformed("trailer section too large"));
            }
            return Ok(None);
        };
        let line = &buf[*start..*start + nl];
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(ChunkError::Malformed(
                "trailer line ends in a bare LF, not CRLF",
            ));
        };
        if line.contains(&b'\r') {
            return Err(ChunkError::Malformed("stray CR in a trailer field"));
        }
        *start += nl + 1;
        if *start > MAX_TRAILER_BYTES {
            return Err(ChunkError::Malformed("trailer section too large"));
        }
        if line.is_empty() {
            return Ok(Some((*start, *fields)));
        }
        *fields += 1;
        if *fields > MAX_REQUEST_HEADERS {
            return Err(ChunkError::Malformed("too many trailer fields"));
        }
    }
}

/// The fields of a complete trailer section (rare: copied rather than sliced).
fn trailer_map(section: &[u8]) -> Result<HeaderMap, ChunkError> {
    const BAD: ChunkError = ChunkError::Malformed("invalid trailer field");
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let fields = match httparse::parse_headers(section, &mut headers) {
        Ok(httparse::Status::Complete((len, fields))) if len == section.len() => fields,
        _ => return Err(BAD),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for h in fields {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| BAD)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| BAD)?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
