//! Overload protection and memory bounds through the real sidecar, on tokio's paused clock:
//! in-flight caps shed at once (503 + Retry-After), streamed responses hold their slot until they
//! end, standalone streams have their own caps, and a key flood lands in the overflow bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{
    ACCEPT_BOTH, EventReader, RunningSidecar, call, client, eventually, metric_value, start,
};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::Config;
use serde_json::{Value, json};

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// A sidecar in front of `backend`: `extra` goes before `[[upstream]]`, `upstream_extra` into it.
async fn sidecar(backend: &FixtureServer, extra: &str, upstream_extra: &str) -> RunningSidecar {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n{upstream_extra}\n",
        backend.mcp_url()
    );
    start(Config::from_toml_with_env(&text, &|_| None).unwrap()).await
}

fn post(sidecar: &RunningSidecar, ip: &str, body: String) -> reqwest::RequestBuilder {
    client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
        .body(body)
}

fn get_stream(sidecar: &RunningSidecar, ip: &str) -> reqwest::RequestBuilder {
    client()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("x-forwarded-for", ip)
}

fn sleep_call(id: u64, ms: u64) -> String {
    call(id, "sleep", json!({"ms": ms}))
}

fn echo(id: u64) -> String {
    call(id, "echo", json!({"text": "hi"}))
}

