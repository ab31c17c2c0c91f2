//! The sidecar's own HTTP/1 server leg, spoken to byte by byte: keep-alive and pipelining,
//! chunked and `Expect: 100-continue` uploads, unread bodies, refused heads, HTTP/1.0, idle
//! timeouts and graceful shutdown, with the fixture MCP server behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::raw::{closes_within, field, read_answer_buffered};
use mcp_e2e_tests::{call, config, start, upstream};
use mcp_fixtures::FixtureServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn fixture() -> FixtureServer {
    mcp_e2e_tests::json_fixture().await
}

/// A POST of `body` to `/mcp` with a length, as MCP clients send it.
fn post(body: &str, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn echoed(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let both = format!(
        "{}{}",
        post(&call(1, "echo", json!({"text": "first"})), ""),
        post(&call(2, "echo", json!({"text": "second"})), "")
    );
    s.write_all(both.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (status, fields, body) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!((status, echoed(&body).as_str()), (200, "first"));
    assert!(field(&fields, "x-request-id").is_some());
    assert!(field(&fields, "date").is_some());
    let (status, _, body) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!((status, echoed(&body).as_str()), (200, "second"));
    // Still open: a third request on the same connection.
    s.write_all(post(&call(3, "echo", json!({"text": "third"})), "").as_bytes())
        .await
        .unwrap();
    let (_, _, body) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!(echoed(&body), "third");
    assert_eq!(backend.stats().by_tool["echo"], 3);
}

#[tokio::test]
async fn a_chunked_upload_sent_in_pieces_is_forwarded_whole() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let body = call(4, "echo", json!({"text": "in pieces"}));
    let (a, b) = body.split_at(10);
    s.write_all(
        b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          accept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    s.write_all(format!("{:x}\r\n{a}\r\n", a.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(format!("{:x};ext=1\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, _, answer) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(echoed(&answer), "in pieces");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let body = call(5, "echo", json!({"text": "after continue"}));
    let request = post(&body, "expect: 100-continue\r\n");
    let head = &request[..request.len() - body.len()];
    s.write_all(head.as_bytes()).await.unwrap();
    let mut interim = vec![0u8; 25];
    s.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim[..], b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (status, _, answer) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!((status, echoed(&answer).as_str()), (200, "after continue"));
}

#[tokio::test]
async fn a_body_left_unread_is_drained_and_the_connection_reused() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    // No route: answered from the head, before the 64 KiB body is read.
    let big = "x".repeat(64 * 1024);
    let request = format!(
        "POST /elsewhere HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{big}",
        big.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (status, fields, _) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(field(&fields, "connection"), None, "kept alive: {fields:?}");
    s.write_all(post(&call(6, "echo", json!({"text": "next"})), "").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!((status, echoed(&body).as_str()), (200, "next"));
}

#[tokio::test]
async fn an_unread_body_over_the_drain_limit_closes_the_connection_after_the_answer() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    // 2 MiB announced, a little sent: draining it would cost more than a new connection.
    let length = 2 * mcp_sidecar::downstream::MAX_DRAIN_BYTES;
    s.write_all(
        format!(
            "POST /elsewhere HTTP/1.1\r\nhost: localhost\r\ncontent-length: {length}\r\n\r\nxxxx"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (status, fields, _) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(field(&fields, "connection"), Some("close"));
    assert!(closes_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_client_still_waiting_for_100_continue_gets_the_refusal_and_a_close() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(b"POST /elsewhere HTTP/1.1\r\nhost: localhost\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, fields, _) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!(status, 404, "no 100 Continue first");
    assert_eq!(field(&fields, "connection"), Some("close"));
    assert!(closes_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn unreadable_heads_get_a_json_error_naming_the_problem_and_a_close() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let many: String = (0..150).map(|i| format!("x-{i}: v\r\n")).collect();
    let cases = [
        (
            "POST /mcp HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
            400,
            "bad_request",
            "both Transfer-Encoding and Content-Length",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "bad_request", "malformed request head"),
        (
            format!("GET /mcp HTTP/1.1\r\n{many}\r\n"),
            431,
            "request_head_too_large",
            "100 header fields",
        ),
        (
            "POST /mcp HTTP/1.1\r\nhost: a\r\nexpect: teapot\r\n\r\n".to_owned(),
            417,
            "expectation_failed",
            "teapot",
        ),
    ];
    for (request, want_status, reason, says) in cases {
        let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let (status, fields, body) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
        assert_eq!(status, want_status, "{request:?}: {body}");
        assert_eq!(field(&fields, "connection"), Some("close"));
        assert_eq!(field(&fields, "content-type"), Some("application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["data"]["reason"], reason);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
        assert!(closes_within(&mut s, Duration::from_secs(5)).await);
    }
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_proxy_errors_total{reason="request_head_too_large"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn http_1_0_clients_are_answered_and_closed_unless_they_ask_for_keep_alive() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let body = call(7, "echo", json!({"text": "old"}));
    let request = post(&body, "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (status, fields, answer) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
    assert_eq!((status, echoed(&answer).as_str()), (200, "old"));
    assert_eq!(field(&fields, "connection"), Some("close"));
    assert!(closes_within(&mut s, Duration::from_secs(5)).await);

    let keep = post(&body, "connection: keep-alive\r\n").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(format!("{keep}{keep}").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let (status, fields, _) = read_answer_buffered(&mut s, &mut buf).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(field(&fields, "connection"), Some("keep-alive"));
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let backend = fixture().await;
    let mut c = config(vec![upstream(backend.mcp_url(), None)]);
    c.listen.header_read_timeout = Duration::from_secs(3);
    let sidecar = start(c).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    let mut buf = Vec::new();
    // Requests spaced 2 s apart: each waits less than the timeout, the sum more.
    for i in 0..3 {
        s.write_all(post(&call(i, "echo", json!({"text": "x"})), "").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_answer_buffered(&mut s, &mut buf).await.unwrap().0, 200);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let idle_from = tokio::time::Instant::now();
    assert!(
        read_answer_buffered(&mut s, &mut buf).await.is_none(),
        "closed, no answer"
    );
    let idle = idle_from.elapsed() + Duration::from_secs(2);
    assert!(
        idle >= Duration::from_secs(3) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle"
    );
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_busy_one_finish_with_close() {
    let backend = fixture().await;
    let mut sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let mut idle = TcpStream::connect(sidecar.addr).await.unwrap();
    let mut buf = Vec::new();
    idle.write_all(post(&call(1, "echo", json!({"text": "x"})), "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_answer_buffered(&mut idle, &mut buf).await.unwrap().0,
        200
    );
    let mut busy = TcpStream::connect(sidecar.addr).await.unwrap();
    busy.write_all(post(&call(2, "sleep", json!({"ms": 500})), "").as_bytes())
        .await
        .unwrap();
    mcp_e2e_tests::eventually("the sleep reached the backend", || {
        backend.stats().in_flight == 1
    })
    .await;
    sidecar.begin_shutdown();
    assert!(
        closes_within(&mut idle, Duration::from_secs(2)).await,
        "the idle connection closes at once"
    );
    let mut buf = Vec::new();
    let (status, fields, body) = read_answer_buffered(&mut busy, &mut buf).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(field(&fields, "connection"), Some("close"));
    assert!(closes_within(&mut busy, Duration::from_secs(2)).await);
    tokio::time::timeout(Duration::from_secs(5), sidecar.task)
        .await
        .expect("serve returns once both are gone")
        .unwrap();
}
