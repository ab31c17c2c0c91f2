//! Differential tests of the sidecar's own HTTP/1 codecs against hyper's.
//!
//! The sidecar replaced hyper's HTTP/1 server and client with its own legs
//! (`downstream::request` + the chunked decoder on the server side, `upstream::h1::decode` on
//! the client side). Generated messages (methods, targets, versions, header sets with
//! `Content-Length`/`Transfer-Encoding` variants and obfuscations, chunked bodies with
//! extensions and trailers, pipelining, random splits) go through both; for each message the
//! own leg must reach the same framing decision as hyper (same head fields, same body bytes,
//! same boundary to the next message), or refuse. Accepting what hyper refuses, or accepting
//! with a different result, fails the test with the case.
//!
//! hyper runs on a paused-clock runtime over `tokio::io::duplex`, so "hyper is still waiting
//! for bytes" is detected by an auto-advancing timeout without real waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_sidecar::codec::chunked::RequestChunked;
use mcp_sidecar::codec::decode::{Chunked, Decoded, Framing, parse_head};
use mcp_sidecar::codec::request::{BodyFraming, parse_request_head};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Generated cases per test: enough to cover every variant many times over, a few seconds in
/// CI. At 1,024 a request-side decoder lenient on chunk syntax slipped through some runs; at
/// 4,096 it is caught. `PROPTEST_CASES` sets another count for a longer hunt.
const CASES: u32 = 4096;

/// [`CASES`], or `PROPTEST_CASES` when set.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

/// Longest a side may wait for bytes that never come (paused clock: costs no real time).
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// What a leg made of a message.

/// A body as read: bytes and trailers, or how it ended without completing.
#[derive(Debug, Clone, PartialEq)]
enum BodyOutcome {
    Complete(Bytes, Option<HeaderMap>),
    /// The framing says more bytes follow than were sent.
    Waiting,
    /// The leg refused the body.
    Refused(String),
}

/// One request as a server leg saw it.
#[derive(Debug, Clone, PartialEq)]
struct SeenRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: BodyOutcome,
    /// The known leniencies the own leg used to accept it (0 for hyper's).
    lenient: u8,
}

/// One response as a client leg saw it.
#[derive(Debug, Clone, PartialEq)]
struct SeenResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: BodyOutcome,
    /// The known leniencies the own leg used to accept it (0 for hyper's).
    lenient: u8,
}

