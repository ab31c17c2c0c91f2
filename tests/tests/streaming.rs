//! SSE passthrough through the real sidecar and the fixture MCP server: no buffering, keepalive
//! comments, idle timeout on answers, legacy endpoint rewrite, cancellation on client disconnect,
//! the backend's framing kept. Standing streams (no idle timeout) are in standing_streams.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use mcp_e2e_tests::{
    ACCEPT_BOTH, EventReader, call, client, config, event_json, eventually, start, upstream,
};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::{ToolConfig, UpstreamConfig};
use serde_json::json;
use tokio::time::Instant;

async fn fixture(mode: ResponseMode) -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: mode,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// An upstream that sends one SSE event, then holds the stream open until told to finish. It keeps
/// accepting connections, because the sidecar's reachability check connects too.
async fn held_stream_upstream() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release = std::sync::Arc::new(std::sync::Mutex::new(Some(release_rx)));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let release = release.clone();
            let service = hyper::service::service_fn(move |_req| {
                let release = release.lock().unwrap().take();
                async move {
                    let first = futures_util::stream::once(async {
                        Ok::<_, Infallible>(Frame::data(Bytes::from("id: 1\ndata: first\n\n")))
                    });
                    let rest = futures_util::stream::once(async move {
                        if let Some(r) = release {
                            let _ = r.await;
                        }
                        Ok::<_, Infallible>(Frame::data(Bytes::from("id: 2\ndata: second\n\n")))
                    });
                    let body = StreamBody::new(futures_util::StreamExt::chain(first, rest));
                    let resp = http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(body)
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, release_tx)
}

#[tokio::test]
async fn sse_frames_reach_the_client_before_the_upstream_finishes() {
    let (addr, release) = held_stream_upstream().await;
    let sidecar = start(config(vec![upstream(format!("http://{addr}/mcp"), None)])).await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .body(mcp_e2e_tests::rpc(1, "ping", serde_json::json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut events = EventReader::new(resp);
    // The upstream is still holding its stream open: this event can only arrive unbuffered.
    assert_eq!(events.next().await.unwrap().unwrap(), "id: 1\ndata: first");
    release.send(()).unwrap();
    assert_eq!(events.next().await.unwrap().unwrap(), "id: 2\ndata: second");
    assert_eq!(events.next().await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn progress_notifications_arrive_spread_over_time() {
    let backend = fixture(ResponseMode::Sse).await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"progress","arguments":{"steps":3,"interval_ms":10_000},"_meta":{"progressToken":"tok"}}});
    let start_at = Instant::now();
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let mut events = EventReader::new(resp);
    let mut arrivals = Vec::new();
    while let Some(event) = events.next_event().await {
        arrivals.push((start_at.elapsed(), event_json(&event)));
    }
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    for (i, (at, msg)) in arrivals[..3].iter().enumerate() {
        assert_eq!(msg["method"], "notifications/progress");
        assert_eq!(msg["params"]["progressToken"], "tok");
        // Each step is delivered when it happens, not when the call completes.
        assert!(
            *at < Duration::from_secs(10 * (i as u64 + 1) + 1),
            "step {i} arrived at {at:?}"
        );
    }
    let (done_at, result) = &arrivals[3];
    assert_eq!(result["id"], 7);
    assert!(*done_at >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn silent_sse_answer_gets_keepalive_comments_and_idle_timeout_ends_it() {
    let backend = fixture(ResponseMode::Sse).await;
    let mut up = upstream(backend.mcp_url(), None);
    up.sse_keepalive = Duration::from_secs(15);
    up.stream_idle_timeout = Duration::from_secs(50);
    let sidecar = start(config(vec![up])).await;
    let start_at = Instant::now();
    // A call whose one progress step comes after ten minutes: the answer goes silent.
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"progress","arguments":{"steps":1,"interval_ms":600_000},"_meta":{"progressToken":"t"}}});
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    for n in 1..=3u64 {
        assert_eq!(events.next().await.unwrap().unwrap(), ": keepalive");
        let at = start_at.elapsed();
        assert!(
            at >= Duration::from_secs(15 * n) && at < Duration::from_secs(15 * n + 1),
            "{at:?}"
        );
    }
    // Keepalives do not count as upstream activity: at 50 s of upstream silence the stream ends.
    let end = events.next().await;
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
    assert!(start_at.elapsed() >= Duration::from_secs(50));
    eventually("fixture call cancelled", || backend.stats().in_flight == 0).await;
    let metrics = sidecar.metrics().await;
    assert!(
        metrics
            .contains(r#"mcp_sidecar_stream_errors_total{reason="idle_timeout",upstream="u"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_sidecar_timeouts_total{kind="stream_idle",upstream="u"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn stream_that_keeps_sending_outlives_the_idle_timeout() {
    let backend = fixture(ResponseMode::Json).await;
    let mut up = upstream(backend.mcp_url(), None);
    up.stream_idle_timeout = Duration::from_secs(30);
    let sidecar = start(config(vec![up])).await;
    let start_at = Instant::now();
    let resp = client()
        .get(sidecar.url("/mcp?tick_ms=20000&count=10"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut events = EventReader::new(resp);
    for _ in 0..10 {
        let event = events
            .next_event()
            .await
            .expect("stream stays open while the upstream talks");
        assert!(event.contains("notifications/message"), "{event}");
    }
    // Ten ticks 20 s apart: far longer in total than the 30 s idle timeout.
    assert!(start_at.elapsed() >= Duration::from_secs(200));
}

#[tokio::test(start_paused = true)]
async fn a_tool_with_a_longer_stream_idle_timeout_keeps_its_slow_progress_stream() {
    let backend = fixture(ResponseMode::Json).await;
    // Both mounts cut streams after 10 s of silence, except `progress` on `/patient` (30 s).
    let mut strict = upstream(backend.mcp_url(), None);
    strict.stream_idle_timeout = Duration::from_secs(10);
    let mut patient = UpstreamConfig::new("patient", backend.mcp_url(), Some("/patient".into()));
    patient.stream_idle_timeout = Duration::from_secs(10);
    patient.tool = vec![ToolConfig {
        name: "progress".into(),
        timeout: None,
        stream_idle_timeout: Some(Duration::from_secs(30)),
        idempotent: false,
        breaker: None,
        offload: None,
        tasks: None,
        task_wait: None,
        job_deadline: None,
    }];
    let sidecar = start(config(vec![strict, patient])).await;
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"progress","arguments":{"steps":3,"interval_ms":20_000},"_meta":{"progressToken":"t"}}});
    let send = |path: &str| {
        client()
            .post(sidecar.url(path))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    // 20 s between progress events: fine within 30 s of idle time...
    let mut events = EventReader::new(send("/patient").await.unwrap());
    let mut received = Vec::new();
    while let Some(event) = events.next_event().await {
        received.push(event_json(&event));
    }
    assert_eq!(received.len(), 4, "{received:?}");
    assert_eq!(received[3]["id"], 7);

    // ...but cut after 10 s where the tool has no override.
    let start_at = Instant::now();
    let mut events = EventReader::new(send("/mcp").await.unwrap());
    let end = loop {
        match events.next().await {
            Ok(Some(event)) if event.starts_with(':') => continue,
            other => break other,
        }
    };
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
    let at = start_at.elapsed();
    assert!(
        at >= Duration::from_secs(10) && at < Duration::from_secs(11),
        "{at:?}"
    );
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_timeouts_total{kind="stream_idle",upstream="u"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_sidecar_timeouts_total{kind="stream_idle",upstream="patient"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn legacy_endpoint_is_rewritten_and_posts_come_back_through_the_sidecar() {
    let backend = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![upstream(
        format!("http://{}/", backend.addr()),
        Some("/legacy"),
    )]))
    .await;
    let resp = client()
        .get(sidecar.url("/legacy/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    let endpoint = events.next_event().await.unwrap();
    assert!(endpoint.starts_with("event: endpoint\n"), "{endpoint}");
    let url = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_owned();
    assert!(url.starts_with("/legacy/messages?sessionId="), "{url}");

    let resp = client()
        .post(sidecar.url(&url))
        .header("content-type", "application/json")
        .body(call(3, "add", json!({"a": 2, "b": 40})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let message = events.next_event().await.unwrap();
    assert!(message.starts_with("event: message\n"), "{message}");
    let v = event_json(&message);
    assert_eq!(v["id"], 3);
    assert_eq!(v["result"]["content"][0]["text"], "42");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let backend = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let url = sidecar.url("/mcp");
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(call(1, "fail", json!({"mode": "hang"})))
            .send()
            .await
    });
    eventually("request reached the fixture", || {
        backend.stats().in_flight == 1
    })
    .await;
    pending.abort();
    eventually("fixture saw the cancellation", || {
        backend.stats().cancelled_total == 1
    })
    .await;
    assert_eq!(backend.stats().in_flight, 0);
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_sse_stream() {
    let backend = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let resp = client()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually("stream open at the fixture", || {
        backend.stats().get_streams_open == 1
    })
    .await;
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_sse_streams_open{upstream="u"} 1"#),
        "{metrics}"
    );
    drop(resp);
    eventually("fixture stream closed", || {
        backend.stats().get_streams_open == 0
    })
    .await;
    let mut closed = false;
    for _ in 0..100 {
        if sidecar
            .metrics()
            .await
            .contains(r#"mcp_sidecar_sse_streams_open{upstream="u"} 0"#)
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "SSE gauge did not return to 0");
}

/// The client leg on a multi-threaded runtime: connections are checked out, driven and given back
/// by requests on any worker, with JSON and SSE answers mixed and many at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_json_and_sse_calls_on_a_multi_threaded_runtime_all_arrive_intact() {
    let json_backend = fixture(ResponseMode::Json).await;
    let sse_backend = fixture(ResponseMode::Sse).await;
    let sidecar = start(config(vec![
        UpstreamConfig::new("json", json_backend.mcp_url(), Some("/json".into())),
        UpstreamConfig::new("sse", sse_backend.mcp_url(), Some("/sse".into())),
    ]))
    .await;
    let http = client();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let http = http.clone();
        let (path, sse) = if i % 2 == 0 {
            ("/json", false)
        } else {
            ("/sse", true)
        };
        let url = sidecar.url(path);
        calls.spawn(async move {
            let text = format!("call {i}");
            let resp = http
                .post(url)
                .header("accept", ACCEPT_BOTH)
                .header("content-type", "application/json")
                .body(call(i, "echo", json!({ "text": text })))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.text().await.unwrap();
            let answer: serde_json::Value = if sse {
                let data = body
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .unwrap_or_else(|| panic!("no event in {body:?}"));
                serde_json::from_str(data.trim()).unwrap()
            } else {
                serde_json::from_str(&body).unwrap()
            };
            assert_eq!(answer["id"], i);
            assert_eq!(answer["result"]["content"][0]["text"], text);
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    assert_eq!(json_backend.stats().by_tool["echo"], 100);
    assert_eq!(sse_backend.stats().by_tool["echo"], 100);
}

/// Issue 14, finding 8: an SSE answer the backend framed by `Content-Length` is finite; it goes
/// out with the same length (no keepalive comments, no re-chunking), in HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn an_sse_answer_with_a_content_length_keeps_its_length() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(event, "text/event-stream"))
        .mount(&backend)
        .await;
    let mut up = upstream(format!("{}/mcp", backend.uri()), None);
    // A keepalive due at once would be injected into a re-framed stream at the first pause.
    up.sse_keepalive = Duration::from_millis(1);
    let sidecar = start(config(vec![up])).await;
    let body = mcp_e2e_tests::rpc(1, "ping", json!({}));
    let raw = mcp_e2e_tests::raw_http(
        sidecar.addr,
        &format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            sidecar.addr,
            body.len()
        ),
    )
    .await;
    let (head, answer) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(head.contains("content-type: text/event-stream"), "{raw}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", event.len())),
        "{raw}"
    );
    assert!(!head.contains("transfer-encoding"), "{raw}");
    assert_eq!(answer, event);

    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        resp.headers()["content-length"],
        event.len().to_string().as_str()
    );
    assert_eq!(resp.text().await.unwrap(), event);
}

/// The legacy endpoint rewrite changes the stream's length: a length-delimited legacy stream is
/// re-framed (chunked) and arrives whole with the rewritten endpoint, not cut at the old length.
#[tokio::test]
async fn a_length_delimited_legacy_stream_is_rechunked_by_the_endpoint_rewrite() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/sse"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "event: endpoint\ndata: /messages?sessionId=s1\n\n",
            "text/event-stream",
        ))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/", backend.uri()),
        Some("/legacy"),
    )]))
    .await;
    let raw = mcp_e2e_tests::raw_http(
        sidecar.addr,
        &format!(
            "GET /legacy/sse HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n",
            sidecar.addr
        ),
    )
    .await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(head.contains("transfer-encoding: chunked"), "{raw}");
    assert!(!head.contains("content-length"), "{raw}");
    assert!(
        body.contains("event: endpoint\ndata: /legacy/messages?sessionId=s1\n\n"),
        "{raw}"
    );
    assert!(body.ends_with("0\r\n\r\n"), "{raw}");
}
