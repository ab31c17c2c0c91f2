//! Standing streams (issue 14, finding 9): a standalone GET SSE stream and a 2026-07-28
//! `subscriptions/listen` stream are silent whenever the server has nothing to say, so the
//! backend idle timeout must not cut them; they live as long as both ends do. Answers a client
//! waits for keep the idle timeout. All on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use mcp_e2e_tests::{ACCEPT_BOTH, EventReader, client, config, eventually, rpc, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Longer than the default `stream_idle_timeout` (300 s): the silence the issue saw cut.
const SILENCE: Duration = Duration::from_secs(400);
/// The idle timeout the tests configure, so a wrongly applied one would cut at 30 s.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Json,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// A backend that answers every POST 200 with `content_type`, sends `first` at once, stays silent
/// for [`SILENCE`], then sends `last` and ends the stream (chunked: no length).
async fn quiet_backend(
    content_type: &'static str,
    first: &'static str,
    last: &'static str,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the sidecar's reachability check and the test's requests.
        for _ in 0..32 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(move |_req| async move {
                let first = futures_util::stream::once(async move {
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(first.as_bytes())))
                });
                let last = futures_util::stream::once(async move {
                    tokio::time::sleep(SILENCE).await;
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(last.as_bytes())))
                });
                let body = StreamBody::new(futures_util::StreamExt::chain(first, last));
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", content_type)
                        .body(body)
                        .unwrap(),
                )
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(start_paused = true)]
async fn a_silent_get_stream_outlives_the_idle_timeout_and_delivers_a_later_event() {
    let backend = fixture().await;
    let mut up = upstream(backend.mcp_url(), None);
    up.sse_keepalive = Duration::from_secs(15);
    up.stream_idle_timeout = IDLE_TIMEOUT;
    let sidecar = start(config(vec![up])).await;
    let start_at = Instant::now();
    // One notification after 400 s of silence.
    let resp = client()
        .get(sidecar.url(&format!("/mcp?tick_ms={}&count=1", SILENCE.as_millis())))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    let mut keepalives = 0;
    let event = loop {
        match events.next().await.unwrap() {
            Some(comment) if comment == ": keepalive" => keepalives += 1,
            other => break other,
        }
    };
    let event = event.expect("the stream is still open after 400 s of silence");
    assert!(event.contains("notifications/message"), "{event}");
    assert!(start_at.elapsed() >= SILENCE);
    // The client side was kept alive all along.
    assert!(keepalives >= 26, "{keepalives} keepalives");
    assert_eq!(backend.stats().get_streams_open, 1);
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_timeouts_total{kind="stream_idle",upstream="u"} 0"#),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_listen_stream_outlives_the_idle_timeout_whether_sse_or_chunked_json() {
    let ack =
        r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}"#;
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{}}"#;
    let sse_ack: &'static str = format!("data: {ack}\n\n").leak();
    let sse_changed: &'static str = format!("data: {changed}\n\n").leak();
    for (content_type, first, last) in [
        ("text/event-stream", sse_ack, sse_changed),
        ("application/json", ack, changed),
    ] {
        let addr = quiet_backend(content_type, first, last).await;
        let mut up = upstream(format!("http://{addr}/mcp"), None);
        up.stream_idle_timeout = IDLE_TIMEOUT;
        let sidecar = start(config(vec![up])).await;
        let start_at = Instant::now();
        let listen = rpc(
            1,
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        );
        let resp = client()
            .post(sidecar.url("/mcp"))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(listen)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content_type}");
        let body = resp.text().await;
        let body = body.unwrap_or_else(|e| panic!("{content_type}: stream cut: {e}"));
        assert!(start_at.elapsed() >= SILENCE, "{content_type}");
        // SSE gets keepalive comments between the events; JSON cannot take any.
        let events: String = body
            .split_inclusive("\n\n")
            .filter(|e| !e.starts_with(':'))
            .collect();
        assert_eq!(events, format!("{first}{last}"), "{content_type}");
        if content_type == "application/json" {
            assert_eq!(body, format!("{first}{last}"));
        }
        sidecar.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_answer_to_a_tool_call_is_still_cut_at_the_idle_timeout() {
    let addr = quiet_backend("text/event-stream", ": working\n\n", "data: {}\n\n").await;
    let mut up = upstream(format!("http://{addr}/mcp"), None);
    up.stream_idle_timeout = IDLE_TIMEOUT;
    let sidecar = start(config(vec![up])).await;
    let start_at = Instant::now();
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(mcp_e2e_tests::call(1, "slow", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    let end = loop {
        match events.next().await {
            Ok(Some(comment)) if comment.starts_with(':') => continue,
            other => break other,
        }
    };
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
    let at = start_at.elapsed();
    assert!(
        at >= IDLE_TIMEOUT && at < IDLE_TIMEOUT + Duration::from_secs(1),
        "{at:?}"
    );
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_timeouts_total{kind="stream_idle",upstream="u"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_standing_get_stream_ends_when_its_client_vanishes() {
    let backend = fixture().await;
    let mut up = upstream(backend.mcp_url(), None);
    up.sse_keepalive = Duration::from_secs(15);
    let sidecar = start(config(vec![up])).await;
    let mut stream = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n\r\n",
        sidecar.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    eventually("stream open at the fixture", || {
        backend.stats().get_streams_open == 1
    })
    .await;
    // Gone without a goodbye: the reset fails the sidecar's next read or keepalive write.
    stream.set_zero_linger().unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_secs(20)).await;
    eventually("fixture stream closed", || {
        backend.stats().get_streams_open == 0
    })
    .await;
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_sse_streams_open{upstream="u"} 0"#),
        "{metrics}"
    );
}