/// What a leg made of a connection's bytes: the messages it accepted, in order, and whether it
/// stopped on a refusal.
#[derive(Debug, Clone, PartialEq)]
struct Seen<M> {
    messages: Vec<M>,
    refused: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Splitting.

/// Cuts `bytes` into pieces at the given (sorted, deduplicated) offsets.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.min(bytes.len());
        if cut > start {
            out.push(Bytes::copy_from_slice(&bytes[start..cut]));
            start = cut;
        }
    }
    if start < bytes.len() {
        out.push(Bytes::copy_from_slice(&bytes[start..]));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The own legs, driven as the server and client loops drive them.

/// Runs the chunked decoder over `buf` and the pieces still to come; with the outcome, the
/// leniencies the decoder needed (the bytes it consumed checked against the strict grammar).
fn own_chunked(buf: &mut BytesMut, rest: &mut std::vec::IntoIter<Bytes>) -> (BodyOutcome, u8) {
    let mut state = Chunked::Size;
    own_chunked_with(
        |buf| state.decode(buf).map_err(|e| e.to_string()),
        buf,
        rest,
    )
}

/// The server leg's strict request decoder (`downstream::chunked`) over `buf` and the pieces
/// still to come, with no body limit (the limit is tested where it is enforced).
fn own_request_chunked(
    buf: &mut BytesMut,
    rest: &mut std::vec::IntoIter<Bytes>,
) -> (BodyOutcome, u8) {
    let mut state = RequestChunked::new(u64::MAX);
    own_chunked_with(
        |buf| state.decode(buf).map_err(|e| e.to_string()),
        buf,
        rest,
    )
}

/// Runs a chunked decoder (`decode`) as the body loops do.
fn own_chunked_with(
    mut decode: impl FnMut(&mut BytesMut) -> Result<Decoded, String>,
    buf: &mut BytesMut,
    rest: &mut std::vec::IntoIter<Bytes>,
) -> (BodyOutcome, u8) {
    let mut data = BytesMut::new();
    let mut given = buf.to_vec();
    let outcome = loop {
        match decode(buf) {
            Ok(Decoded::Data(bytes)) => data.extend_from_slice(&bytes),
            Ok(Decoded::Trailers(map)) => break BodyOutcome::Complete(data.freeze(), Some(map)),
            Ok(Decoded::Done) => break BodyOutcome::Complete(data.freeze(), None),
            Ok(Decoded::NeedMore) => match rest.next() {
                Some(piece) => {
                    buf.extend_from_slice(&piece);
                    given.extend_from_slice(&piece);
                }
                None => return (BodyOutcome::Waiting, 0),
            },
            Err(e) => return (BodyOutcome::Refused(e), 0),
        }
    };
    let consumed = &given[..given.len() - buf.len()];
    let lenient = if strict_chunked(consumed) {
        0
    } else {
        LENIENT_CHUNK
    };
    (outcome, lenient)
}

/// Whether `body` is a chunked body in the strict grammar hyper's decoder accepts (RFC 9112
/// §7.1): hex size, optional whitespace, extensions without CR, LF or other control bytes,
/// CRLF line ends everywhere, trailer lines ending in CRLF, a final CRLF.
fn strict_chunked(mut b: &[u8]) -> bool {
    loop {
        let digits = b.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 {
            return false;
        }
        let Some(size) = std::str::from_utf8(&b[..digits])
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok())
        else {
            return false;
        };
        b = &b[digits..];
        while let [b' ' | b'\t', rest @ ..] = b {
            b = rest;
        }
        if let [b';', rest @ ..] = b {
            let ext = rest
                .iter()
                .take_while(|c| !matches!(c, b'\r' | b'\n'))
                .count();
            if rest[..ext]
                .iter()
                .any(|c| c.is_ascii_control() && *c != b'\t')
            {
                return false;
            }
            b = &rest[ext..];
        }
        let Some(rest) = b.strip_prefix(b"\r\n") else {
            return false;
        };
        b = rest;
        if size == 0 {
            break;
        }
        if b.len() < size {
            return false;
        }
        let Some(rest) = b[size..].strip_prefix(b"\r\n") else {
            return false;
        };
        b = rest;
    }
    loop {
        let Some(end) = b.iter().position(|c| *c == b'\n') else {
            return false;
        };
        let Some(line) = b[..end].strip_suffix(b"\r") else {
            return false;
        };
        if line.contains(&b'\r') {
            return false;
        }
        b = &b[end + 1..];
        if line.is_empty() {
            return b.is_empty();
        }
    }
}

/// The known leniencies a head used: an empty `Transfer-Encoding` field, a `Content-Length`
/// list.
fn head_leniencies(headers: &HeaderMap) -> u8 {
    let mut lenient = 0;
    if headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.as_bytes().trim_ascii().is_empty())
    {
        lenient |= TE_EMPTY_FIELD;
    }
    if headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes().contains(&b','))
    {
        lenient |= CL_LIST;
    }
    lenient
}

/// Reads `n` bytes of body.
fn own_length(n: u64, buf: &mut BytesMut, rest: &mut std::vec::IntoIter<Bytes>) -> BodyOutcome {
    while (buf.len() as u64) < n {
        match rest.next() {
            Some(piece) => buf.extend_from_slice(&piece),
            None => return BodyOutcome::Waiting,
        }
    }
    BodyOutcome::Complete(buf.split_to(n as usize).freeze(), None)
}

/// The own server leg over a connection's pieces: requests until the bytes end, a refusal, or
/// a request after which the connection is not kept open.
fn own_server(pieces: Vec<Bytes>) -> Seen<SeenRequest> {
    let mut rest = pieces.into_iter();
    let mut buf = BytesMut::new();
    let mut seen = Seen {
        messages: Vec::new(),
        refused: None,
    };
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse_request_head(&mut buf) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(e) => {
                        // As the sidecar answers it: the request path's one error mapping.
                        let e = mcp_sidecar::error::ProxyError::from(e);
                        seen.refused = Some(format!("{}: {e}", e.status()));
                        return seen;
                    }
                }
            }
            match rest.next() {
                Some(piece) => buf.extend_from_slice(&piece),
                None => return seen,
            }
        };
        let (body, chunk_lenient) = match head.framing {
            BodyFraming::Empty => (BodyOutcome::Complete(Bytes::new(), None), 0),
            BodyFraming::Length(n) => (own_length(n, &mut buf, &mut rest), 0),
            BodyFraming::Chunked => own_request_chunked(&mut buf, &mut rest),
        };
        let parts = head.parts;
        let done = !matches!(body, BodyOutcome::Complete(..)) || !head.keep_alive;
        seen.messages.push(SeenRequest {
            lenient: chunk_lenient | head_leniencies(&parts.headers),
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        });
        if done {
            return seen;
        }
    }
}

