//! The HTTP/MCP fault proxy against the in-process fixture: each fault does what it says, a
//! request no fault matches passes untouched, and the same seed replays the same decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mcp_chaos::http::{Action, HttpFault, HttpFaultProxy, Match};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use serde_json::{Value, json};

const SEED: u64 = 19;

struct Rig {
    _fixture: FixtureServer,
    proxy: HttpFaultProxy,
    client: reqwest::Client,
}

impl Rig {
    async fn new(seed: u64) -> Self {
        let fixture = FixtureServer::start(FixtureConfig {
            stateless: true,
            ..FixtureConfig::default()
        })
        .await
        .unwrap();
        let upstream = format!("http://{}", fixture.addr());
        let proxy = HttpFaultProxy::start(([127, 0, 0, 1], 0).into(), &upstream, seed)
            .await
            .unwrap();
        Self {
            _fixture: fixture,
            proxy,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.local_addr())
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn call(&self, id: u64, tool: &str) -> reqwest::Response {
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "hi", "a": 1, "b": 2}}}))
            .await
    }

    async fn ping(&self, id: u64) -> reqwest::Response {
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
            .await
    }

    async fn stream(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/mcp?{query}")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap()
    }
}

/// Splits complete events (blank-line terminated) off `buf`.
fn take_events(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let event: String = buf.drain(..end + 2).collect();
        if event.lines().any(|l| l.starts_with("data:")) {
            out.push(event);
        }
    }
    out
}

/// The dispatched events of an SSE body read to its end, and how it ended.
async fn events(response: reqwest::Response) -> (Vec<String>, Result<(), String>) {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) => return (out, Err(e.to_string())),
        }
        out.extend(take_events(&mut buf));
    }
    (out, Ok(()))
}

#[tokio::test]
async fn status_at_100_percent_answers_it_and_at_0_percent_never() {
    let rig = Rig::new(SEED).await;
    rig.proxy
        .add_fault(HttpFault::new("storm", Action::Status(503)))
        .unwrap();
    for id in 0..5 {
        assert_eq!(rig.ping(id).await.status(), 503);
    }
    rig.proxy.clear();
    rig.proxy
        .add_fault(HttpFault::new("never", Action::Status(503)).percent(0.0))
        .unwrap();
    for id in 0..5 {
        assert_eq!(rig.ping(id).await.status(), 200);
    }
    let counts = rig.proxy.counts("never").unwrap();
    assert_eq!((counts.matched, counts.fired), (5, 0));
}

#[tokio::test]
async fn rpc_error_answers_the_requests_id() {
    let rig = Rig::new(SEED).await;
    let action = Action::RpcError {
        code: -32001,
        message: "injected".into(),
    };
    rig.proxy.add_fault(HttpFault::new("rpc", action)).unwrap();
    let response = rig.ping(4242).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 4242);
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["message"], "injected");
}

#[tokio::test]
async fn tool_error_answers_an_is_error_result() {
    let rig = Rig::new(SEED).await;
    let action = Action::ToolError("tool broke".into());
    rig.proxy.add_fault(HttpFault::new("tool", action)).unwrap();
    let body: Value = rig.call(7, "echo").await.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["isError"], true);
    assert_eq!(body["result"]["content"][0]["text"], "tool broke");
}

