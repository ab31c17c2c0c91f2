//! The request path when the upstream cannot be reached: local resource exhaustion (EMFILE and
//! its kin) is the sidecar's shortage, not a backend outage, and the failures that come in
//! floods (open circuit, exhausted descriptors) are logged once per interval, not per request.
//!
//! The upstream's pool is the failing seam (`Pool::failing`): every connect fails with a given
//! errno, as `socket()` or `connect()` would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;
use crate::config::{BreakerConfig, UpstreamConfig};
use crate::local_resources::LocalResource;
use crate::resilience::State;
use crate::upstream::Pool;
use crate::upstream::Upstream;
use http::StatusCode;

/// A warning as written: its message and its `suppressed` field.
#[derive(Debug, Clone, PartialEq)]
struct Warning {
    message: String,
    suppressed: Option<u64>,
}

/// Records every WARN event.
struct Warnings(Arc<Mutex<Vec<Warning>>>);

#[derive(Default)]
struct Fields {
    message: String,
    suppressed: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "suppressed" {
            self.suppressed = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push(Warning {
                message: fields.message,
                suppressed: fields.suppressed,
            });
        }
    }
}

/// A proxy over one upstream `u` whose every connect fails with `errno`, with a breaker that
/// opens after three consecutive failures and the default retries (connect errors are retried).
fn proxy(errno: i32) -> (Proxy, Arc<Resilience>, Metrics) {
    proxy_over(&[("u", errno)])
}

/// A proxy over upstreams mounted at `/{name}`, each failing every connect with its errno.
fn proxy_over(failing: &[(&str, i32)]) -> (Proxy, Arc<Resilience>, Metrics) {
    let metrics = Metrics::new().unwrap();
    let upstreams: Vec<_> = failing
        .iter()
        .map(|&(name, errno)| {
            let mount = Some(format!("/{name}"));
            let mut config = UpstreamConfig::new(name, "http://127.0.0.1:9/mcp", mount);
            config.breaker = BreakerConfig {
                consecutive_failures: 3,
                ..BreakerConfig::default()
            };
            let mut upstream = Upstream::from_config(&config, &metrics).unwrap();
            upstream.client = Pool::failing("http://127.0.0.1:9/".parse().unwrap(), errno);
            Arc::new(upstream)
        })
        .collect();
    let resilience = Arc::new(Resilience::new(&upstreams, &metrics).unwrap());
    let proxy = Proxy::new(Router::new(upstreams), metrics.clone(), 1 << 20)
        .with_resilience(resilience.clone());
    (proxy, resilience, metrics)
}

fn tool_call() -> Request<Full<Bytes>> {
    tool_call_at("/u")
}

fn tool_call_at(path: &str) -> Request<Full<Bytes>> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    Request::post(path)
        .header(http::header::HOST, "127.0.0.1:8080")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn conn() -> ConnInfo {
    ConnInfo::new("127.0.0.1:40000".parse().unwrap(), false)
}

async fn reason(response: Response<ProxyBody>) -> (StatusCode, Option<String>, String) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reason = v["error"]["data"]["reason"].as_str().unwrap().to_owned();
    (status, retry_after, reason)
}

fn counter(metrics: &Metrics, kind: LocalResource) -> u64 {
    metrics
        .local_resource_errors
        .with_label_values(&[kind.label(), metrics::OP_CONNECT])
        .get()
}

