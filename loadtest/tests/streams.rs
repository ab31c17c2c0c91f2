//! `--streams`: standalone SSE GET streams held open for a run, against the fixture directly
//! and through an in-process sidecar; streams the server ends early or refuses; merged
//! reports; the binary's `streams open: N` line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{plan, pooled, scripted_backend, sidecar};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{self, Load, Stop};
use mcp_loadtest::report::{self, Report};
use mcp_loadtest::streams::{DEFAULT_TIMESTAMP, StreamPlan};
use mcp_loadtest::workload::Workload;
use serde_json::json;

/// `count` streams at `url`; `only`: no requests besides.
fn streams(url: &str, count: usize, only: bool) -> StreamPlan {
    StreamPlan {
        count,
        target: pooled(url, 1),
        timestamp: DEFAULT_TIMESTAMP.to_owned(),
        only,
    }
}

/// Holds `count` streams at `stream_url` for `hold`, sessions opened at `url`, no requests.
async fn hold(
    url: &str,
    stream_url: &str,
    count: usize,
    sessions: usize,
    hold: Duration,
) -> Report {
    let mut p = plan(Load::Concurrency(1), Stop::Duration(hold));
    p.sessions = sessions;
    p.streams = Some(streams(stream_url, count, true));
    engine::run(
        pooled(url, 1),
        Workload::method("tools/list"),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_held_open_count_their_events_and_delivery_latency() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let url = fx.mcp_url();
    let r = hold(
        &url,
        &format!("{url}?tick_ms=50"),
        6,
        2,
        Duration::from_millis(800),
    )
    .await;
    let s = r.streams.expect("a streams report");
    assert_eq!((r.requests, r.errors), (0, 0), "streams only: no requests");
    assert_eq!(
        (s.asked, s.opened, s.failed, s.errors),
        (6, 6, 0, 0),
        "{:?}",
        s.errors_by_kind
    );
    // The streams end with the run (the fixture notices the closed connections soon after).
    let mut tries = 0;
    while fx.stats().get_streams_open > 0 && tries < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tries += 1;
    }
    assert_eq!(
        fx.stats().get_streams_open,
        0,
        "the streams ended with the run"
    );
    // Every tick carries its send time, so every event is timed.
    assert!(s.events >= 6 * 5, "{} events", s.events);
    assert_eq!(s.timed_events, s.events);
    let decoded = |h: &str| report::decode(h, "test").unwrap();
    assert_eq!(decoded(&s.delivery_histogram).len(), s.events);
    assert_eq!(decoded(&s.open_histogram).len(), 6);
    assert_eq!(decoded(&s.first_event_histogram).len(), 6);
    // The gap between events is the tick (the first event of each stream has none).
    assert!(decoded(&s.gap_histogram).len() >= s.events - 6);
    assert!(s.gap_ms.p50 >= 40.0, "{:?}", s.gap_ms);
    assert!(s.first_event_ms.p50 >= 40.0, "{:?}", s.first_event_ms);
    assert!(s.delivery_ms.p50 < 50.0, "{:?}", s.delivery_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_through_the_sidecar_arrive_event_by_event() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let addr = sidecar(&fx, "").await;
    let url = format!("http://{addr}/mcp");
    let r = hold(
        &url,
        &format!("{url}?tick_ms=100"),
        4,
        1,
        Duration::from_millis(900),
    )
    .await;
    let s = r.streams.expect("a streams report");
    assert_eq!((s.opened, s.errors), (4, 0), "{:?}", s.errors_by_kind);
    assert!(s.events >= 4 * 6, "{} events", s.events);
    // Relayed, not buffered: events come one tick apart, most within their tick of being
    // sent. A buffering proxy would deliver them in bursts (gaps near zero), each held until
    // the next arrives (a tick or more late).
    assert!(s.gap_ms.p50 >= 90.0, "{:?}", s.gap_ms);
    assert!(s.delivery_ms.p50 < 100.0, "{:?}", s.delivery_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_run_beside_request_load_on_connections_of_their_own() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let url = fx.mcp_url();
    let mut p = plan(Load::Concurrency(2), Stop::Requests(100));
    p.streams = Some(streams(&format!("{url}?tick_ms=20"), 3, false));
    // One request connection: the streams must not take it.
    let r = engine::run(
        pooled(&url, 2),
        Workload::call(r#"sleep {"ms":5}"#).unwrap(),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!((r.requests, r.errors), (100, 0), "{:?}", r.errors_by_kind);
    let s = r.streams.expect("a streams report");
    assert_eq!((s.opened, s.errors), (3, 0), "{:?}", s.errors_by_kind);
    assert!(s.events > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_server_ends_early_is_stream_closed_and_a_refused_one_counts_by_status() {
    let addr = scripted_backend().await;
    let r = hold(
        &format!("http://{addr}/mcp"),
        &format!("http://{addr}/short"),
        3,
        1,
        Duration::from_millis(300),
    )
    .await;
    let s = r.streams.expect("a streams report");
    assert_eq!((s.opened, s.failed, s.errors), (3, 0, 3));
    assert_eq!(s.errors_by_kind.get("stream_closed"), Some(&3));
    // Their events came before the measured time began (the streams open first) or in it;
    // either way none is timed: they carry no send time.
    assert_eq!(s.timed_events, 0);

    let r = hold(
        &format!("http://{addr}/mcp"),
        &format!("http://{addr}/mcp"),
        2,
        1,
        Duration::from_millis(100),
    )
    .await;
    let s = r.streams.expect("a streams report");
    assert_eq!((s.opened, s.failed, s.errors), (0, 2, 2));
    assert_eq!(s.errors_by_kind.get("http_405"), Some(&2));

    // The fixture refuses a GET on a path it does not serve.
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let url = fx.mcp_url();
    let r = hold(
        &url,
        &url.replace("/mcp", "/nowhere"),
        1,
        1,
        Duration::from_millis(100),
    )
    .await;
    let s = r.streams.expect("a streams report");
    assert_eq!(
        s.errors_by_kind.get("http_404"),
        Some(&1),
        "{:?}",
        s.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_reports_add_their_streams_exactly() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let url = fx.mcp_url();
    let tick = format!("{url}?tick_ms=30");
    let a = hold(&url, &tick, 2, 1, Duration::from_millis(400)).await;
    let b = hold(&url, &tick, 3, 1, Duration::from_millis(400)).await;
    let m = report::merge(&[a.clone(), b.clone()]).unwrap();
    let (sa, sb, sm) = (
        a.streams.unwrap(),
        b.streams.unwrap(),
        m.streams.clone().expect("merged streams"),
    );
    assert_eq!(sm.asked, 5);
    assert_eq!(sm.opened, sa.opened + sb.opened);
    assert_eq!(sm.events, sa.events + sb.events);
    assert_eq!(sm.timed_events, sa.timed_events + sb.timed_events);
    assert!((sm.events_per_s - (sa.events_per_s + sb.events_per_s)).abs() < 1e-9);
    let decoded = |h: &str| report::decode(h, "test").unwrap();
    let mut both = decoded(&sa.delivery_histogram);
    both.add(decoded(&sb.delivery_histogram)).unwrap();
    assert_eq!(decoded(&sm.delivery_histogram), both);
    let mut gaps = decoded(&sa.gap_histogram);
    gaps.add(decoded(&sb.gap_histogram)).unwrap();
    assert_eq!(decoded(&sm.gap_histogram), gaps);
    // The merged report survives its own JSON (its histograms exactly; floats to print
    // precision).
    let text = serde_json::to_string(&m).unwrap();
    let back = serde_json::from_str::<Report>(&text)
        .unwrap()
        .streams
        .unwrap();
    assert_eq!(
        (back.events, &back.delivery_histogram, &back.errors_by_kind),
        (sm.events, &sm.delivery_histogram, &sm.errors_by_kind)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_says_when_all_streams_are_open_and_reports_them() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-load-streams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("report.json");
    let url = format!("{}?tick_ms=50", fx.mcp_url());
    let out_arg = out_path.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-load"))
            .args(["run", &url, "--streams", "5", "--sessions", "2"])
            .args(["--duration", "500ms", "--summary", "--out", &out_arg])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l == "streams open: 5"), "{stderr}");
    assert!(stdout.contains("streams 5 asked  5 opened"), "{stdout}");
    assert!(stdout.contains("| streams | opened |"), "{stdout}");
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.streams.unwrap().opened, 5);
    let _ = std::fs::remove_dir_all(&dir);
}