#[tokio::test]
async fn delay_holds_the_response_headers_at_least_that_long() {
    let rig = Rig::new(SEED).await;
    let delay = Duration::from_millis(200);
    rig.proxy
        .add_fault(HttpFault::new("slow", Action::Delay(delay)))
        .unwrap();
    let start = Instant::now();
    let response = rig.ping(1).await;
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn slow_first_byte_sends_headers_at_once_and_the_body_later() {
    let rig = Rig::new(SEED).await;
    let delay = Duration::from_millis(300);
    rig.proxy
        .add_fault(HttpFault::new("sfb", Action::SlowFirstByte(delay)))
        .unwrap();
    let start = Instant::now();
    let response = rig.ping(1).await;
    let headers_at = start.elapsed();
    let body: Value = response.json().await.unwrap();
    assert!(headers_at < delay, "headers after {headers_at:?}");
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    assert_eq!(body["id"], 1);
}

#[tokio::test]
async fn cut_sse_after_three_delivers_exactly_three_events_then_a_clean_end() {
    let rig = Rig::new(SEED).await;
    rig.proxy
        .add_fault(HttpFault::new("cut", Action::CutSseAfter(3)))
        .unwrap();
    let response = rig.stream("tick_ms=5&count=10").await;
    assert_eq!(response.status(), 200);
    let (events, end) = events(response).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(end.is_ok(), "{end:?}");
    assert!(events[2].contains("\"tick\":3"), "{}", events[2]);
}

#[tokio::test]
async fn drip_sse_spaces_the_events() {
    let rig = Rig::new(SEED).await;
    let gap = Duration::from_millis(100);
    rig.proxy
        .add_fault(HttpFault::new("drip", Action::DripSse(gap)))
        .unwrap();
    // The backend sends its 3 events 1 ms apart; each leaves the proxy `gap` after it arrived,
    // and the next one only after that.
    let start = Instant::now();
    let response = rig.stream("tick_ms=1&count=3").await;
    let mut stream = response.bytes_stream();
    let mut seen = Vec::new();
    let mut buf = String::new();
    while seen.len() < 3 {
        let chunk = stream.next().await.unwrap().unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for _ in take_events(&mut buf) {
            seen.push(start.elapsed());
        }
    }
    assert!(seen[0] >= gap, "{seen:?}");
    for pair in seen.windows(2) {
        assert!(pair[1] - pair[0] >= gap, "{seen:?}");
    }
}

#[tokio::test]
async fn drop_mid_body_truncates_the_body_with_a_connection_error() {
    let rig = Rig::new(SEED).await;
    rig.proxy
        .add_fault(HttpFault::new("drop", Action::DropMidBody(10)))
        .unwrap();
    let response = rig.ping(1).await;
    assert_eq!(response.status(), 200);
    let announced = response.content_length().unwrap();
    assert!(announced > 10, "{announced}");
    let mut stream = response.bytes_stream();
    let mut got = Vec::new();
    let end = loop {
        match stream.next().await {
            Some(Ok(bytes)) => got.extend_from_slice(&bytes),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(end.is_err(), "the body ended cleanly");
    assert_eq!(got.len(), 10);
}

#[tokio::test]
async fn malformed_body_is_not_json() {
    let rig = Rig::new(SEED).await;
    rig.proxy
        .add_fault(HttpFault::new("garbage", Action::MalformedBody))
        .unwrap();
    let response = rig.ping(1).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err());
}

#[tokio::test]
async fn faults_match_by_path_http_method_rpc_method_and_tool_name() {
    let rig = Rig::new(SEED).await;
    let only = |m: Match| HttpFault::new("f", Action::Status(500)).matching(m);
    let path = |p: &str| Match {
        path: Some(p.into()),
        ..Match::default()
    };
    let cases = [
        // (matcher, fires on `tools/call echo`, fires on `ping`)
        (path("/other"), false, false),
        (path("/mc"), true, true),
        (
            Match {
                http_method: Some(http::Method::GET),
                ..Match::default()
            },
            false,
            false,
        ),
        (
            Match {
                http_method: Some(http::Method::POST),
                ..Match::default()
            },
            true,
            true,
        ),
        (
            Match {
                rpc_method: Some("ping".into()),
                ..Match::default()
            },
            false,
            true,
        ),
        (
            Match {
                tool: Some("echo".into()),
                ..Match::default()
            },
            true,
            false,
        ),
    ];
    for (matcher, on_call, on_ping) in cases {
        rig.proxy.clear();
        rig.proxy.add_fault(only(matcher.clone())).unwrap();
        let call = rig.call(1, "echo").await;
        assert_eq!(call.status() == 500, on_call, "{matcher:?} on tools/call");
        let ping = rig.ping(2).await;
        assert_eq!(ping.status() == 500, on_ping, "{matcher:?} on ping");
        // What passes is the backend's answer, untouched.
        if !on_call {
            let body: Value = call.json().await.unwrap();
            assert_eq!(body["id"], 1);
            assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
        }
    }
    // All conditions must hold: the path and the tool.
    rig.proxy.clear();
    let both = Match {
        path: Some("/mcp".into()),
        tool: Some("add".into()),
        ..Match::default()
    };
    rig.proxy.add_fault(only(both)).unwrap();
    assert_eq!(rig.call(3, "echo").await.status(), 200);
    assert_eq!(rig.call(4, "add").await.status(), 500);
}

#[tokio::test]
async fn the_same_seed_replays_the_same_decisions_at_50_percent() {
    async fn decisions(seed: u64) -> Vec<bool> {
        let rig = Rig::new(seed).await;
        rig.proxy
            .add_fault(HttpFault::new("half", Action::Status(500)).percent(50.0))
            .unwrap();
        let mut out = Vec::new();
        for id in 0..32 {
            out.push(rig.ping(id).await.status() == 500);
        }
        let counts = rig.proxy.counts("half").unwrap();
        assert_eq!(counts.matched, 32);
        assert_eq!(counts.fired, out.iter().filter(|x| **x).count() as u64);
        out
    }
    let first = decisions(SEED).await;
    assert_eq!(first, decisions(SEED).await);
    assert_ne!(first, decisions(SEED + 1).await);
    assert!(first.contains(&true) && first.contains(&false));
}

#[tokio::test]
async fn bad_faults_are_refused_naming_the_problem() {
    let rig = Rig::new(SEED).await;
    let err = rig
        .proxy
        .add_fault(HttpFault::new("p", Action::Status(500)).percent(150.0))
        .unwrap_err();
    assert!(err.to_string().contains("percent"), "{err}");
    for status in [42, 101, 600] {
        let err = rig
            .proxy
            .add_fault(HttpFault::new("s", Action::Status(status)))
            .unwrap_err();
        assert!(err.to_string().contains(&status.to_string()), "{err}");
    }
    rig.proxy
        .add_fault(HttpFault::new("d", Action::Status(500)))
        .unwrap();
    let err = rig
        .proxy
        .add_fault(HttpFault::new("d", Action::Status(502)))
        .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert!(rig.proxy.remove_fault("d"));
    assert!(!rig.proxy.remove_fault("d"));
    assert_eq!(rig.ping(1).await.status(), 200);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_open_streams() {
    let rig = Rig::new(SEED).await;
    // An idle standalone stream: open until someone closes it.
    let response = rig.stream("count=0").await;
    assert_eq!(response.status(), 200);
    let Rig {
        _fixture, proxy, ..
    } = rig;
    drop(proxy);
    let mut stream = response.bytes_stream();
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream stayed open after the proxy was dropped"
    );
}

#[tokio::test]
async fn a_body_past_the_match_bound_is_forwarded_whole() {
    let rig = Rig::new(SEED).await;
    let matcher = Match {
        tool: Some("add".into()),
        ..Match::default()
    };
    rig.proxy
        .add_fault(HttpFault::new("f", Action::Status(500)).matching(matcher))
        .unwrap();
    let text = "x".repeat(mcp_chaos::http::MAX_MATCHED_BODY + 100_000);
    let response = rig
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}}))
        .await;
    // Read to the bound (and the frame crossing it) to match, then forwarded unchanged.
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["result"]["content"][0]["text"].as_str(),
        Some(text.as_str())
    );
}
