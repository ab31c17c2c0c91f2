//! Lifecycle through the real sidecar: graceful shutdown, readiness transitions, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{
    ACCEPT_BOTH, call, client, config, eventually, initialize, metric_value, start, upstream,
};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use serde_json::{Value, json};
use tokio::time::Instant;

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let backend = fixture().await;
    let mut sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    sidecar.wait_readyz(200).await;
    let url = sidecar.url("/mcp");
    let in_flight = tokio::spawn(async move {
        client()
            .post(url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(call(9, "sleep", json!({"ms": 5_000})))
            .send()
            .await
            .unwrap()
    });
    eventually("call reached the fixture", || {
        backend.stats().in_flight == 1
    })
    .await;
    let began = Instant::now();
    sidecar.begin_shutdown();

    // Readiness fails at once, while the request is still running.
    let report = sidecar.wait_readyz(503).await;
    assert_eq!(report["shutting_down"], true);
    // The listener no longer accepts.
    eventually_refused(sidecar.addr).await;

    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"]["content"][0]["text"], "slept 5000 ms");
    sidecar.task.await.unwrap();
    // Drained as soon as the last request finished, well inside the 30 s grace period.
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "{:?}",
        began.elapsed()
    );
}

async fn eventually_refused(addr: std::net::SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("listener still accepting after shutdown began");
}

#[tokio::test(start_paused = true)]
async fn grace_period_end_closes_open_streams() {
    let backend = fixture().await;
    let mut cfg = config(vec![upstream(backend.mcp_url(), None)]);
    cfg.shutdown.grace_period = Duration::from_secs(20);
    let mut sidecar = start(cfg).await;
    let resp = client()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually("stream open", || backend.stats().get_streams_open == 1).await;
    let began = Instant::now();
    sidecar.begin_shutdown();
    sidecar.task.await.unwrap();
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "{waited:?}"
    );
    // The client's stream ends, and the upstream stream with it.
    let mut resp = resp;
    while let Ok(Some(_)) = resp.chunk().await {}
    eventually("fixture stream closed", || {
        backend.stats().get_streams_open == 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn readyz_follows_upstream_reachability() {
    // Reserve a port, then free it: the upstream is down until something listens there again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sidecar = start(config(vec![upstream(
        format!("http://127.0.0.1:{port}/mcp"),
        None,
    )]))
    .await;
    let report = sidecar.wait_readyz(503).await;
    assert_eq!(report["ready"], false);
    eventually_state(&sidecar, "down").await;
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"mcp_sidecar_upstream_up{upstream="u"}"#),
        Some(0.0)
    );

    let _backend = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let report = sidecar.wait_readyz(200).await;
    assert_eq!(report["upstreams"]["u"]["state"], "up");
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"mcp_sidecar_upstream_up{upstream="u"}"#),
        Some(1.0)
    );
    let health = reqwest::get(sidecar.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    sidecar.stop().await;
}

async fn eventually_state(sidecar: &mcp_e2e_tests::RunningSidecar, state: &str) {
    for _ in 0..100 {
        let v: Value = reqwest::get(sidecar.admin_url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["upstreams"]["u"]["state"] == state {
            assert!(
                state == "up" || v["upstreams"]["u"]["error"].is_string(),
                "{v}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("upstream never reached state {state}");
}

#[tokio::test]
async fn metrics_move_after_traffic() {
    let backend = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let http = client();
    let init = http
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    for id in 2..5 {
        let resp = http
            .post(sidecar.url("/mcp"))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
            .body(call(id, "echo", json!({"text": "hi"})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = http
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(call(9, "echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "no session: the backend's own 400 passes through"
    );

    let text = sidecar.metrics().await;
    let series = |s: &str| metric_value(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
    assert_eq!(
        series(r#"mcp_sidecar_requests_total{method="POST",status="200",upstream="u"}"#),
        4.0
    );
    assert_eq!(
        series(r#"mcp_sidecar_requests_total{method="POST",status="400",upstream="u"}"#),
        1.0
    );
    assert_eq!(
        series(r#"mcp_sidecar_request_duration_seconds_count{method="POST",upstream="u"}"#),
        5.0
    );
    assert_eq!(
        series(r#"mcp_sidecar_upstream_duration_seconds_count{upstream="u"}"#),
        5.0
    );
    assert_eq!(
        backend.stats().http_requests_total,
        5,
        "every request reached the backend once"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_delay_keeps_accepting_while_readyz_says_503_then_the_grace_period_starts() {
    let backend = fixture().await;
    let mut cfg = config(vec![upstream(backend.mcp_url(), None)]);
    cfg.shutdown.drain_delay = Duration::from_secs(5);
    cfg.shutdown.grace_period = Duration::from_secs(20);
    let mut sidecar = start(cfg).await;
    sidecar.wait_readyz(200).await;
    let began = Instant::now();
    sidecar.begin_shutdown();

    // Readiness fails at once...
    let report = sidecar.wait_readyz(503).await;
    assert_eq!(report["shutting_down"], true);
    // ...while new connections are still accepted and served, as load balancers catch up.
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // A stream opened during the delay is one the grace period then waits for.
    let stream = client()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    // After the delay the listener closes; the grace period runs from there.
    tokio::time::sleep_until(began + Duration::from_secs(5)).await;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(sidecar.addr).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(tokio::net::TcpStream::connect(sidecar.addr).await.is_err());
    sidecar.task.await.unwrap();
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(25) && waited < Duration::from_secs(26),
        "drain delay then the whole grace period: {waited:?}"
    );
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_cuts_the_drain_delay_short() {
    let backend = fixture().await;
    let mut cfg = config(vec![upstream(backend.mcp_url(), None)]);
    cfg.shutdown.drain_delay = Duration::from_secs(60);
    let sidecar = mcp_sidecar::Sidecar::bind(cfg).await.unwrap();
    let (first_tx, first) = tokio::sync::oneshot::channel::<()>();
    let (again_tx, again) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sidecar.serve_with(
        async move {
            let _ = first.await;
        },
        async move {
            let _ = again.await;
        },
    ));
    let began = Instant::now();
    first_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "still in the drain delay");
    again_tx.send(()).unwrap();
    task.await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn config_endpoint_and_info_metrics_name_the_running_config_and_build() {
    let backend = fixture().await;
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let resp = reqwest::get(sidecar.admin_url("/config")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    let hash = doc["hash"].as_str().unwrap().to_owned();
    assert_eq!(doc["config"]["upstream"][0]["url"], backend.mcp_url());
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            &format!("mcp_sidecar_config_info{{hash=\"{hash}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    let build = metrics
        .lines()
        .find(|l| l.starts_with("mcp_sidecar_build_info{"))
        .unwrap_or_else(|| panic!("no build_info: {metrics}"));
    assert!(
        build.contains(&format!("version=\"{}\"", mcp_sidecar::build_info::VERSION)),
        "{build}"
    );
    assert!(build.contains("commit=\""), "{build}");
    assert!(build.ends_with(" 1"), "{build}");
    sidecar.stop().await;
}
