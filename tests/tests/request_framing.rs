//! Request framing through the real sidecar, byte by byte: what the server leg refuses that a
//! lenient parser would have framed (and forwarded) differently. Each refusal names the problem,
//! closes the connection, and never reaches the backend. Every read is bounded: before these
//! rules, a chunk size of 2^64 - 1 left the request waiting for its data. And the one framing
//! rule of the client leg that changed: an HTTP/1.0 response with `Transfer-Encoding` is a 502.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{call, config, start, upstream};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status and body of the one answer to `request`, the client's side left open (so the answer
/// cannot be prompted by an end of stream); `None` if none arrives within 10 s.
async fn answer(addr: std::net::SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .map_or(0, |v| v.parse().unwrap());
                if body.len() >= length || n == 0 {
                    return (head[9..12].parse().unwrap(), body.to_owned());
                }
            }
            assert!(n > 0, "closed without an answer: {text:?}");
        }
    })
    .await
    .ok()
}

fn chunked_post(extra: &str, chunks: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{extra}\r\n{chunks}"
    )
    .into_bytes()
}

#[tokio::test]
async fn lenient_request_framing_is_refused_and_never_reaches_the_backend() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let mut cfg = config(vec![upstream(backend.mcp_url(), None)]);
    cfg.listen.max_body_bytes = 1024;
    let sidecar = start(cfg).await;
    let body = call(1, "echo", json!({"text": "x"}));
    let te = "transfer-encoding: chunked\r\n";
    let one_chunk = |size_line: &str| format!("{size_line}{body}\r\n0\r\n\r\n");
    let size = format!("{:x}", body.len());
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "chunk size of 2^64-1",
            chunked_post(te, "ffffffffffffffff\r\n"),
            413,
            "payload_too_large",
            "1024-byte limit",
        ),
        (
            "chunk size with a leading space",
            chunked_post(te, &one_chunk(&format!(" {size}\r\n"))),
            400,
            "bad_request",
            "does not start with a hex digit",
        ),
        (
            "bare LF after the chunk size",
            chunked_post(te, &one_chunk(&format!("{size}\n"))),
            400,
            "bad_request",
            "bare LF",
        ),
        (
            "bad bytes in a chunk extension",
            chunked_post(te, &one_chunk(&format!("{size};a b\r\n"))),
            400,
            "bad_request",
            "chunk extension",
        ),
        (
            "gzip, chunked",
            chunked_post("transfer-encoding: gzip, chunked\r\n", &one_chunk(&format!("{size}\r\n"))),
            501,
            "unsupported_transfer_coding",
            "`gzip`",
        ),
        (
            "chunked twice",
            chunked_post(&format!("{te}{te}"), &one_chunk(&format!("{size}\r\n"))),
            400,
            "bad_request",
            "more than once",
        ),
        (
            "two Host fields",
            chunked_post(&format!("host: evil.example\r\n{te}"), &one_chunk(&format!("{size}\r\n"))),
            400,
            "bad_request",
            "more than one Host",
        ),
        (
            "no Host field",
            format!("POST /mcp HTTP/1.1\r\ncontent-type: application/json\r\n{te}\r\n{}", one_chunk(&format!("{size}\r\n"))).into_bytes(),
            400,
            "bad_request",
            "no Host",
        ),
        (
            "absolute-form target for another host",
            format!("POST http://evil.example/mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{te}\r\n{}", one_chunk(&format!("{size}\r\n"))).into_bytes(),
            400,
            "bad_request",
            "differs from Host",
        ),
    ];
    for (what, request, want_status, reason, says) in cases {
        let (status, body) = answer(sidecar.addr, &request)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer within 10 s"));
        assert_eq!(status, want_status, "{what}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["data"]["reason"], reason, "{what}: {body}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{what}: {message}");
    }
    assert_eq!(backend.stats().http_requests_total, 0);
    // A strict, well-formed chunked request still goes through.
    let (status, body) = answer(
        sidecar.addr,
        &chunked_post(te, &one_chunk(&format!("{size};ext=\"v\"\r\n"))),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_http_1_0_response_with_transfer_encoding_is_a_502_not_relayed() {
    // RFC 9112 §6.1: faulty framing. Before, the body was relayed raw, read to the close.
    let backend = mcp_fixtures::RawBackend::start().await.unwrap();
    backend.set_answer(
        &b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\
           transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"[..],
    );
    let addr = backend.addr();
    let sidecar = start(config(vec![upstream(format!("http://{addr}/mcp"), None)])).await;
    let resp = mcp_e2e_tests::post(&sidecar, "/mcp", call(7, "echo", json!({"text": "x"}))).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["data"]["reason"], "upstream_failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP/1.0"), "{message}");
}
