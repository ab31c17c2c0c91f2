//! Shared driving code for the fuzz targets: input split into pieces the way a socket delivers
//! it, and the sidecar's HTTP/1 legs run over those pieces exactly as the server and client
//! loops run them (parse when bytes arrive, decode the body until it needs more, read more).
//!
//! Every target that parses a stream checks split-invariance: the outcome of the whole input in
//! one read must equal the outcome of the same bytes in arbitrary pieces. A parser whose
//! decision depends on TCP segmentation is a desync waiting to happen (issue 14, finding 5).

use bytes::BytesMut;
use mcp_sidecar::codec::chunked::RequestChunked;
use mcp_sidecar::codec::request::{BodyFraming, parse_request_head};
use mcp_sidecar::codec::decode::{Chunked, Decoded, Framing, parse_head};

/// The request body limit the harness decodes under: `listen.max_body_bytes`' default, so a
/// chunk size past it is refused as the sidecar refuses it.
pub const REQUEST_BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// Delivers `data` into a read buffer in pieces whose lengths come from a seed (a small
/// xorshift generator, so a crash reproduces from the input alone).
#[derive(Debug)]
pub struct Feeder<'a> {
    data: &'a [u8],
    pos: usize,
    rng: u32,
    /// Longest piece; `usize::MAX` delivers everything in one read.
    max: usize,
}

impl<'a> Feeder<'a> {
    /// Everything in one read.
    pub fn whole(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            rng: 1,
            max: usize::MAX,
        }
    }

    /// Pieces of 1 to 3, 16, 64 or 512 bytes (the low two bits of `seed` pick which).
    pub fn split(data: &'a [u8], seed: u8) -> Self {
        let max = [3, 16, 64, 512][usize::from(seed & 3)];
        Self {
            data,
            pos: 0,
            rng: 0x9e37_79b9 ^ u32::from(seed),
            max,
        }
    }

    /// Appends the next piece to `buf`; `false` when the input is exhausted (the peer closed).
    pub fn more(&mut self, buf: &mut BytesMut) -> bool {
        if self.pos >= self.data.len() {
            return false;
        }
        let len = if self.max == usize::MAX {
            self.data.len()
        } else {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            1 + self.rng as usize % self.max
        };
        let end = self.data.len().min(self.pos + len);
        buf.extend_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        true
    }

    /// What was not delivered yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
}

/// Splits a fuzz input into the split seed (first byte) and the data.
pub fn seed_and_data(input: &[u8]) -> Option<(u8, &[u8])> {
    input.split_first().map(|(seed, data)| (*seed, data))
}

/// A decoded body.
#[derive(Debug, PartialEq, Eq)]
pub struct Body {
    /// The body's bytes, all data frames together.
    pub data: Vec<u8>,
    /// The trailer fields (`Debug` of the map), if any.
    pub trailers: Option<String>,
}

/// Runs the client leg's chunked decoder from `state` over `buf` and whatever `feeder` still
/// delivers, as its body loop does: hand on data, stop at the end, read more when it needs more.
pub fn decode_chunked(
    mut state: Chunked,
    buf: &mut BytesMut,
    feeder: &mut Feeder<'_>,
) -> Result<Body, String> {
    let body = decode_chunked_with(
        |buf| state.decode(buf).map_err(|e| e.to_string()),
        buf,
        feeder,
    );
    if body.is_ok() {
        assert_eq!(state, Chunked::Done);
    }
    body
}

/// Runs the server leg's strict request decoder (`downstream::chunked`, at most `limit` data
/// bytes) the same way.
pub fn decode_request_chunked(
    limit: u64,
    buf: &mut BytesMut,
    feeder: &mut Feeder<'_>,
) -> Result<Body, String> {
    let mut state = RequestChunked::new(limit);
    let body = decode_chunked_with(
        |buf| state.decode(buf).map_err(|e| e.to_string()),
        buf,
        feeder,
    );
    if let Ok(body) = &body {
        assert!(state.is_done());
        assert!(
            body.data.len() as u64 <= limit,
            "a body past the limit was accepted"
        );
    }
    body
}

/// Runs `decode` (a chunked decoder driven over a buffer and a feeder) on `input`'s data
/// delivered whole and in the pieces its seed byte chooses, and asserts the same body, trailers
/// and leftover bytes (the next pipelined message) either way. The chunked targets' body.
pub fn assert_chunked_split_invariant(
    input: &[u8],
    decode: impl Fn(&mut BytesMut, &mut Feeder<'_>) -> Result<Body, String>,
) {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let run = |mut feeder: Feeder<'_>| {
        let mut buf = BytesMut::new();
        let body = decode(&mut buf, &mut feeder);
        let mut rest = buf.to_vec();
        rest.extend_from_slice(feeder.remaining());
        (body, rest)
    };
    let whole = run(Feeder::whole(data));
    let split = run(Feeder::split(data, seed));
    assert_eq!(
        whole, split,
        "the outcome depends on how the bytes were split"
    );
}