/// The own client leg over a response's pieces, the backend closing after the last one.
fn own_client(pieces: Vec<Bytes>, head_request: bool) -> Seen<SeenResponse> {
    let mut rest = pieces.into_iter();
    let mut buf = BytesMut::new();
    let mut seen = Seen {
        messages: Vec::new(),
        refused: None,
    };
    let head = loop {
        if !buf.is_empty() {
            match parse_head(&mut buf, head_request) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    seen.refused = Some(e.to_string());
                    return seen;
                }
            }
        }
        match rest.next() {
            Some(piece) => buf.extend_from_slice(&piece),
            None => {
                seen.refused = Some("closed before a complete head".into());
                return seen;
            }
        }
    };
    // The backend closes after its bytes: a body still short then is an error.
    let closed = |body| match body {
        BodyOutcome::Waiting => BodyOutcome::Refused("incomplete body".into()),
        other => other,
    };
    let (body, chunk_lenient) = match head.framing {
        Framing::Empty => (BodyOutcome::Complete(Bytes::new(), None), 0),
        Framing::Length(n) => (closed(own_length(n, &mut buf, &mut rest)), 0),
        Framing::Chunked => {
            let (body, lenient) = own_chunked(&mut buf, &mut rest);
            (closed(body), lenient)
        }
        Framing::Close => {
            for piece in rest.by_ref() {
                buf.extend_from_slice(&piece);
            }
            (BodyOutcome::Complete(buf.split().freeze(), None), 0)
        }
    };
    let parts = head.parts;
    seen.messages.push(SeenResponse {
        lenient: chunk_lenient | head_leniencies(&parts.headers),
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    });
    seen
}

// ---------------------------------------------------------------------------------------------
// hyper's legs.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// Writes `pieces` to `io`, yielding between them so the other side reads them separately.
async fn write_pieces(io: &mut DuplexStream, pieces: &[Bytes]) {
    for piece in pieces {
        if io.write_all(piece).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Collects a hyper body, `Waiting` if it needs bytes that never come.
async fn collect(body: Incoming) -> BodyOutcome {
    match tokio::time::timeout(WAIT, body.collect()).await {
        Err(_) => BodyOutcome::Waiting,
        Ok(Err(e)) => BodyOutcome::Refused(e.to_string()),
        Ok(Ok(collected)) => {
            let trailers = collected.trailers().cloned();
            BodyOutcome::Complete(collected.to_bytes(), trailers)
        }
    }
}

/// hyper's HTTP/1 server over the connection's pieces (the client never closes, as a client
/// waiting for its answer would not).
fn hyper_server(pieces: &[Bytes]) -> Seen<SeenRequest> {
    runtime().block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let record = seen.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = collect(body).await;
                record.lock().expect("lock").push(SeenRequest {
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                    lenient: 0,
                });
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
            }
        });
        let conn = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        write_pieces(&mut client, pieces).await;
        let ended = tokio::time::timeout(2 * WAIT, conn).await;
        let refused = match ended {
            Ok(Ok(Err(e))) if !e.is_incomplete_message() => Some(e.to_string()),
            _ => None,
        };
        let messages = seen.lock().expect("lock").clone();
        // hyper answers a request it cannot parse with 400 (or 431, 501...) and records none.
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(1), client.read_to_end(&mut answer)).await;
        let error_status = answer.windows(13).find_map(|w| {
            let text = std::str::from_utf8(w).ok()?;
            let code = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
            (code.starts_with('4') || code.starts_with('5')).then(|| code.to_owned())
        });
        Seen {
            messages,
            refused: refused.or(error_status),
        }
    })
}

