//! Circuit breaking, per-tool timeouts, retries and active health checks through the real
//! sidecar and the fixture MCP server, on paused time: the fixture's request counters prove what
//! reached the backend, and a 60 s open period passes in microseconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{
    ACCEPT_BOTH, RunningSidecar, call, client, config, eventually, metric_value, post, rpc, start,
    tool_calls, upstream,
};
use mcp_fixtures::FixtureServer;
use mcp_sidecar::config::{HealthCheckKind, ToolConfig, UpstreamConfig};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

async fn fixture() -> FixtureServer {
    mcp_e2e_tests::json_fixture().await
}

/// An upstream whose breaker trips after 3 consecutive failures, without retries, so each test
/// counts exactly what it sends.
fn breaking(url: String) -> UpstreamConfig {
    let mut u = upstream(url, None);
    u.breaker.consecutive_failures = 3;
    u.breaker.failure_ratio = 0.0;
    u.retry.max_retries = 0;
    u
}

fn tool(name: &str) -> ToolConfig {
    ToolConfig {
        name: name.into(),
        timeout: None,
        stream_idle_timeout: None,
        idempotent: false,
        breaker: None,
        offload: None,
        tasks: None,
        task_wait: None,
        job_deadline: None,
    }
}

fn fail_503(id: u64) -> String {
    call(id, "fail", json!({"mode": "http_status", "status": 503}))
}

fn echo(id: u64) -> String {
    call(id, "echo", json!({"text": "hi"}))
}

async fn metric(sidecar: &RunningSidecar, series: &str) -> f64 {
    metric_value(&sidecar.metrics().await, series).unwrap_or(0.0)
}

async fn trip(sidecar: &RunningSidecar, path: &str) {
    for id in 1..=3 {
        assert_eq!(post(sidecar, path, fail_503(id)).await.status(), 503);
    }
}

/// Asserts a fast-failed answer and returns its Retry-After seconds.
async fn assert_fast_fail(resp: reqwest::Response, id: u64, circuit: &str) -> u64 {
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-circuit-open"], circuit);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["error"]["code"], -32016);
    assert_eq!(body["error"]["data"]["reason"], "circuit_open");
    retry_after
}