async fn metric(sidecar: &RunningSidecar, series: &str) -> Option<f64> {
    metric_value(&sidecar.metrics().await, series)
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_sheds_at_once_with_503_and_retry_after() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[limits]\nmax_in_flight = 2\nshed_retry_after = \"2s\"\n",
        "",
    )
    .await;
    let slow: Vec<_> = (0..2)
        .map(|id| tokio::spawn(post(&sidecar, "203.0.113.1", sleep_call(id, 10_000)).send()))
        .collect();
    eventually("two calls in flight at the backend", || {
        backend.stats().in_flight == 2
    })
    .await;
    let started = tokio::time::Instant::now();
    let resp = post(&sidecar, "203.0.113.1", echo(7)).send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shed, not queued"
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["id"].is_null(),
        "shed before the body is read: the id is unknown"
    );
    assert_eq!(body["error"]["code"], -32015);
    assert_eq!(body["error"]["data"]["reason"], "overloaded");
    assert_eq!(body["error"]["data"]["cap"], "global");
    assert_eq!(body["error"]["data"]["retry_after"], 2);
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_in_flight").await,
        Some(2.0),
        "the shed request holds no slot"
    );
    assert_eq!(
        metric(
            &sidecar,
            "mcp_sidecar_shed_total{cap=\"global\",upstream=\"u\"}"
        )
        .await,
        Some(1.0)
    );
    for task in slow {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        post(&sidecar, "203.0.113.1", echo(8))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(metric(&sidecar, "mcp_sidecar_in_flight").await, Some(0.0));
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_streamed_response_holds_its_upstream_slot_until_it_ends() {
    let backend = fixture().await;
    let sidecar = sidecar(&backend, "", "max_in_flight = 1").await;
    let progress = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "progress",
        "arguments": {"steps": 3, "interval_ms": 1000},
        "_meta": {"progressToken": "p"},
    }});
    let resp = post(&sidecar, "203.0.113.1", progress.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = EventReader::new(resp);
    assert!(
        events
            .next_event()
            .await
            .unwrap()
            .contains("notifications/progress")
    );
    // The stream is still running: its slot is taken, so a request is shed...
    let resp = post(&sidecar, "203.0.113.1", echo(2)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["data"]["cap"], "upstream");
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_upstream_in_flight{upstream=\"u\"}").await,
        Some(1.0)
    );
    // ...but a cancellation is never shed at the upstream cap.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 99}});
    let resp = post(&sidecar, "203.0.113.1", cancel.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Once the stream has ended, the slot is free again.
    let mut last = String::new();
    while let Some(event) = events.next_event().await {
        last = event;
    }
    assert!(last.contains("completed 3 steps"), "{last}");
    assert_eq!(
        post(&sidecar, "203.0.113.1", echo(3))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_upstream_in_flight{upstream=\"u\"}").await,
        Some(0.0)
    );
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn standalone_streams_have_their_own_caps_and_free_them_when_closed() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nmax_in_flight = 1\nmax_streams = 3\n\
         max_streams_per_principal = 1\n",
        "",
    )
    .await;
    let a = get_stream(&sidecar, "203.0.113.1").send().await.unwrap();
    assert_eq!(a.status(), 200);
    let second = get_stream(&sidecar, "203.0.113.1").send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(
        second.headers()["ratelimit-policy"],
        "\"streams-per-principal\";q=1;qu=\"concurrent-requests\""
    );
    assert_eq!(second.headers()["retry-after"], "1");
    let b = get_stream(&sidecar, "203.0.113.2").send().await.unwrap();
    let c = get_stream(&sidecar, "203.0.113.3").send().await.unwrap();
    assert_eq!((b.status().as_u16(), c.status().as_u16()), (200, 200));
    // Three streams open: the global stream cap sheds the fourth.
    let d = get_stream(&sidecar, "203.0.113.4").send().await.unwrap();
    assert_eq!(d.status(), 503);
    let body: Value = d.json().await.unwrap();
    assert_eq!(body["error"]["data"]["cap"], "streams");
    // Streams are not requests in flight: with max_in_flight = 1 a call still passes.
    assert_eq!(
        post(&sidecar, "203.0.113.1", echo(1))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_standalone_streams_open").await,
        Some(3.0)
    );
    // Closing a stream gives both of its slots back.
    drop(a);
    let mut reopened = None;
    for _ in 0..100 {
        let resp = get_stream(&sidecar, "203.0.113.1").send().await.unwrap();
        if resp.status() == 200 {
            reopened = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reopened.is_some(),
        "the closed stream's slots were never released"
    );
    eventually("the backend saw the stream close", || {
        backend.stats().get_streams_open == 3
    })
    .await;
    drop((b, c, reopened));
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_flood_beyond_max_keys_shares_the_overflow_bucket_until_a_sweep() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nsweep_interval = \"1h\"\n\
         [[rate_limit]]\nname = \"ip\"\nkey = [\"client_ip\"]\nrate = 1\nper = \"60s\"\n\
         max_keys = 3\n",
        "",
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let resp = post(&sidecar, &format!("198.51.100.{i}"), echo(i))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // Three keys get their own bucket, the fourth key the overflow bucket's one unit, the rest
    // share that exhausted bucket.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_rate_limit_tracked_keys{rule=\"ip\"}").await,
        Some(3.0)
    );
    assert_eq!(
        metric(
            &sidecar,
            "mcp_sidecar_rate_limit_key_overflow_total{rule=\"ip\"}"
        )
        .await,
        Some(7.0)
    );
    // Tracked keys keep their own bucket meanwhile.
    assert_eq!(
        post(&sidecar, "198.51.100.0", echo(20))
            .send()
            .await
            .unwrap()
            .status(),
        429,
        "its own bucket is spent, not the overflow's"
    );
    // The early sweep asked for at the cap ran at once, while the keys were busy. Once they are
    // evictable (bucket full again plus one emission interval: 120 s), the next new key meets the
    // cap, is decided on the (refilled) overflow bucket, and asks for another early sweep, which
    // evicts the idle keys long before the hourly one.
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert_eq!(
        post(&sidecar, "198.51.100.99", echo(21))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_rate_limit_tracked_keys{rule=\"ip\"}").await,
        Some(0.0)
    );
    assert_eq!(
        post(&sidecar, "198.51.100.100", echo(22))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        metric(&sidecar, "mcp_sidecar_rate_limit_tracked_keys{rule=\"ip\"}").await,
        Some(1.0),
        "a new key gets its own bucket again"
    );
    sidecar.stop().await;
}