/// hyper's HTTP/1 client sending one request and reading the response pieces, the backend
/// closing after the last.
fn hyper_client(pieces: &[Bytes], head_request: bool) -> Seen<SeenResponse> {
    runtime().block_on(async {
        let (client, mut backend) = tokio::io::duplex(1 << 20);
        let mut seen = Seen {
            messages: Vec::new(),
            refused: None,
        };
        let Ok((mut send, conn)) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(client)).await
        else {
            seen.refused = Some("handshake".into());
            return seen;
        };
        tokio::spawn(conn);
        let method = if head_request {
            Method::HEAD
        } else {
            Method::GET
        };
        let request = Request::builder()
            .method(method)
            .uri("/mcp")
            .header("host", "backend")
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let backend_side = tokio::spawn({
            let pieces = pieces.to_vec();
            async move {
                // Read the request head, then answer and close.
                let mut head = Vec::new();
                let mut byte = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match backend.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                write_pieces(&mut backend, &pieces).await;
                let _ = backend.shutdown().await;
                // Keep the read side open until the client is done with it.
                let _ = tokio::time::timeout(WAIT, backend.read_to_end(&mut head)).await;
            }
        });
        match tokio::time::timeout(WAIT, send.send_request(request)).await {
            Err(_) => seen.refused = Some("no response".into()),
            Ok(Err(e)) => seen.refused = Some(e.to_string()),
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                let body = match collect(body).await {
                    BodyOutcome::Waiting => BodyOutcome::Refused("incomplete body".into()),
                    other => other,
                };
                seen.messages.push(SeenResponse {
                    status: parts.status,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                    lenient: 0,
                });
            }
        }
        backend_side.abort();
        seen
    })
}

// ---------------------------------------------------------------------------------------------
// Generated messages.

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("\r\n"), 1 => Just("\n")]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("POST"),
        2 => Just("GET"),
        1 => Just("HEAD"),
        1 => Just("OPTIONS"),
        1 => Just("DELETE"),
        1 => Just("PUT"),
        1 => Just("MKCOL"),
        1 => Just("get"),
        1 => Just("G T"),
        1 => Just(""),
    ]
}

fn target() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("/mcp"),
        1 => Just("/"),
        1 => Just("/mcp?session=1&x=%20"),
        1 => Just("*"),
        1 => Just("http://a:8080/mcp"),
        1 => Just("a:8080"),
        1 => Just("/public/..%5cmcp"),
        1 => Just("/a\tb"),
        1 => Just("/é"),
        1 => Just("//x"),
    ]
}

fn version() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("HTTP/1.1"),
        2 => Just("HTTP/1.0"),
        1 => Just("HTTP/1.2"),
        1 => Just("HTTP/2.0"),
        1 => Just("http/1.1"),
        1 => Just("HTTP/1.1 "),
    ]
}

/// Framing fields and their obfuscations.
fn framing_field() -> impl Strategy<Value = String> {
    let te_value = prop_oneof![
        4 => Just("chunked"),
        1 => Just("Chunked"),
        1 => Just("chunked "),
        1 => Just(" chunked"),
        1 => Just("gzip, chunked"),
        1 => Just("chunked, gzip"),
        1 => Just("chunked, chunked"),
        1 => Just("identity"),
        1 => Just("identity, chunked"),
        1 => Just("chunked;q=1"),
        1 => Just("xchunked"),
        1 => Just(",chunked"),
        1 => Just("chunked\t"),
        1 => Just(""),
    ];
    let cl_value = prop_oneof![
        4 => (0u32..40).prop_map(|n| n.to_string()),
        1 => Just("007".to_owned()),
        1 => Just("+5".to_owned()),
        1 => Just("-1".to_owned()),
        1 => Just("5, 5".to_owned()),
        1 => Just("5,6".to_owned()),
        1 => Just("5 5".to_owned()),
        1 => Just("0x5".to_owned()),
        1 => Just(" 3 ".to_owned()),
        1 => Just("".to_owned()),
        1 => Just("18446744073709551616".to_owned()),
    ];
    let te_name = prop_oneof![
        6 => Just("Transfer-Encoding"),
        1 => Just("transfer-encoding"),
        1 => Just("Transfer-Encoding "),
        1 => Just("Transfer_Encoding"),
        1 => Just(" Transfer-Encoding"),
    ];
    let cl_name = prop_oneof![
        6 => Just("Content-Length"),
        1 => Just("content-length"),
        1 => Just("Content-Length "),
        1 => Just("Content_Length"),
    ];
    prop_oneof![
        (te_name, te_value).prop_map(|(n, v)| format!("{n}: {v}")),
        (cl_name, cl_value).prop_map(|(n, v)| format!("{n}: {v}")),
    ]
}

