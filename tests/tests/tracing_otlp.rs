//! OpenTelemetry traces through an in-process sidecar, exported to a real OTLP/HTTP receiver
//! started here (a hyper server decoding `ExportTraceServiceRequest` with `opentelemetry-proto`)
//! in front of a byte-capturing backend that shows the `traceparent` each attempt carried: the
//! client's trace is continued, each attempt (each retry) is a client span of its own whose id
//! the backend got, a job run sits between the submitting request and its attempt, the access
//! log names the trace, sampling 0 records no new trace, and a collector that is down or stalls
//! fails no request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_e2e_tests::{RunningSidecar, call, client, config, eventually, metric_value, rpc, start};
use mcp_fixtures::RawBackend;
use mcp_sidecar::config::{ToolConfig, UpstreamConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use tokio::net::TcpListener;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An OTLP/HTTP receiver: every span of every export request it was sent, with its service.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Self::default();
        let shared = collector.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, hyper::Error>(shared.receive(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (collector, addr)
    }

    async fn receive(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let right = req.method() == hyper::Method::POST
            && req.uri().path() == "/v1/traces"
            && req
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/x-protobuf");
        if !right {
            let mut bad = hyper::Response::new(Full::new(Bytes::from_static(b"no")));
            *bad.status_mut() = hyper::StatusCode::NOT_FOUND;
            return bad;
        }
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
        let mut spans = self.spans.lock().unwrap();
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| value(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        let answer = ExportTraceServiceResponse::default().encode_to_vec();
        let mut ok = hyper::Response::new(Full::new(Bytes::from(answer)));
        ok.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        ok
    }

    /// The spans of `trace` (hex) received so far.
    fn trace(&self, trace: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn services(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(service, _)| service.clone())
            .collect()
    }
}

fn value(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        Any::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| value(kv.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn of_kind(spans: &[Span], kind: SpanKind) -> Vec<Span> {
    spans
        .iter()
        .filter(|s| s.kind == kind as i32)
        .cloned()
        .collect()
}

/// The access log's lines (JSON), for every test of this binary: the sink is per process.
fn access_lines() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        // The access log obeys the subscriber's level, as `RUST_LOG` in the binary.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init();
        mcp_sidecar::log_writer::install_access_sink(
            mcp_sidecar::log_writer::LogWriter::new(Box::new(Shared(lines.clone())), false),
            mcp_sidecar::access_line::LogFormat::Json,
        );
        lines
    })
}

/// The access-log line of the request with id `request_id`.
fn access_line(request_id: &str) -> Option<serde_json::Value> {
    let text = String::from_utf8(access_lines().lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["request_id"] == request_id)
}

/// A sidecar in front of `backend` (mounted at `/mcp`, breaker off so failures stay attempts)
/// exporting to `endpoint` with `sampling`.
async fn traced_sidecar(backend: &RawBackend, endpoint: &str, sampling: f64) -> RunningSidecar {
    let mut up = UpstreamConfig::new(
        "u",
        format!("http://{}/mcp", backend.addr()),
        Some("/mcp".into()),
    );
    up.breaker.enabled = false;
    // A configured tool is named in span names (others are `other`, as in the metrics).
    up.tool = vec![ToolConfig {
        name: "search".into(),
        timeout: None,
        stream_idle_timeout: None,
        idempotent: false,
        breaker: None,
        offload: None,
        tasks: None,
        task_wait: None,
        job_deadline: None,
    }];
    let mut cfg = config(vec![up]);
    cfg.tracing.enabled = true;
    cfg.tracing.endpoint = endpoint.to_owned();
    cfg.tracing.sampling = sampling;
    cfg.tracing.service_name = "sidecar-under-test".into();
    cfg.tracing.export_timeout = Duration::from_secs(2);
    start(cfg).await
}

async fn post(
    sidecar: &RunningSidecar,
    body: String,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.unwrap()
}

/// The value of `name` in each request the backend received, in order.
fn backend_fields(backend: &RawBackend, name: &str) -> Vec<String> {
    backend
        .requests()
        .iter()
        .map(|raw| {
            let text = String::from_utf8_lossy(raw).to_lowercase();
            let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// `00-<trace>-<span>-<flags>` split.
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

#[tokio::test]
async fn a_client_trace_is_continued_through_server_and_attempt_spans_to_the_backend() {
    access_lines();
    let (collector, addr) = Collector::start().await;
    let backend = RawBackend::start().await.unwrap();
    let sidecar = traced_sidecar(&backend, &format!("http://{addr}/v1/traces"), 1.0).await;

    let resp = post(
        &sidecar,
        call(1, "search", json!({"q": "x"})),
        &[
            ("traceparent", CLIENT_TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    resp.bytes().await.unwrap();

    eventually("the server and client spans are exported", || {
        collector.trace(TRACE_ID).len() >= 2
    })
    .await;
    let spans = collector.trace(TRACE_ID);
    let server = of_kind(&spans, SpanKind::Server);
    let attempts = of_kind(&spans, SpanKind::Client);
    assert_eq!((server.len(), attempts.len()), (1, 1), "{spans:#?}");
    let (server, attempt) = (&server[0], &attempts[0]);
    // The server span continues the client's span.
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(server.name, "tools/call search");
    assert_eq!(attr(server, "http.request.method").unwrap(), "POST");
    assert_eq!(attr(server, "url.path").unwrap(), "/mcp");
    assert_eq!(attr(server, "http.route").unwrap(), "/mcp");
    assert_eq!(attr(server, "http.response.status_code").unwrap(), "200");
    assert_eq!(attr(server, "mcp.method.name").unwrap(), "tools/call");
    assert_eq!(attr(server, "gen_ai.tool.name").unwrap(), "search");
    assert_eq!(attr(server, "jsonrpc.request.id").unwrap(), "1");
    assert_eq!(attr(server, "mcp_sidecar.outcome").unwrap(), "complete");
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    // The attempt is the server span's child, and the backend was told so.
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attr(attempt, "http.response.status_code").unwrap(), "200");
    assert_eq!(
        attr(attempt, "server.address").unwrap(),
        backend.addr().ip().to_string()
    );
    let sent = backend_fields(&backend, "traceparent");
    assert_eq!(sent.len(), 1);
    let (trace, parent, flags) = parts(&sent[0]);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(
        parent,
        hex(&attempt.span_id),
        "the backend's parent is the attempt"
    );
    assert_eq!(flags, "01");
    assert_eq!(
        backend_fields(&backend, "tracestate"),
        ["congo=t61rcwkgmze"]
    );
    assert!(
        collector
            .services()
            .iter()
            .all(|s| s == "sidecar-under-test")
    );

    // The access log names the trace beside the request id.
    eventually("the access-log line is written", || {
        access_line(&request_id).is_some()
    })
    .await;
    assert_eq!(access_line(&request_id).unwrap()["trace_id"], TRACE_ID);
    sidecar.stop().await;
}

#[tokio::test]
async fn each_retry_is_a_client_span_of_its_own_that_the_backend_is_told() {
    let (collector, addr) = Collector::start().await;
    let backend = RawBackend::start().await.unwrap();
    backend.set_answer(&b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"[..]);
    let sidecar = traced_sidecar(&backend, &format!("http://{addr}/v1/traces"), 1.0).await;
    // tools/list is idempotent by default: a 503 is retried twice.
    let resp = post(
        &sidecar,
        rpc(2, "tools/list", json!({})),
        &[("traceparent", CLIENT_TRACEPARENT)],
    )
    .await;
    assert_eq!(resp.status(), 503);
    resp.bytes().await.unwrap();

    eventually("three attempts and the server span are exported", || {
        collector.trace(TRACE_ID).len() >= 4
    })
    .await;
    let spans = collector.trace(TRACE_ID);
    let server = of_kind(&spans, SpanKind::Server);
    assert_eq!(server.len(), 1);
    assert_eq!(
        attr(&server[0], "http.response.status_code").unwrap(),
        "503"
    );
    let mut attempts = of_kind(&spans, SpanKind::Client);
    attempts.sort_by_key(|s| attr(s, "http.request.resend_count").unwrap_or_default());
    assert_eq!(attempts.len(), 3, "{spans:#?}");
    let resends: Vec<_> = attempts
        .iter()
        .map(|s| attr(s, "http.request.resend_count"))
        .collect();
    assert_eq!(resends, [None, Some("1".into()), Some("2".into())]);
    for a in &attempts {
        assert_eq!(a.parent_span_id, server[0].span_id);
        assert_eq!(attr(a, "error.type").unwrap(), "503");
    }
    // Each request the backend got named its own attempt.
    let mut sent: Vec<String> = backend_fields(&backend, "traceparent")
        .iter()
        .map(|tp| parts(tp).1)
        .collect();
    let mut ids: Vec<String> = attempts.iter().map(|a| hex(&a.span_id)).collect();
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
    sidecar.stop().await;
}

#[tokio::test]
async fn a_job_run_is_a_span_between_the_submitting_request_and_its_attempt() {
    let (collector, addr) = Collector::start().await;
    let backend = RawBackend::start().await.unwrap();
    let sidecar = traced_sidecar(&backend, &format!("http://{addr}/v1/traces"), 1.0).await;
    let resp = post(
        &sidecar,
        call(1, "crawl", json!({})),
        &[
            ("traceparent", CLIENT_TRACEPARENT),
            ("prefer", "respond-async"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 202);
    resp.bytes().await.unwrap();

    eventually(
        "the submission, the run and its attempt are exported",
        || collector.trace(TRACE_ID).len() >= 3,
    )
    .await;
    let spans = collector.trace(TRACE_ID);
    let server = of_kind(&spans, SpanKind::Server);
    let run: Vec<_> = spans.iter().filter(|s| s.name == "job run").collect();
    let attempts = of_kind(&spans, SpanKind::Client);
    assert_eq!(
        (server.len(), run.len(), attempts.len()),
        (1, 1, 1),
        "{spans:#?}"
    );
    assert_eq!(
        attr(&server[0], "http.response.status_code").unwrap(),
        "202"
    );
    assert_eq!(run[0].parent_span_id, server[0].span_id);
    assert_eq!(attr(run[0], "mcp_sidecar.job.outcome").unwrap(), "answered");
    assert_eq!(attempts[0].parent_span_id, run[0].span_id);
    let sent = backend_fields(&backend, "traceparent");
    assert_eq!(parts(&sent[0]).1, hex(&attempts[0].span_id));
    sidecar.stop().await;
}

#[tokio::test]
async fn sampling_zero_records_no_new_trace_but_follows_a_sampled_client() {
    let (collector, addr) = Collector::start().await;
    let backend = RawBackend::start().await.unwrap();
    let sidecar = traced_sidecar(&backend, &format!("http://{addr}/v1/traces"), 0.0).await;
    // A new trace: not recorded, but its (unsampled) context still reaches the backend.
    let resp = post(&sidecar, rpc(1, "tools/list", json!({})), &[]).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let sent = backend_fields(&backend, "traceparent");
    let (root_trace, _, flags) = parts(&sent[0]);
    assert_eq!(flags, "00");
    // A client that sampled its span is followed; once its spans are in, the root's would be.
    let resp = post(
        &sidecar,
        rpc(2, "tools/list", json!({})),
        &[("traceparent", CLIENT_TRACEPARENT)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    eventually("the sampled client's spans are exported", || {
        collector.trace(TRACE_ID).len() >= 2
    })
    .await;
    sidecar.stop().await;
    assert!(collector.trace(&root_trace).is_empty());
}

#[tokio::test]
async fn a_collector_that_is_down_or_stalls_fails_no_request() {
    // Down: a port nothing listens on. Stalled: a listener that accepts and never answers.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let stalled = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = stalled.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    for collector in [down, stalled_addr] {
        let backend = RawBackend::start().await.unwrap();
        let sidecar = traced_sidecar(&backend, &format!("http://{collector}/v1/traces"), 1.0).await;
        for id in 0..20 {
            let resp = post(&sidecar, rpc(id, "tools/list", json!({})), &[]).await;
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }
        // The spans were recorded and lost on the way out, counted.
        let series = "mcp_sidecar_trace_spans_dropped_total{reason=\"export_failed\"}";
        for _ in 0..200 {
            if metric_value(&sidecar.metrics().await, series).unwrap_or(0.0) > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(metric_value(&sidecar.metrics().await, series).unwrap() > 0.0);
        sidecar.stop().await;
    }
}

#[tokio::test]
async fn with_tracing_off_the_trace_fields_reach_the_backend_untouched() {
    let backend = RawBackend::start().await.unwrap();
    let up = UpstreamConfig::new(
        "u",
        format!("http://{}/mcp", backend.addr()),
        Some("/mcp".into()),
    );
    let sidecar = start(config(vec![up])).await;
    let odd = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let resp = post(
        &sidecar,
        rpc(1, "tools/list", json!({})),
        &[("traceparent", odd), ("tracestate", "a=b")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        backend_fields(&backend, "traceparent"),
        [odd.to_lowercase()]
    );
    assert_eq!(backend_fields(&backend, "tracestate"), ["a=b"]);
    assert!(
        !sidecar
            .metrics()
            .await
            .contains("mcp_sidecar_trace_spans_dropped_total")
    );
    sidecar.stop().await;
}
