//! The path rule: which request paths the sidecar forwards at all.
//!
//! The sidecar routes on the path as it reads it (mounts match whole `/`-separated segments) and
//! forwards it unchanged. A backend that resolves the same bytes differently — Node's URL parser
//! reads `\` as `/`, most servers decode `%2e%2e` and then remove the dot segment, Tomcat drops
//! `;params` before resolving `..;` — can land on a path outside the mount the sidecar
//! authenticated for: `/public/..\mcp` is `/public/..\mcp` here and `/mcp` there. So every path
//! containing a construct whose meaning differs between parsers is refused (400) before routing,
//! rather than normalised: normalising would need to know the backend's parser.
//!
//! Refused, anywhere in the path (the query is not checked: it is never resolved as a path):
//! - `\`, and `%5c`/`%5C` (a backslash is a separator to WHATWG URL parsers and Windows);
//! - `%2f`/`%2F` (an encoded `/` becomes a separator to a backend that decodes before routing);
//! - dot segments `.` and `..`, each dot raw or as `%2e`/`%2E` in any mix (`.%2e`), also when
//!   followed by a `;` path parameter (`..;/`, `.;x`), which Tomcat and Jetty strip;
//! - `%25` (an encoded `%`): `%252e` is `%2e` after one decoding and `.` after two, and backends
//!   and frameworks that decode twice exist; no MCP endpoint needs a literal `%` in its path;
//! - control bytes, raw or encoded (`%00`–`%1f`, `%7f`): NUL truncates paths in C-based servers;
//! - a `%` not followed by two hex digits (decoders disagree on what it means);
//! - percent-encoded bytes that are not valid UTF-8 (`%c0%ae` is an overlong `.` that old
//!   decoders accept).
//!
//! `http::Uri` already refuses raw control bytes, spaces and DEL and raw invalid UTF-8, so
//! those never get here from HTTP/1 or HTTP/2; they are checked again so the rule holds on its
//! own. Empty segments (`//`) are allowed: they cannot climb out of a mount.

/// What made a path unsafe to forward (the 400's message names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// A raw `\`.
    #[error("it contains a backslash, which many backends read as `/`")]
    Backslash,
    /// `%5c` or `%5C`.
    #[error("it contains an encoded backslash (`%5c`)")]
    EncodedBackslash,
    /// `%2f` or `%2F`.
    #[error("it contains an encoded slash (`%2f`)")]
    EncodedSlash,
    /// A `.` or `..` segment in any encoding.
    #[error("it has a `.` or `..` segment (also percent-encoded or before `;`)")]
    DotSegment,
    /// `%25`: the path would still hold escapes after one decoding.
    #[error("it contains `%25` (an encoded `%`), which a backend may decode twice")]
    DoubleEncoding,
    /// A control byte, raw or encoded.
    #[error("it contains a control byte (raw or as `%00`-`%1f`, `%7f`)")]
    ControlByte,
    /// `%` without two hex digits.
    #[error("it contains a `%` not followed by two hex digits")]
    InvalidEscape,
    /// Percent-encoded bytes that do not decode to UTF-8 (overlong forms among them).
    #[error("its percent-encoded bytes are not valid UTF-8")]
    InvalidUtf8,
}

/// Checks `path` (the path of the request target, without the query) against the rule in the
/// module doc. One pass over the bytes and no allocation, except for a path holding
/// percent-encoded non-ASCII bytes, which is decoded once to check it is UTF-8.
pub fn check_path(path: &str) -> Result<(), PathRefusal> {
    let b = path.as_bytes();
    // Dots seen in the current segment (raw or encoded); `None` once it holds anything else.
    let mut dots: Option<u8> = Some(0);
    let mut high_escape = false;
    let mut i = 0;
    while i < b.len() {
        let byte = b[i];
        let (decoded, width) = if byte == b'%' {
            let (Some(hi), Some(lo)) = (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex))
            else {
                return Err(PathRefusal::InvalidEscape);
            };
            let v = (hi << 4) | lo;
            match v {
                b'/' => return Err(PathRefusal::EncodedSlash),
                b'\\' => return Err(PathRefusal::EncodedBackslash),
                b'%' => return Err(PathRefusal::DoubleEncoding),
                0x80.. => high_escape = true,
                _ => {}
            }
            (v, 3)
        } else {
            if byte == b'\\' {
                return Err(PathRefusal::Backslash);
            }
            (byte, 1)
        };
        if decoded < 0x20 || decoded == 0x7f {
            return Err(PathRefusal::ControlByte);
        }
        // A `/` in `decoded` is always a raw one here (encoded slashes were refused above).
        match decoded {
            b'/' | b';' => {
                if matches!(dots, Some(1 | 2)) {
                    return Err(PathRefusal::DotSegment);
                }
                // After `;` the rest of the segment is a parameter, not part of its name.
                dots = (decoded == b'/').then_some(0);
            }
            b'.' => dots = dots.map(|d| d.saturating_add(1)),
            _ => dots = None,
        }
        i += width;
    }
    if matches!(dots, Some(1 | 2)) {
        return Err(PathRefusal::DotSegment);
    }
    if high_escape && !decodes_to_utf8(b) {
        return Err(PathRefusal::InvalidUtf8);
    }
    Ok(())
}

/// The value of one hex digit.
fn hex(d: &u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` (whose escapes are all valid: checked first) percent-decodes to UTF-8.
fn decodes_to_utf8(path: &[u8]) -> bool {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match (
            path[i],
            path.get(i + 1).and_then(hex),
            path.get(i + 2).and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi << 4) | lo);
                i += 3;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
