//! How the sidecar reads what a client sends, spoken to byte by byte: a request refused from its
//! head never invites the upload (`Expect: 100-continue`), the protocol of a plain connection is
//! decided on complete evidence whatever the TCP segmentation, and a request body that stalls or
//! trickles is answered 408 and frees its slot. Time-dependent cases run on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::raw::{closes_within, field, read_answer};
use mcp_e2e_tests::{RunningSidecar, call, start};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API_KEY: &str = "client-reads-key-0123456789";

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Json,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// A sidecar in front of `backend` at `/mcp`: `listen` goes into `[listen]`, `extra` before
/// `[[upstream]]`.
async fn sidecar(backend: &FixtureServer, listen: &str, extra: &str) -> RunningSidecar {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{listen}[admin]\naddr = \"127.0.0.1:0\"\n{extra}\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n",
        backend.mcp_url()
    );
    let lookup = |name: &str| (name == "CLIENT_READS_KEY").then(|| API_KEY.to_owned());
    start(Config::from_toml_with_env(&text, &lookup).unwrap()).await
}

/// A POST of `body` to `/mcp` with a length, as MCP clients send it.
fn post(body: &str, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

// --- Finding 4: a request refused from its head never gets `100 Continue` ---

#[tokio::test]
async fn an_unauthenticated_upload_waiting_for_100_continue_gets_401_and_no_continue() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "",
        "[auth]\npublic_url = \"https://mcp.example.test\"\n\
         [[auth.api_keys]]\nid = \"ci\"\nkey = \"${CLIENT_READS_KEY}\"\n",
    )
    .await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let head = post("", "expect: 100-continue\r\n").replace(
        "content-length: 0",
        &format!("content-length: {}", call(1, "echo", json!({})).len()),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 401", "refused before any 100 Continue");
    assert_eq!(
        backend.stats().http_requests_total,
        0,
        "nothing reached the backend"
    );
}

/// Every refusal decided from the head: none of them may send `100 Continue` first.
#[tokio::test]
async fn refusals_decided_from_the_head_never_send_100_continue() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "",
        "[auth]\npublic_url = \"https://mcp.example.test\"\nallowed_hosts = [\"localhost\"]\nallowed_origins = [\"http://localhost\"]\n\
         [[auth.api_keys]]\nid = \"ci\"\nkey = \"${CLIENT_READS_KEY}\"\n",
    )
    .await;
    let auth = format!("authorization: Bearer {API_KEY}\r\n");
    let big = "content-length: 10000000\r\n";
    let cases = [
        // The control: an accepted request is invited to upload.
        (
            format!("POST /mcp HTTP/1.1\r\nhost: localhost\r\n{auth}content-length: 40\r\n"),
            100,
        ),
        (
            format!("POST /mcp HTTP/1.1\r\nhost: localhost\r\n{auth}{big}"),
            413,
        ),
        (
            format!("PUT /mcp HTTP/1.1\r\nhost: localhost\r\n{auth}{big}"),
            405,
        ),
        (
            format!("POST /nowhere HTTP/1.1\r\nhost: localhost\r\n{big}"),
            404,
        ),
        (
            format!("POST /mcp HTTP/1.1\r\nhost: evil.test\r\n{auth}{big}"),
            421,
        ),
        (
            format!(
                "POST /mcp HTTP/1.1\r\nhost: localhost\r\norigin: http://evil.test\r\n{auth}{big}"
            ),
            403,
        ),
        (
            format!("POST /mcp HTTP/1.1\r\nhost: localhost\r\n{big}"),
            401,
        ),
        (
            "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 40\r\n".to_owned(),
            401,
        ),
    ];
    for (head, status) in cases {
        let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
        s.write_all(format!("{head}expect: 100-continue\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            format!("HTTP/1.1 {status}"),
            "{head}"
        );
        if status != 100 {
            assert!(
                closes_within(&mut s, Duration::from_secs(5)).await,
                "{head}"
            );
        }
    }
    assert_eq!(
        backend.stats().http_requests_total,
        0,
        "nothing reached the backend"
    );
}

// --- Finding 5: the protocol of a plain connection does not depend on TCP segmentation ---