fn other_field() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("Host: a"),
        1 => Just("Host: a:8080"),
        1 => Just("Host: "),
        2 => Just("Content-Type: application/json"),
        1 => Just("Accept: application/json, text/event-stream"),
        1 => Just("Connection: close"),
        1 => Just("Connection: keep-alive"),
        1 => Just("Expect: 100-continue"),
        1 => Just("Mcp-Session-Id: 0f3e"),
        1 => Just("X-Folded: a\r\n b"),
        1 => Just("X-Ctl: a\x01b"),
        1 => Just("X-Del: a\x7fb"),
        1 => Just("X-Empty:"),
        1 => Just("Bad Name: x"),
        1 => Just(": no-name"),
        1 => Just("X-Utf8: é"),
    ]
}

/// A chunk line's end, strict or not.
fn chunk_eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("\r\n"), 1 => Just("\n"), 1 => Just("\r"), 1 => Just("\r\r\n")]
}

/// A chunked body: chunks (with size spellings and extensions, sometimes a size that does not
/// match the data), the last chunk, trailers.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    // 0 lower-case hex, 1 upper-case, 2 leading zeros, 3 leading space, 4 trailing space,
    // 5 trailing tab.
    let size_spelling = prop_oneof![6 => Just(0u8), 1 => 1u8..6];
    let extension = prop_oneof![
        6 => Just(""),
        1 => Just(";a=b"),
        1 => Just(";a"),
        1 => Just("; a = b"),
        1 => Just(";a=\"q;x\""),
        1 => Just(";\x01"),
        1 => Just(";a\rb"),
    ];
    let chunk = (
        proptest::collection::vec(any::<u8>(), 1..24),
        size_spelling,
        extension,
        chunk_eol(),
        chunk_eol(),
        prop_oneof![8 => Just(0i8), 1 => Just(1), 1 => Just(-1)],
    )
        .prop_map(|(data, spelling, ext, size_eol, data_eol, skew)| {
            let size = (data.len() as i64 + i64::from(skew)).max(0);
            let hex = match spelling {
                1 => format!("{size:X}"),
                2 => format!("000{size:x}"),
                3 => format!(" {size:x}"),
                4 => format!("{size:x} "),
                5 => format!("{size:x}\t"),
                _ => format!("{size:x}"),
            };
            let mut out = format!("{hex}{ext}{size_eol}").into_bytes();
            out.extend_from_slice(&data);
            out.extend_from_slice(data_eol.as_bytes());
            out
        });
    let trailers = prop_oneof![
        4 => Just(""),
        1 => Just("X-Checksum: 1\r\n"),
        1 => Just("X-A: 1\r\nX-B: 2\r\n"),
        1 => Just("Bad Trailer\r\n"),
    ];
    (
        proptest::collection::vec(chunk, 0..3),
        prop_oneof![6 => Just("0"), 1 => Just("00"), 1 => Just("0;x=1")],
        chunk_eol(),
        trailers,
        chunk_eol(),
    )
        .prop_map(|(chunks, last, last_eol, trailers, end)| {
            let mut out = chunks.concat();
            out.extend_from_slice(format!("{last}{last_eol}{trailers}{end}").as_bytes());
            out
        })
}

/// A body in any shape (which may or may not match the message's framing fields).
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        chunked_body(),
        proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

/// Other fields, then framing fields.
fn fields(other: impl Strategy<Value = &'static str>) -> impl Strategy<Value = Vec<String>> {
    (
        proptest::collection::vec(other, 0..4),
        proptest::collection::vec(framing_field(), 0..3),
    )
        .prop_map(|(other, framing)| {
            other
                .into_iter()
                .map(str::to_owned)
                .chain(framing)
                .collect()
        })
}

/// A message: start line, fields, body.
fn message(start: String, eol: &str, fields: Vec<String>, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{start}{eol}").into_bytes();
    for field in fields {
        out.extend_from_slice(format!("{field}{eol}").as_bytes());
    }
    out.extend_from_slice(eol.as_bytes());
    out.extend_from_slice(body);
    out
}

