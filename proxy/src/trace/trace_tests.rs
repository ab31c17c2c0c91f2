use std::net::SocketAddr;
use std::sync::Arc;

use super::context::{TRACESTATE, parse_traceparent};
use super::*;
use crate::conn_info::ConnInfo;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A tracer whose collector is a closed port (nothing here waits on it).
fn tracing(sampling: f64) -> Arc<Tracing> {
    let config = TracingConfig {
        enabled: true,
        endpoint: "http://127.0.0.1:9/v1/traces".into(),
        sampling,
        ..TracingConfig::default()
    };
    Tracing::start(&config, &prometheus::Registry::new())
        .unwrap()
        .unwrap()
}

fn head(traceparent: Option<&str>) -> http::request::Parts {
    let mut builder = http::Request::post("/mcp");
    if let Some(tp) = traceparent {
        builder = builder.header("traceparent", tp);
    }
    builder.body(()).unwrap().into_parts().0
}

fn conn() -> ConnInfo {
    ConnInfo::new(SocketAddr::from(([127, 0, 0, 1], 5000)), false)
}

fn traceparent(headers: &http::HeaderMap) -> context::TraceParent {
    parse_traceparent(headers["traceparent"].as_bytes()).unwrap()
}

#[test]
fn tracing_off_starts_nothing() {
    let off = TracingConfig::default();
    assert!(
        Tracing::start(&off, &prometheus::Registry::new())
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_valid_client_traceparent_is_continued_and_replaced_by_the_server_span() {
    let t = tracing(1.0);
    let mut head = head(Some(CLIENT));
    head.headers
        .insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
    let span = t.server_span(&mut head, &conn());
    let client = parse_traceparent(CLIENT.as_bytes()).unwrap();
    let ours = traceparent(&head.headers);
    assert_eq!(ours.trace_id, client.trace_id);
    assert_ne!(
        ours.parent_id, client.parent_id,
        "the server span is a new span"
    );
    assert!(ours.sampled);
    assert_eq!(span.trace_id(), TraceId::from_bytes(client.trace_id));
    // tracestate goes on as the client sent it.
    assert_eq!(head.headers[TRACESTATE], "congo=t61rcWkgMzE");
}

#[tokio::test]
async fn an_invalid_client_traceparent_starts_a_new_trace() {
    let t = tracing(1.0);
    let bad = CLIENT.to_uppercase();
    let mut head = head(Some(&bad));
    head.headers
        .insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
    let span = t.server_span(&mut head, &conn());
    assert!(
        head.headers.get(TRACESTATE).is_none(),
        "a tracestate without its parent is not passed on"
    );
    let ours = traceparent(&head.headers);
    assert_ne!(
        ours.trace_id,
        parse_traceparent(CLIENT.as_bytes()).unwrap().trace_id
    );
    assert_eq!(span.trace_id(), TraceId::from_bytes(ours.trace_id));
    assert!(ours.sampled, "sampling 1.0 records new traces");
}

#[tokio::test]
async fn each_attempt_is_a_child_of_the_server_span_with_its_own_traceparent() {
    let t = tracing(1.0);
    let mut head = head(Some(CLIENT));
    let _span = t.server_span(&mut head, &conn());
    let server = traceparent(&head.headers);
    let parent = t.attempts_parent(&head.headers);
    let mut ids = Vec::new();
    for resend in 0..2 {
        let mut req = http::Request::new(());
        *req.uri_mut() = "http://127.0.0.1:3000/mcp?session=secret".parse().unwrap();
        *req.headers_mut() = head.headers.clone();
        let attempt = t.attempt(&parent, &mut req, "u", resend);
        let sent = traceparent(req.headers());
        assert_eq!(sent.trace_id, server.trace_id);
        assert_ne!(sent.parent_id, server.parent_id);
        ids.push(sent.parent_id);
        attempt.end(Ok(http::StatusCode::OK));
    }
    assert_ne!(ids[0], ids[1], "a retry is a span of its own");
}

#[tokio::test]
async fn the_clients_sampling_decision_wins_and_the_ratio_decides_new_traces() {
    // Sampling 0: a new trace is not recorded, but its context still goes upstream.
    let t = tracing(0.0);
    let mut root = head(None);
    let _span = t.server_span(&mut root, &conn());
    assert!(!traceparent(&root.headers).sampled);
    // A client that sampled its span is followed.
    let mut sampled = head(Some(CLIENT));
    let _span = t.server_span(&mut sampled, &conn());
    assert!(traceparent(&sampled.headers).sampled);
    // A client that did not is followed too, whatever the ratio.
    let t = tracing(1.0);
    let unsampled = CLIENT.replace("-01", "-00");
    let mut head = head(Some(&unsampled));
    let _span = t.server_span(&mut head, &conn());
    assert!(!traceparent(&head.headers).sampled);
}

#[tokio::test]
async fn a_job_run_is_a_child_of_the_stored_context_and_parents_its_attempts() {
    let t = tracing(1.0);
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", CLIENT.parse().unwrap());
    let span = t.job_span(&mut headers, "job-1", 0);
    let run = traceparent(&headers);
    let stored = parse_traceparent(CLIENT.as_bytes()).unwrap();
    assert_eq!(run.trace_id, stored.trace_id);
    assert_ne!(run.parent_id, stored.parent_id);
    span.end("answered", None);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_stalled_collector_one_export_timeout_at_most() {
    // A collector that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = TracingConfig {
        enabled: true,
        endpoint: format!("http://{addr}/v1/traces"),
        export_timeout: Duration::from_secs(3),
        ..TracingConfig::default()
    };
    let t = Tracing::start(&config, &prometheus::Registry::new())
        .unwrap()
        .unwrap();
    let mut head = head(None);
    t.server_span(&mut head, &conn()).end("complete", 0);
    let started = tokio::time::Instant::now();
    t.shutdown().await;
    assert!(started.elapsed() <= Duration::from_secs(3) + Duration::from_millis(100));
}