/// Drives a chunked decoder (`decode`) over `buf` and the feeder until the body ends or fails.
fn decode_chunked_with(
    mut decode: impl FnMut(&mut BytesMut) -> Result<Decoded, String>,
    buf: &mut BytesMut,
    feeder: &mut Feeder<'_>,
) -> Result<Body, String> {
    let mut data = Vec::new();
    loop {
        match decode(buf) {
            Ok(Decoded::Data(bytes)) => {
                assert!(
                    !bytes.is_empty(),
                    "the decoder handed on an empty data frame"
                );
                data.extend_from_slice(&bytes);
            }
            Ok(Decoded::Trailers(map)) => {
                assert!(!map.is_empty(), "trailers reported without fields");
                return Ok(Body {
                    data,
                    trailers: Some(format!("{map:?}")),
                });
            }
            Ok(Decoded::Done) => {
                return Ok(Body {
                    data,
                    trailers: None,
                });
            }
            Ok(Decoded::NeedMore) => {
                if !feeder.more(buf) {
                    return Err("incomplete".into());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads exactly `n` bytes of body (or fewer if the input ends).
fn decode_length(n: u64, buf: &mut BytesMut, feeder: &mut Feeder<'_>) -> Result<Body, String> {
    while (buf.len() as u64) < n {
        if !feeder.more(buf) {
            return Err("incomplete".into());
        }
    }
    let data = buf.split_to(n as usize).to_vec();
    Ok(Body {
        data,
        trailers: None,
    })
}

/// What one message on a connection came to: the head as the proxy sees it (or the refusal),
/// its body, and the bytes left on the connection after it (the next pipelined message).
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The head's fields as the proxy sees them, or the refusal.
    pub head: Result<String, String>,
    /// The body as framed (`None`: no body), or why it failed.
    pub body: Option<Result<Body, String>>,
    /// Bytes after the message (the next pipelined one), delivered or not.
    pub rest: Vec<u8>,
}

impl Outcome {
    fn new(
        head: Result<String, String>,
        body: Option<Result<Body, String>>,
        buf: &BytesMut,
        feeder: &Feeder<'_>,
    ) -> Self {
        let mut rest = buf.to_vec();
        rest.extend_from_slice(feeder.remaining());
        Self { head, body, rest }
    }
}

/// The server leg on one request: the head parsed as bytes arrive, then the body as framed.
pub fn serve_request(mut feeder: Feeder<'_>) -> Outcome {
    let mut buf = BytesMut::new();
    let head = loop {
        if !buf.is_empty() {
            match parse_request_head(&mut buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    // As the sidecar answers it: the request path's one error mapping.
                    let e = mcp_sidecar::error::ProxyError::from(e);
                    let refused = format!("{} {}: {e}", e.status(), e.reason());
                    return Outcome::new(Err(refused), None, &buf, &feeder);
                }
            }
        }
        if !feeder.more(&mut buf) {
            return Outcome::new(Err("incomplete head".into()), None, &buf, &feeder);
        }
    };
    let parts = &head.parts;
    // Framing invariants the scan promises (RFC 9112 §6): never both framings, never chunked
    // in HTTP/1.0.
    let te = parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    let cl = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    assert!(!(te && cl), "a request with both framings was accepted");
    if head.framing == BodyFraming::Chunked {
        assert!(te && parts.version == http::Version::HTTP_11);
    }
    let shown = format!(
        "{} {:?} {:?} {:?} framing={:?} keep_alive={} continue={}",
        parts.method,
        parts.uri,
        parts.version,
        parts.headers,
        head.framing,
        head.keep_alive,
        head.expect_continue
    );
    let body = match head.framing {
        BodyFraming::Empty => None,
        BodyFraming::Length(n) => Some(decode_length(n, &mut buf, &mut feeder)),
        BodyFraming::Chunked => Some(decode_request_chunked(
            REQUEST_BODY_LIMIT,
            &mut buf,
            &mut feeder,
        )),
    };
    Outcome::new(Ok(shown), body, &buf, &feeder)
}

/// The client leg on one response: the head parsed as bytes arrive, then the body as framed.
pub fn read_response(mut feeder: Feeder<'_>, head_request: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let head = loop {
        if !buf.is_empty() {
            match parse_head(&mut buf, head_request) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Outcome::new(Err(e.to_string()), None, &buf, &feeder),
            }
        }
        if !feeder.more(&mut buf) {
            return Outcome::new(Err("incomplete head".into()), None, &buf, &feeder);
        }
    };
    let parts = &head.parts;
    // A Content-Length overridden by Transfer-Encoding is never passed on.
    if head.framing == Framing::Chunked {
        assert!(!parts.headers.contains_key(http::header::CONTENT_LENGTH));
    }
    let shown = format!(
        "{} {:?} {:?} framing={:?} keep_alive={}",
        parts.status, parts.version, parts.headers, head.framing, head.keep_alive
    );
    let body = match head.framing {
        Framing::Empty => None,
        Framing::Length(n) => Some(decode_length(n, &mut buf, &mut feeder)),
        Framing::Chunked => Some(decode_chunked(Chunked::Size, &mut buf, &mut feeder)),
        Framing::Close => {
            while feeder.more(&mut buf) {}
            let data = buf.split().to_vec();
            Some(Ok(Body {
                data,
                trailers: None,
            }))
        }
    };
    Outcome::new(Ok(shown), body, &buf, &feeder)
}