#[tokio::test(start_paused = true)]
async fn local_resource_errors_on_connect_are_503_local_resources_and_leave_the_breaker_closed() {
    for kind in LocalResource::ALL {
        let (proxy, resilience, metrics) = proxy(kind.to_io_error().raw_os_error().unwrap());
        // Twice the breaker's threshold: as backend failures they would have opened it.
        for _ in 0..6 {
            let (status, retry_after, reason) =
                reason(proxy.serve(tool_call(), conn()).await).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
            assert_eq!(reason, "local_resources", "{kind:?}");
            assert_eq!(retry_after.as_deref(), Some("1"), "{kind:?}");
        }
        let breaker = resilience.breaker("u").unwrap().snapshot();
        assert_eq!(breaker.state, State::Closed, "{kind:?}");
        assert_eq!(breaker.consecutive_failures, 0, "{kind:?}");
        assert_eq!(counter(&metrics, kind), 6, "{kind:?}: counted");
        let m = resilience.metrics();
        assert_eq!(
            m.retries.with_label_values(&["u", "connect"]).get(),
            0,
            "{kind:?}: not retried"
        );
        assert_eq!(
            m.upstream_failures
                .with_label_values(&["u", "connect"])
                .get(),
            0,
            "{kind:?}: not a backend failure"
        );
        assert_eq!(
            metrics
                .upstream_errors
                .with_label_values(&["u", "connect"])
                .get(),
            0,
            "{kind:?}: not a backend connection error"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_is_still_a_backend_failure_that_opens_the_circuit() {
    let (proxy, resilience, _) = proxy(rustix::io::Errno::CONNREFUSED.raw_os_error());
    let (status, _, reason) = reason(proxy.serve(tool_call(), conn()).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(reason, "upstream_unreachable");
    // One request and its two retries: three consecutive failures.
    let breaker = resilience.breaker("u").unwrap().snapshot();
    assert_eq!(breaker.state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_circuit_open_answers_is_logged_once_per_interval_with_the_count() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Warnings(warnings.clone()));
    let _default = tracing::subscriber::set_default(subscriber);
    let (proxy, resilience, _) = proxy(rustix::io::Errno::CONNREFUSED.raw_os_error());
    // Opens the circuit (with its retries), then 85 requests fail fast within 10 s.
    proxy.serve(tool_call(), conn()).await;
    assert_eq!(
        resilience.breaker("u").unwrap().snapshot().state,
        State::Open
    );
    for _ in 0..85 {
        let (status, _, reason) = reason(proxy.serve(tool_call(), conn()).await).await;
        assert_eq!((status.as_u16(), reason.as_str()), (503, "circuit_open"));
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let seen = warnings.lock().unwrap().clone();
    let opened = seen
        .iter()
        .filter(|w| w.message == "circuit opened")
        .count();
    assert_eq!(opened, 1, "the state change is logged once: {seen:#?}");
    let failed: Vec<_> = seen
        .iter()
        .filter(|w| w.message == "request failed")
        .collect();
    // The 502 that opened the circuit, and the first fast-fail.
    assert_eq!(failed.len(), 2, "{seen:#?}");
    assert_eq!(failed[0].suppressed, None, "a 502 is logged each time");
    assert_eq!(failed[1].suppressed, Some(0));
    // After the interval the next fast-fail is written with the count left out.
    tokio::time::advance(Duration::from_secs(2)).await;
    proxy.serve(tool_call(), conn()).await;
    let seen = warnings.lock().unwrap().clone();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.message.as_str(), last.suppressed),
        ("request failed", Some(84)),
        "{seen:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_local_resource_errors_is_logged_once_per_interval_per_kind() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Warnings(warnings.clone()));
    let _default = tracing::subscriber::set_default(subscriber);
    let errno = |kind: LocalResource| kind.to_io_error().raw_os_error().unwrap();
    let (proxy, _, _) = proxy_over(&[
        ("a", errno(LocalResource::Emfile)),
        ("b", errno(LocalResource::Enobufs)),
    ]);
    for _ in 0..50 {
        proxy.serve(tool_call_at("/a"), conn()).await;
    }
    proxy.serve(tool_call_at("/b"), conn()).await;
    let seen = warnings.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|w| w.suppressed).collect::<Vec<_>>(),
        [Some(0), Some(0)],
        "one line for EMFILE, one for ENOBUFS: {seen:#?}"
    );
    tokio::time::advance(crate::rate_limited_log::FLOOD_LOG_INTERVAL).await;
    proxy.serve(tool_call_at("/a"), conn()).await;
    let seen = warnings.lock().unwrap().clone();
    assert_eq!(seen.last().unwrap().suppressed, Some(49), "{seen:#?}");
}
