//! Writing a request head in HTTP/1.1 origin form, with the framing header the sidecar chose
//! for the body (the client's own `Content-Length`/`Transfer-Encoding` never go through: the
//! body the sidecar sends is what decides them).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Uri};

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body and no framing header (GET, DELETE, OPTIONS without a body).
    None,
    /// `Content-Length: n` and exactly n bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

impl BodyFraming {
    /// The framing for a body that is empty (`end_stream`) or of known (`exact`) length.
    pub fn choose(method: &Method, end_stream: bool, exact: Option<u64>) -> Self {
        if end_stream {
            // Methods that define a body say so even when it is empty, as hyper and curl do;
            // some servers refuse a bodiless POST with 411 Length Required.
            return if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                Self::Length(0)
            } else {
                Self::None
            };
        }
        match exact {
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Appends the request line and headers to `out`. `host` (the backend's authority) is the
/// request's `Host`, whatever the map holds: the backend is addressed by its own name, and a
/// client's `Host` (or a repeated one) never goes through.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    framing: BodyFraming,
    host: &HeaderValue,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => out.extend_from_slice(pq.as_str().as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    header(out, HOST.as_str(), host.as_bytes());
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == HOST {
            continue;
        }
        header(out, name.as_str(), value.as_bytes());
    }
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            header(
                out,
                "content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        BodyFraming::Chunked => header(out, "transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one `name: value` field line.
#[inline]
pub(crate) fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked body.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        // A zero-size chunk would end the body early.
        return;
    }
    encode_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` (non-zero) bytes; its data and CRLF follow.
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut hex = [0u8; 16];
    let mut n = len;
    let mut i = hex.len();
    while n > 0 || i == hex.len() {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(method: Method, uri: &str, headers: &[(&str, &str)], framing: BodyFraming) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &method,
            &uri.parse().unwrap(),
            &map,
            framing,
            &HeaderValue::from_static("backend:8000"),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_head_is_in_origin_form_with_the_chosen_framing() {
        let head = encode(
            Method::POST,
            "http://backend:8000/mcp?x=1",
            &[
                ("host", "backend:8000"),
                ("content-length", "999"),
                ("accept", "a"),
                ("accept", "b"),
            ],
            BodyFraming::Length(12),
        );
        assert_eq!(
            head,
            "POST /mcp?x=1 HTTP/1.1\r\nhost: backend:8000\r\naccept: a\r\naccept: b\r\ncontent-length: 12\r\n\r\n"
        );
    }

    #[test]
    fn the_clients_host_is_replaced_by_the_backends() {
        let head = encode(
            Method::POST,
            "/mcp",
            &[
                ("accept", "a"),
                ("host", "sidecar.example:8080"),
                ("host", "evil.example"),
            ],
            BodyFraming::Length(0),
        );
        assert_eq!(
            head,
            "POST /mcp HTTP/1.1\r\nhost: backend:8000\r\naccept: a\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_missing_host_and_path_get_defaults() {
        assert_eq!(
            encode(Method::GET, "http://backend:8000", &[], BodyFraming::None),
            "GET / HTTP/1.1\r\nhost: backend:8000\r\n\r\n"
        );
    }

    #[test]
    fn client_transfer_encoding_is_replaced_by_ours() {
        let head = encode(
            Method::POST,
            "/x",
            &[("transfer-encoding", "gzip")],
            BodyFraming::Chunked,
        );
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert_eq!(head.matches("transfer-encoding").count(), 1);
    }

    #[test]
    fn framing_follows_the_body() {
        assert_eq!(
            BodyFraming::choose(&Method::GET, true, Some(0)),
            BodyFraming::None
        );
        assert_eq!(
            BodyFraming::choose(&Method::POST, true, Some(0)),
            BodyFraming::Length(0)
        );
        assert_eq!(
            BodyFraming::choose(&Method::POST, false, Some(7)),
            BodyFraming::Length(7)
        );
        assert_eq!(
            BodyFraming::choose(&Method::DELETE, false, None),
            BodyFraming::Chunked
        );
    }

    #[test]
    fn chunks_carry_their_hex_size() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[b'x'; 26]);
        encode_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(
            out,
            [&b"1a\r\n"[..], &[b'x'; 26], b"\r\n0\r\n\r\n"].concat()
        );
    }
}