/// One request.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        target(),
        version(),
        line_end(),
        fields(other_field()),
        any_body(),
    )
        .prop_map(|(method, target, version, eol, fields, body)| {
            message(format!("{method} {target} {version}"), eol, fields, &body)
        })
}

/// A connection's bytes: one or two requests (the second tests where the first one ended),
/// and where the client's writes were cut.
fn connection() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (
        proptest::collection::vec(request(), 1..3),
        proptest::collection::vec(0usize..400, 0..4),
    )
        .prop_map(|(requests, mut cuts)| {
            cuts.sort_unstable();
            (requests.concat(), cuts)
        })
}

/// A response (after interim 1xx ones, sometimes), where the backend's writes were cut, and
/// whether it answers a HEAD.
fn response() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, bool)> {
    let status = prop_oneof![
        6 => Just("200 OK"),
        1 => Just("202 Accepted"),
        1 => Just("204 No Content"),
        1 => Just("304 Not Modified"),
        1 => Just("401 Unauthorized"),
        1 => Just("502 Bad Gateway"),
        1 => Just("200"),
        1 => Just("99 Odd"),
        1 => Just("2000 OK"),
    ];
    let version = prop_oneof![6 => Just("HTTP/1.1"), 2 => Just("HTTP/1.0"), 1 => Just("HTTP/2")];
    let interim = prop_oneof![
        6 => Just(""),
        1 => Just("HTTP/1.1 100 Continue\r\n\r\n"),
        1 => Just("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
    ];
    let other = prop_oneof![
        Just("Content-Type: text/event-stream"),
        Just("Connection: close"),
        Just("Connection: keep-alive"),
        Just("X-Folded: a\r\n b"),
        Just("X-Ctl: a\x01b"),
        Just("Mcp-Session-Id: s"),
    ];
    (
        interim,
        version,
        status,
        line_end(),
        fields(other),
        any_body(),
        proptest::collection::vec(0usize..300, 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(interim, version, status, eol, fields, body, mut cuts, head_request)| {
                let mut out = interim.as_bytes().to_vec();
                out.extend(message(format!("{version} {status}"), eol, fields, &body));
                cuts.sort_unstable();
                (out, cuts, head_request)
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The comparisons.

/// Chunk syntax hyper refuses and the client leg's chunked decoder accepts (outside the strict
/// grammar of [`strict_chunked`]): a bare LF or CR as a chunk line's end, a space before the
/// size, a CR or control byte in an extension, a trailer line without CR. Only on responses,
/// by design (the backend is trusted, and the body is re-framed for the client); the server
/// leg's request decoder refuses all of it.
const LENIENT_CHUNK: u8 = 1;
/// `Content-Length: 5, 5` (a list of identical values): RFC 9110 §8.6 lets a recipient accept
/// it as `5`; hyper's server refuses it, the own server leg accepts it.
const CL_LIST: u8 = 2;
/// A `Transfer-Encoding` field with an empty value beside `chunked`: an empty list element,
/// ignored by the own legs (RFC 9110 §5.6.1), while hyper reads the last field as the coding.
const TE_EMPTY_FIELD: u8 = 4;

/// What the own server leg may accept where hyper's server does not: nothing (issue 14,
/// finding 6 made the request side at least as strict as hyper's).
const REQUEST_LENIENCIES: u8 = 0;
/// What the own client leg may accept where hyper's client does not, by design.
const RESPONSE_LENIENCIES: u8 = LENIENT_CHUNK | TE_EMPTY_FIELD;

/// Differences that are not framing decisions: hyper's server keeps one of several
/// `Content-Length` fields of the same number, the own client leg drops a `Content-Length` that `Transfer-Encoding`
/// overrides (RFC 9112 §6.3; never passed on), and hyper reports an empty trailer section as
/// empty trailers where the own decoder reports none.
fn normalise(headers: &mut HeaderMap, body: &mut BodyOutcome) {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let lengths: Vec<_> = headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()))
        .collect();
    if lengths.len() > 1 && lengths[0].is_some() && lengths.iter().all(|l| *l == lengths[0]) {
        let first = headers.get(http::header::CONTENT_LENGTH).cloned();
        if let Some(first) = first {
            headers.insert(http::header::CONTENT_LENGTH, first);
        }
    }
    if let BodyOutcome::Complete(_, trailers) = body
        && trailers.as_ref().is_some_and(HeaderMap::is_empty)
    {
        *trailers = None;
    }
}

/// A message as compared: head fields and body, normalised.
trait Message: PartialEq + std::fmt::Debug + Clone {
    fn body(&self) -> &BodyOutcome;
    /// The known leniencies the own leg used (past one, the legs' framing may part ways, so
    /// the rest of the connection is not compared).
    fn lenient(&self) -> u8;
    /// Normalised, without the leniency record.
    fn normalised(&self) -> Self;
}

impl Message for SeenRequest {
    fn body(&self) -> &BodyOutcome {
        &self.body
    }
    fn lenient(&self) -> u8 {
        self.lenient
    }
    fn normalised(&self) -> Self {
        let mut m = self.clone();
        normalise(&mut m.headers, &mut m.body);
        m.lenient = 0;
        m
    }
}

impl Message for SeenResponse {
    fn body(&self) -> &BodyOutcome {
        &self.body
    }
    fn lenient(&self) -> u8 {
        self.lenient
    }
    fn normalised(&self) -> Self {
        let mut m = self.clone();
        normalise(&mut m.headers, &mut m.body);
        m.lenient = 0;
        m
    }
}

/// The own leg's messages must be hyper's, message by message, up to where the own leg stops
/// (a refusal, or a body it is still waiting for while hyper refused it). Where the own leg
/// accepts what hyper does not, or both accept with different results, the case fails unless
/// the own leg's acceptance used one of the `excused` leniencies.
fn compare<M: Message>(
    raw: &[u8],
    own: &Seen<M>,
    hyper: &Seen<M>,
    excused: u8,
) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(raw);
    for (i, mine) in own.messages.iter().enumerate() {
        if let BodyOutcome::Refused(_) = mine.body() {
            // Refused part-way: what came before matched; the rest is the own leg's refusal.
            return Ok(());
        }
        let known = mine.lenient() & excused != 0;
        let Some(theirs) = hyper.messages.get(i) else {
            if matches!(mine.body(), BodyOutcome::Waiting) || known {
                // Still reading, so accepted nothing yet; or a listed leniency.
                return Ok(());
            }
            return Err(TestCaseError::fail(format!(
                "the own leg accepted message {i} that hyper refused ({:?}):\n{shown:?}\nown: {mine:?}",
                hyper.refused
            )));
        };
        let (mine, theirs) = (mine.normalised(), theirs.normalised());
        if mine == theirs && !known {
            continue;
        }
        // Waiting on the own side and refused by hyper is no acceptance.
        let waiting_refused = matches!(mine.body(), BodyOutcome::Waiting)
            && matches!(theirs.body(), BodyOutcome::Refused(_));
        if waiting_refused || known {
            return Ok(());
        }
        return Err(TestCaseError::fail(format!(
            "message {i} differs:\n{shown:?}\nown:   {mine:?}\nhyper: {theirs:?}"
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every generated request connection: the own server leg (any split) frames each request
    /// as hyper's HTTP/1 server does, or refuses it.
    #[test]
    fn server_leg_frames_requests_as_hyper_does_or_refuses((raw, cuts) in connection()) {
        let own = own_server(pieces(&raw, &cuts));
        let whole = own_server(vec![Bytes::copy_from_slice(&raw)]);
        prop_assert_eq!(&own, &whole, "the own leg depends on the split: {:?}", String::from_utf8_lossy(&raw));
        let hyper = hyper_server(&pieces(&raw, &cuts));
        compare(&raw, &own, &hyper, REQUEST_LENIENCIES)?;
    }

    /// Every generated response: the own client leg (any split) frames it as hyper's HTTP/1
    /// client does, or refuses it.
    #[test]
    fn client_leg_frames_responses_as_hyper_does_or_refuses((raw, cuts, head_request) in response()) {
        let own = own_client(pieces(&raw, &cuts), head_request);
        let whole = own_client(vec![Bytes::copy_from_slice(&raw)], head_request);
        prop_assert_eq!(&own, &whole, "the own leg depends on the split: {:?}", String::from_utf8_lossy(&raw));
        let hyper = hyper_client(&pieces(&raw, &cuts), head_request);
        compare(&raw, &own, &hyper, RESPONSE_LENIENCIES)?;
    }
}