/// The HTTP/2 prior-knowledge preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Sends `request` in two writes split at `at` (whole when `at` is 0), the second after the
/// sidecar has read the first, and returns the status of the answer.
async fn status_when_split(sidecar: &RunningSidecar, request: &str, at: usize) -> Option<u16> {
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let (first, rest) = request.as_bytes().split_at(at);
    if !first.is_empty() {
        s.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.write_all(rest).await.unwrap();
    read_answer(&mut s).await.map(|(status, _, _)| status)
}

#[tokio::test(start_paused = true)]
async fn the_same_request_bytes_get_the_same_answer_however_they_are_split() {
    let backend = fixture().await;
    let sidecar = sidecar(&backend, "", "").await;
    let body = call(1, "echo", json!({"text": "x"}));
    let requests = [
        // Accepted, whichever parser reads it.
        post(&body, ""),
        // Refused by the sidecar's own HTTP/1 reader (417), which every HTTP/1 request must meet.
        post(&body, "expect: something-else\r\n"),
        // A request line that starts like the HTTP/2 preface but is HTTP/1.
        "PRI /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n".to_owned(),
    ];
    for request in &requests {
        let whole = status_when_split(&sidecar, request, 0).await;
        assert!(whole.is_some(), "{request}");
        for at in 1..=4 {
            assert_eq!(
                status_when_split(&sidecar, request, at).await,
                whole,
                "split after {at} bytes: {request}"
            );
        }
    }
}

/// Writes through to the socket, except that the first `skip` bytes are taken as already sent
/// (the test wrote them itself, in pieces).
struct SkipFirstWrites {
    io: TcpStream,
    skip: usize,
}

impl tokio::io::AsyncRead for SkipFirstWrites {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SkipFirstWrites {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            self.skip -= n;
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn an_h2c_client_whose_preface_arrives_in_pieces_is_served_over_http2() {
    use http_body_util::BodyExt;
    let backend = fixture().await;
    let sidecar = sidecar(&backend, "", "").await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    // The preface in three segments, each read by the sidecar before the next is sent.
    for piece in [&H2_PREFACE[..1], &H2_PREFACE[1..3], &H2_PREFACE[3..16]] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let io = SkipFirstWrites { io: s, skip: 16 };
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(http_body_util::Full::new(bytes::Bytes::from(call(
            7,
            "echo",
            json!({"text": "over h2c"}),
        ))))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("over h2c"));
}

#[tokio::test(start_paused = true)]
async fn a_partial_h2_preface_then_silence_is_closed_at_the_header_read_timeout() {
    let backend = fixture().await;
    let sidecar = sidecar(&backend, "header_read_timeout = \"3s\"\n", "").await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let from = tokio::time::Instant::now();
    s.write_all(&H2_PREFACE[..16]).await.unwrap();
    assert!(
        closes_within(&mut s, Duration::from_secs(60)).await,
        "closed"
    );
    let after = from.elapsed();
    assert!(
        after >= Duration::from_secs(3) && after < Duration::from_secs(4),
        "closed after {after:?}"
    );
}

// --- Finding 3: a request body that stalls or trickles is answered 408 and frees its slot ---

/// A sidecar with one in-flight slot and a 5 s body read timeout; `listen` adds to `[listen]`.
async fn one_slot_sidecar(backend: &FixtureServer, listen: &str) -> RunningSidecar {
    sidecar(
        backend,
        &format!("body_read_timeout = \"5s\"\n{listen}"),
        "[limits]\nmax_in_flight = 1\n",
    )
    .await
}

/// A POST head announcing 46 body bytes, sent without them.
const STALLED_HEAD: &str = "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
     accept: application/json, text/event-stream\r\ncontent-length: 46\r\n\r\n";

async fn in_flight(sidecar: &RunningSidecar) -> Option<f64> {
    mcp_e2e_tests::metric_value(&sidecar.metrics().await, "mcp_sidecar_in_flight")
}

async fn post_status(sidecar: &RunningSidecar) -> u16 {
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(post(&call(9, "echo", json!({"text": "x"})), "").as_bytes())
        .await
        .unwrap();
    read_answer(&mut s).await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_is_answered_408_and_frees_its_in_flight_slot() {
    let backend = fixture().await;
    let sidecar = one_slot_sidecar(&backend, "").await;
    let mut stalled = TcpStream::connect(sidecar.addr).await.unwrap();
    let from = tokio::time::Instant::now();
    stalled.write_all(STALLED_HEAD.as_bytes()).await.unwrap();
    for _ in 0..50 {
        if in_flight(&sidecar).await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        post_status(&sidecar).await,
        503,
        "the stalled body holds the slot"
    );
    let (status, fields, body) =
        tokio::time::timeout(Duration::from_secs(120), read_answer(&mut stalled))
            .await
            .expect("the stalled request is answered")
            .expect("an answer, not a bare close");
    let after = from.elapsed();
    assert_eq!(status, 408, "{body}");
    assert!(
        after >= Duration::from_secs(5) && after < Duration::from_secs(6),
        "answered after {after:?}"
    );
    assert_eq!(field(&fields, "connection"), Some("close"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["data"]["reason"], "request_body_timeout");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("listen.body_read_timeout"),
        "{body}"
    );
    assert!(closes_within(&mut stalled, Duration::from_secs(5)).await);
    assert_eq!(in_flight(&sidecar).await, Some(0.0), "the slot is free");
    assert_eq!(post_status(&sidecar).await, 200);
    assert_eq!(
        backend.stats().http_requests_total,
        1,
        "only the good request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickled_request_body_is_cut_by_the_minimum_rate() {
    let backend = fixture().await;
    // 5 s of grace plus one second per byte: a byte every 4 s, each inside the idle timeout,
    // earns one second, so the allowance ends at 6 s, before the second byte.
    let sidecar = one_slot_sidecar(&backend, "body_min_rate = 1\n").await;
    let s = TcpStream::connect(sidecar.addr).await.unwrap();
    let from = tokio::time::Instant::now();
    let (mut read, mut write) = s.into_split();
    write.write_all(STALLED_HEAD.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..46 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(300), read_answer(&mut read))
        .await
        .expect("answered before the body could end")
        .expect("an answer");
    let after = from.elapsed();
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("listen.body_min_rate"), "{body}");
    assert!(after == Duration::from_secs(6), "cut after {after:?}");
    trickle.abort();
    assert_eq!(post_status(&sidecar).await, 200, "the slot is free");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_http2_request_body_is_answered_408() {
    let backend = fixture().await;
    let sidecar = one_slot_sidecar(&backend, "").await;
    let s = TcpStream::connect(sidecar.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // A body that never sends a byte (the sender is kept, so it never ends either).
    let (_tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>(1);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let request = http::Request::post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(120), send.send_request(request))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(response.status(), 408);
    assert_eq!(post_status(&sidecar).await, 200, "the slot is free");
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_waits_for_a_stalled_body_no_longer_than_the_body_read_timeout() {
    let backend = fixture().await;
    let mut sidecar = one_slot_sidecar(&backend, "").await;
    let mut stalled = TcpStream::connect(sidecar.addr).await.unwrap();
    stalled.write_all(STALLED_HEAD.as_bytes()).await.unwrap();
    for _ in 0..50 {
        if in_flight(&sidecar).await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let from = tokio::time::Instant::now();
    sidecar.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(20), &mut sidecar.task)
        .await
        .expect("serve returns before the 30 s grace period")
        .unwrap();
    // 408 at 5 s, then up to 2 s lingering (reading what the client may still send) before
    // the close, so the answer is not lost to a reset.
    assert!(
        from.elapsed() <= Duration::from_secs(7),
        "{:?}",
        from.elapsed()
    );
    let (status, fields, _) = read_answer(&mut stalled).await.unwrap();
    assert_eq!(status, 408);
    assert_eq!(field(&fields, "connection"), Some("close"));
}

/// A stream of what `rx` receives.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_that_stalls_is_408_and_never_counts_against_the_backend() {
    let backend = fixture().await;
    // One failure would open the circuit: the stall must not be one.
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nbody_read_timeout = \"5s\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n\
         [upstream.breaker]\nconsecutive_failures = 1\n",
        backend.mcp_url()
    );
    let sidecar = start(Config::from_toml_with_env(&text, &|_: &str| None).unwrap()).await;
    // A DELETE body is streamed to the backend, not read first like a POST's.
    let mut stalled = TcpStream::connect(sidecar.addr).await.unwrap();
    stalled
        .write_all(b"DELETE /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(120), read_answer(&mut stalled))
            .await
            .expect("the stalled request is answered")
            .expect("an answer, not a bare close");
    assert_eq!(status, 408, "{body}");
    let metrics = sidecar.metrics().await;
    assert_eq!(
        mcp_e2e_tests::metric_value(
            &metrics,
            "mcp_sidecar_breaker_state{tool=\"\",upstream=\"u\"}"
        ),
        Some(0.0),
        "the circuit stays closed"
    );
    assert!(
        !metrics.contains("mcp_sidecar_upstream_failures_total{"),
        "no upstream failure counted:\n{metrics}"
    );
    assert_eq!(post_status(&sidecar).await, 200);
}