#[tokio::test(start_paused = true)]
async fn open_circuit_fails_fast_without_touching_the_upstream() {
    let backend = fixture().await;
    let sidecar = start(config(vec![breaking(backend.mcp_url())])).await;
    // Backend errors pass through unchanged until the third one trips the breaker.
    let first = post(&sidecar, "/mcp", fail_503(1)).await;
    assert!(first.headers().get("x-circuit-open").is_none());
    assert_eq!(first.status(), 503);
    assert_eq!(post(&sidecar, "/mcp", echo(2)).await.status(), 200);
    trip(&sidecar, "/mcp").await;
    let reached = backend.stats().http_requests_total;
    assert_eq!(reached, 5);

    for id in 10..20 {
        let retry_after = assert_fast_fail(post(&sidecar, "/mcp", echo(id)).await, id, "u").await;
        assert_eq!(retry_after, 60);
    }
    assert_eq!(
        backend.stats().http_requests_total,
        reached,
        "an open circuit never touches the upstream"
    );

    // Notifications are never blocked (nor counted): a cancellation must reach the backend.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 1}});
    assert_eq!(post(&sidecar, "/mcp", note.to_string()).await.status(), 202);
    assert_eq!(backend.stats().notifications_total, 1);

    let m = sidecar.metrics().await;
    let value = |s: &str| metric_value(&m, s).unwrap_or(-1.0);
    assert_eq!(
        value(r#"mcp_sidecar_breaker_state{tool="",upstream="u"}"#),
        2.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_breaker_rejections_total{tool="",upstream="u"}"#),
        10.0
    );
    assert_eq!(
        value(
            r#"mcp_sidecar_breaker_transitions_total{from="closed",to="open",tool="",upstream="u"}"#
        ),
        1.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_upstream_failures_total{reason="status",upstream="u"}"#),
        4.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_proxy_errors_total{reason="circuit_open"}"#),
        10.0
    );
}

#[tokio::test(start_paused = true)]
async fn one_probe_after_the_open_period_and_two_successes_close_the_circuit() {
    let backend = fixture().await;
    let sidecar = start(config(vec![breaking(backend.mcp_url())])).await;
    trip(&sidecar, "/mcp").await;
    sleep(Duration::from_secs(59)).await;
    assert_eq!(
        assert_fast_fail(post(&sidecar, "/mcp", echo(4)).await, 4, "u").await,
        1
    );
    sleep(Duration::from_secs(1)).await;

    // The probe is slow, so a second request arrives while it is in flight and is refused.
    let probe_body = call(5, "sleep", json!({"ms": 2000}));
    let probe = {
        let url = sidecar.url("/mcp");
        tokio::spawn(async move {
            client()
                .post(url)
                .header("accept", ACCEPT_BOTH)
                .header("content-type", "application/json")
                .body(probe_body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    eventually("the probe reached the backend", || {
        backend.stats().in_flight == 1
    })
    .await;
    assert_eq!(
        assert_fast_fail(post(&sidecar, "/mcp", echo(6)).await, 6, "u").await,
        1,
        "half-open with its one probe slot taken"
    );
    assert_eq!(tool_calls(&backend, "echo"), 0);
    assert_eq!(probe.await.unwrap(), 200);
    let state = r#"mcp_sidecar_breaker_state{tool="",upstream="u"}"#;
    assert_eq!(
        metric(&sidecar, state).await,
        1.0,
        "one success is not enough"
    );
    assert_eq!(post(&sidecar, "/mcp", echo(7)).await.status(), 200);
    assert_eq!(metric(&sidecar, state).await, 0.0);
    for id in 8..12 {
        assert_eq!(post(&sidecar, "/mcp", echo(id)).await.status(), 200);
    }
    assert_eq!(tool_calls(&backend, "echo"), 5);
}

#[tokio::test(start_paused = true)]
async fn repeated_trips_back_off_up_to_the_cap() {
    let backend = fixture().await;
    let mut u = breaking(backend.mcp_url());
    u.breaker.max_open_duration = Duration::from_secs(200);
    let sidecar = start(config(vec![u])).await;
    trip(&sidecar, "/mcp").await;
    let mut id = 10;
    for (open, next) in [(60, 120), (120, 200), (200, 200)] {
        assert_eq!(
            assert_fast_fail(post(&sidecar, "/mcp", echo(id)).await, id, "u").await,
            open
        );
        sleep(Duration::from_secs(open)).await;
        id += 1;
        // The probe fails: open again, for longer.
        assert_eq!(post(&sidecar, "/mcp", fail_503(id)).await.status(), 503);
        id += 1;
        assert_eq!(
            assert_fast_fail(post(&sidecar, "/mcp", echo(id)).await, id, "u").await,
            next
        );
        id += 1;
    }
    assert_eq!(
        tool_calls(&backend, "fail"),
        6,
        "3 to trip + one probe per open period"
    );
    assert_eq!(tool_calls(&backend, "echo"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_abandoned_by_its_client_does_not_wedge_the_circuit() {
    let backend = fixture().await;
    let sidecar = start(config(vec![breaking(backend.mcp_url())])).await;
    trip(&sidecar, "/mcp").await;
    sleep(Duration::from_secs(60)).await;
    let url = sidecar.url("/mcp");
    let probe = tokio::spawn(async move {
        let _ = client()
            .post(url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(call(4, "sleep", json!({"ms": 600_000})))
            .send()
            .await;
    });
    eventually("the probe reached the backend", || {
        backend.stats().in_flight == 1
    })
    .await;
    assert_eq!(post(&sidecar, "/mcp", echo(5)).await.status(), 503);
    probe.abort();
    eventually("the abandoned probe was cancelled upstream", || {
        backend.stats().cancelled_total == 1
    })
    .await;
    // The slot is free again: the next request is the probe.
    assert_eq!(post(&sidecar, "/mcp", echo(6)).await.status(), 200);
    assert_eq!(post(&sidecar, "/mcp", echo(7)).await.status(), 200);
    assert_eq!(
        metric(
            &sidecar,
            r#"mcp_sidecar_breaker_state{tool="",upstream="u"}"#
        )
        .await,
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_tool_with_its_own_breaker_opens_alone() {
    let backend = fixture().await;
    let mut u = breaking(backend.mcp_url());
    let mut fail = tool("fa*");
    fail.breaker = Some(mcp_sidecar::config::BreakerOverride {
        consecutive_failures: Some(2),
        open_duration: Some(Duration::from_secs(10)),
        ..Default::default()
    });
    u.tool = vec![fail];
    let sidecar = start(config(vec![u])).await;
    for id in 1..=2 {
        assert_eq!(post(&sidecar, "/mcp", fail_503(id)).await.status(), 503);
    }
    assert_eq!(
        assert_fast_fail(post(&sidecar, "/mcp", fail_503(3)).await, 3, "u/fa*").await,
        10
    );
    // Other tools and methods go through the upstream's own (closed) breaker.
    assert_eq!(post(&sidecar, "/mcp", echo(4)).await.status(), 200);
    assert_eq!(
        post(&sidecar, "/mcp", rpc(5, "tools/list", json!({})))
            .await
            .status(),
        200
    );
    assert_eq!(tool_calls(&backend, "fail"), 2);
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(&m, r#"mcp_sidecar_breaker_state{tool="fa*",upstream="u"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&m, r#"mcp_sidecar_breaker_state{tool="",upstream="u"}"#),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn per_tool_timeouts_override_the_upstream_response_timeout() {
    let backend = fixture().await;
    let mut u = upstream(backend.mcp_url(), None);
    u.response_timeout = Duration::from_secs(30);
    u.retry.max_retries = 0;
    let mut long = tool("sleep");
    long.timeout = Some(Duration::from_secs(600));
    u.tool = vec![long];
    let mut strict = UpstreamConfig::new("strict", backend.mcp_url(), Some("/strict".into()));
    let mut quick = tool("sl*");
    quick.timeout = Some(Duration::from_secs(2));
    strict.tool = vec![quick];
    let sidecar = start(config(vec![u, strict])).await;

    // Ten minutes allowed for `sleep` although the upstream's timeout is 30 s.
    let started = Instant::now();
    let resp = post(&sidecar, "/mcp", call(1, "sleep", json!({"ms": 120_000}))).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(120));

    // Two seconds for `sl*` on the other mount: 504 with the request's id.
    let started = Instant::now();
    let resp = post(&sidecar, "/strict", call(2, "sleep", json!({"ms": 10_000}))).await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], -32002);
    // Methods without an entry keep the upstream's timeout.
    assert_eq!(post(&sidecar, "/strict", echo(3)).await.status(), 200);
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_timeouts_total{kind="response",upstream="strict"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_timeouts_total{kind="response",upstream="u"}"#
        ),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn operators_list_and_force_breakers_on_the_admin_listener() {
    let backend = fixture().await;
    let mut u = breaking(backend.mcp_url());
    let mut own = tool("crawl_*");
    own.breaker = Some(Default::default());
    u.tool = vec![own];
    let sidecar = start(config(vec![u])).await;
    let admin = client();

    let list: Value = admin
        .get(sidecar.admin_url("/breakers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u", "u/crawl_*"]);
    assert_eq!(list["breakers"][0]["state"], "closed");

    let forced = admin
        .post(sidecar.admin_url("/breakers/u/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 200);
    let forced: Value = forced.json().await.unwrap();
    assert_eq!(
        (forced["state"].as_str(), forced["forced"].as_bool()),
        (Some("open"), Some(true))
    );
    assert_fast_fail(post(&sidecar, "/mcp", echo(1)).await, 1, "u").await;
    // Held open however long it takes.
    sleep(Duration::from_secs(3600)).await;
    assert_fast_fail(post(&sidecar, "/mcp", echo(2)).await, 2, "u").await;
    assert_eq!(backend.stats().http_requests_total, 0);

    let closed = admin
        .post(sidecar.admin_url("/breakers/u/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    assert_eq!(post(&sidecar, "/mcp", echo(3)).await.status(), 200);

    // A tool breaker by its glob (percent-encoded or not).
    let tool_open = admin
        .post(sidecar.admin_url("/breakers/u/crawl_%2A/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(tool_open.status(), 200);
    let crawl = call(4, "crawl_web", json!({}));
    assert_fast_fail(post(&sidecar, "/mcp", crawl).await, 4, "u/crawl_*").await;

    let wrong_method = admin
        .get(sidecar.admin_url("/breakers/u/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let unknown = admin
        .post(sidecar.admin_url("/breakers/nope/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let list: Value = admin
        .get(sidecar.admin_url("/breakers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["breakers"][0]["state"], "closed");
    assert_eq!(list["breakers"][1]["state"], "open");
}

#[tokio::test(start_paused = true)]
async fn open_remaining_time_is_reported_to_operators() {
    let backend = fixture().await;
    let sidecar = start(config(vec![breaking(backend.mcp_url())])).await;
    trip(&sidecar, "/mcp").await;
    sleep(Duration::from_secs(20)).await;
    let list: Value = client()
        .get(sidecar.admin_url("/breakers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = &list["breakers"][0];
    assert_eq!(b["state"], "open");
    assert_eq!(b["trips"], 1);
    let left = b["open_remaining_ms"].as_u64().unwrap();
    assert!((39_000..=40_000).contains(&left), "{left}");
}

#[tokio::test(start_paused = true)]
async fn a_passing_health_check_closes_a_half_open_circuit_sooner() {
    let backend = fixture().await;
    let mut u = breaking(backend.mcp_url());
    u.health_interval = Duration::from_secs(5);
    u.health_check.kind = HealthCheckKind::McpPing;
    // Half-way between two checks: the trip happens at a check tick or just after it (the
    // paused clock only moves to the next timer), so an open period of a whole number of
    // intervals could end exactly at a check and let two checks into the 66 s below.
    u.breaker.open_duration = Duration::from_millis(62_500);
    let sidecar = start(config(vec![u])).await;
    let ready = sidecar.wait_readyz(200).await;
    assert_eq!(ready["upstreams"]["u"]["check"], "mcp_ping");
    trip(&sidecar, "/mcp").await;
    // The open period ends; the next check (at most 5 s later) is the first probe success.
    sleep(Duration::from_secs(66)).await;
    assert!(backend.stats().by_method.get("ping").copied().unwrap_or(0) >= 12);
    let state = r#"mcp_sidecar_breaker_state{tool="",upstream="u"}"#;
    assert_eq!(metric(&sidecar, state).await, 1.0);
    // One client success now closes it (without the check it would take two).
    assert_eq!(post(&sidecar, "/mcp", echo(9)).await.status(), 200);
    assert_eq!(metric(&sidecar, state).await, 0.0);
    assert!(
        metric(
            &sidecar,
            r#"mcp_sidecar_health_checks_total{result="ok",upstream="u"}"#
        )
        .await
            >= 12.0
    );
}

#[tokio::test(start_paused = true)]
async fn http_health_checks_feed_readiness_and_a_dead_backend_is_not_ready() {
    let backend = fixture().await;
    let mut good = upstream(backend.mcp_url(), None);
    good.health_check.kind = HealthCheckKind::Http;
    good.health_check.path = Some("/stats".into());
    let mut missing = UpstreamConfig::new("missing", backend.mcp_url(), Some("/m".into()));
    missing.health_check.kind = HealthCheckKind::Http;
    missing.health_check.path = Some("/no-such-page".into());
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut dead = UpstreamConfig::new(
        "dead",
        format!("http://127.0.0.1:{dead_port}/mcp"),
        Some("/d".into()),
    );
    dead.health_check.kind = HealthCheckKind::McpPing;
    let sidecar = start(config(vec![good, missing, dead])).await;
    let r = eventually_json(&sidecar, |r| {
        r["upstreams"]["u"]["state"] == "up"
            && r["upstreams"]["missing"]["state"] == "down"
            && r["upstreams"]["dead"]["state"] == "down"
    })
    .await;
    assert_eq!(r["ready"], false);
    assert_eq!(r["upstreams"]["u"]["check"], "http");
    assert!(
        r["upstreams"]["missing"]["error"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{r}"
    );
    assert!(
        r["upstreams"]["dead"]["error"]
            .as_str()
            .unwrap()
            .starts_with("ping")
    );
}

async fn eventually_json(sidecar: &RunningSidecar, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r: Value = client()
            .get(sidecar.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if check(&r) {
            return r;
        }
        sleep(Duration::from_millis(500)).await;
    }
    panic!("readiness never matched");
}

#[tokio::test(start_paused = true)]
async fn connect_timeouts_are_counted_as_such() {
    // A listener that never accepts, with its accept queue full: the kernel drops further SYNs,
    // so a connection attempt hangs until the connect timeout (all on loopback).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        fillers.push(tokio::spawn(tokio::net::TcpStream::connect(addr)));
    }
    tokio::task::yield_now().await;
    let mut u = upstream(format!("http://{addr}/mcp"), None);
    u.connect_timeout = Duration::from_secs(1);
    u.retry.max_retries = 0;
    let sidecar = start(config(vec![u])).await;
    let resp = post(&sidecar, "/mcp", echo(1)).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001);
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_timeouts_total{kind="connect",upstream="u"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_upstream_failures_total{reason="connect",upstream="u"}"#
        ),
        Some(1.0)
    );
    drop(listener);
    for f in fillers {
        f.abort();
    }
}
