//! OpenTelemetry traces (`[tracing]`, off by default): a server span per request, a client span
//! per upstream attempt (retries make several), a span per job run, W3C Trace Context accepted
//! from clients and sent to the backend, and OTLP/HTTP export off the request path ([`export`]).
//!
//! The request's header fields carry the context from phase to phase: once the server span has
//! started, the request's `traceparent` names it (the client's, read strictly by [`context`], is
//! replaced), so whatever later reads the fields (an attempt, a job stored from them and run
//! later) finds its parent there without another handle on the request path. Each attempt then
//! writes its own span into the `traceparent` the backend gets; `tracestate` goes as the client
//! sent it.
//!
//! Disabled, nothing here runs: the request path holds `Option<Arc<Tracing>>` and pays one
//! `None` check per place, no header is read and nothing is allocated.

pub mod context;
pub mod export;

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanExporter as _};
use tokio::sync::{Notify, mpsc};

use crate::config::TracingConfig;
use crate::mcp::Classified;
use crate::rpc_metrics::RpcMetrics;
use context::{TRACEPARENT, remote_parent, traceparent_value};

/// Longest tool name or JSON-RPC id recorded on a span: the metrics' bound on tool names; a
/// client cannot make the sidecar export megabytes per span.
const MAX_ATTRIBUTE_BYTES: usize = crate::rpc_metrics::MAX_TOOL_NAME_BYTES;

/// The sidecar's tracer and its exporter task.
#[derive(Debug)]
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    stop: Arc<Notify>,
    exports: Mutex<Option<tokio::task::JoinHandle<()>>>,
    export_timeout: Duration,
}

impl Tracing {
    /// The tracer for `config`, or `None` when tracing is off. Spawns the export task, so it
    /// runs on the runtime; registers the export counters in `registry`.
    pub fn start(
        config: &TracingConfig,
        registry: &prometheus::Registry,
    ) -> Result<Option<Arc<Self>>, String> {
        if !config.enabled {
            return Ok(None);
        }
        let metrics = export::ExportMetrics::new(registry).map_err(|e| e.to_string())?;
        let client = export::HyperClient::new(config.export_timeout)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| {
                format!("the OTLP exporter (tracing.endpoint, OTEL_EXPORTER_OTLP_* variables): {e}")
            })?;
        let resource = Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", crate::build_info::VERSION))
            .build();
        exporter.set_resource(&resource);
        let (queue, spans) = mpsc::channel(export::QUEUE_SPANS);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(export::QueueProcessor::new(queue, &metrics))
            // A client's decision is kept (its sampled flag); new traces get the ratio.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mcp-sidecar");
        let stop = Arc::new(Notify::new());
        let exports = tokio::spawn(export::run_exports(
            exporter,
            spans,
            stop.clone(),
            metrics,
            config.export_timeout,
        ));
        Ok(Some(Arc::new(Self {
            tracer,
            provider,
            stop,
            exports: Mutex::new(Some(exports)),
            export_timeout: config.export_timeout,
        })))
    }

    /// Exports what is queued and stops the export task, within one export timeout in all: a
    /// collector that does not answer must not hold up the process's exit (what did not go out
    /// by then is dropped). Spans ended after this are dropped too.
    pub async fn shutdown(&self) {
        let task = self
            .exports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut task) = task else { return };
        self.stop.notify_one();
        if tokio::time::timeout(self.export_timeout, &mut task)
            .await
            .is_err()
        {
            task.abort();
            tracing::warn!(
                "the OTLP collector did not take the last spans in time; they are dropped"
            );
        }
        let _ = self.provider.shutdown();
    }

    /// Starts a request's server span: a child of the client's span when its `traceparent` is
    /// valid, else a new trace (and the client's `tracestate` is dropped with its parent). The
    /// request's `traceparent` names the new span from here on.
    pub fn server_span(
        &self,
        head: &mut http::request::Parts,
        conn: &crate::conn_info::ConnInfo,
    ) -> Box<ServerSpan> {
        let parent = match remote_parent(&head.headers) {
            Some(cx) => Context::new().with_remote_span_context(cx),
            None => {
                // A new trace: a `tracestate` without a valid parent belongs to no trace, and
                // W3C Trace Context says it goes with the parent (it is not passed on).
                head.headers.remove(context::TRACESTATE);
                Context::new()
            }
        };
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new(
            "http.request.method",
            head.method.as_str().to_owned(),
        ));
        attributes.push(KeyValue::new("url.path", head.uri.path().to_owned()));
        attributes.push(KeyValue::new(
            "url.scheme",
            if conn.tls { "https" } else { "http" },
        ));
        attributes.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(head.version),
        ));
        attributes.push(KeyValue::new(
            "client.address",
            conn.remote.ip().to_string(),
        ));
        attributes.push(KeyValue::new("client.port", i64::from(conn.remote.port())));
        if let Some(agent) = head
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", bounded(agent)));
        }
        let span = self
            .tracer
            .span_builder(head.method.as_str().to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        let cx = span.span_context().clone();
        head.headers.insert(TRACEPARENT, traceparent_value(&cx));
        Box::new(ServerSpan {
            span,
            trace_id: cx.trace_id(),
            method: head.method.clone(),
        })
    }

    /// The parent of a request's upstream attempts: the span its `traceparent` names (the
    /// server span or job run that put it there).
    pub fn attempts_parent(&self, headers: &http::HeaderMap) -> Context {
        parent_context(headers)
    }

    /// Starts the client span of one upstream attempt (`resend`: retries before it) and names
    /// it in the request's `traceparent`.
    pub fn attempt<B>(
        &self,
        parent: &Context,
        req: &mut http::Request<B>,
        upstream: &str,
        resend: u32,
    ) -> AttemptSpan {
        let uri = req.uri();
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new(
            "http.request.method",
            req.method().as_str().to_owned(),
        ));
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        // Scheme, authority and path: never the query, which legacy servers fill with session
        // ids and some clients with tokens.
        attributes.push(KeyValue::new(
            "url.full",
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            ),
        ));
        attributes.push(KeyValue::new("mcp_sidecar.upstream", upstream.to_owned()));
        if resend > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(resend),
            ));
        }
        let span = self
            .tracer
            .span_builder(req.method().as_str().to_owned())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        req.headers_mut()
            .insert(TRACEPARENT, traceparent_value(span.span_context()));
        AttemptSpan {
            span: Box::new(span),
        }
    }

    /// Starts the span of a job's run (`attempt`: its runs before this one), a child of the
    /// request that submitted it (named by the stored `traceparent`), and names it in the job's
    /// request fields for the attempts that follow.
    pub fn job_span(&self, headers: &mut http::HeaderMap, job: &str, attempt: u32) -> JobSpan {
        let parent = parent_context(headers);
        let span = self
            .tracer
            .span_builder("job run")
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("mcp_sidecar.job.id", job.to_owned()),
                KeyValue::new("mcp_sidecar.job.attempt", i64::from(attempt)),
            ])
            .start_with_context(&self.tracer, &parent);
        headers.insert(TRACEPARENT, traceparent_value(span.span_context()));
        JobSpan {
            span: Box::new(span),
        }
    }
}

/// The context a request's fields name as its parent (an empty one: a new trace).
fn parent_context(headers: &http::HeaderMap) -> Context {
    match remote_parent(headers) {
        Some(cx) => Context::new().with_remote_span_context(cx),
        None => Context::new(),
    }
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `text` cut to at most [`MAX_ATTRIBUTE_BYTES`] (on a character boundary).
fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_ATTRIBUTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The upstream a request was routed to, as its server span records it.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    /// The upstream's name.
    pub name: &'a str,
    /// Where it is mounted (the span's `http.route`).
    pub mount: &'a str,
    /// Its per-tool labels: a tool in the span's name is one the metrics label.
    pub rpc: &'a RpcMetrics,
}

/// Why the sidecar answered a request or an attempt failed: the error's reason label and its
/// message (the span's `error.type` and status description).
#[derive(Clone, Copy)]
pub struct Failed<'a> {
    /// `ProxyError::reason`.
    pub reason: &'static str,
    /// The error itself, written only when the span is recorded.
    pub detail: &'a dyn std::fmt::Display,
}

impl std::fmt::Debug for Failed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failed")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// A request's server span, ended when its answer's body ends (or is dropped). Handed out
/// boxed: the request's future and its access-log record hold one pointer, not the span.
#[derive(Debug)]
pub struct ServerSpan {
    span: opentelemetry_sdk::trace::Span,
    trace_id: TraceId,
    /// The request's method, the first word of the span's name.
    method: http::Method,
}

impl ServerSpan {
    /// The trace the request belongs to (for the access log).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// Records what the request turned out to be: the upstream (its mount is the route), the
    /// MCP method and tool of a single message, the status and the sidecar's error reason.
    pub fn answered(
        &mut self,
        upstream: Option<Routed<'_>>,
        classified: Option<&Classified>,
        status: http::StatusCode,
        error: Option<Failed<'_>>,
    ) {
        let span = &mut self.span;
        if !span.is_recording() {
            return;
        }
        let method = self.method.as_str();
        let mut name = method.to_owned();
        if let Some(u) = &upstream {
            span.set_attribute(KeyValue::new("http.route", u.mount.to_owned()));
            span.set_attribute(KeyValue::new("mcp_sidecar.upstream", u.name.to_owned()));
            name = format!("{method} {}", u.mount);
        }
        if let Some(message) = classified.and_then(Classified::single) {
            if let Some(m) = &message.method {
                span.set_attribute(KeyValue::new("mcp.method.name", bounded(m)));
                // The span name stays low-cardinality: a method the metrics know, a tool they
                // label (anything else is `other`).
                let known = crate::rpc_metrics::KNOWN_METHODS.contains(&m.as_str());
                let tool = message
                    .tool
                    .as_deref()
                    .zip(upstream.as_ref())
                    .map(|(t, u)| u.rpc.tool_label(Some(t)));
                name = match (known, tool) {
                    (true, Some(tool)) => format!("{m} {tool}"),
                    (true, None) => m.clone(),
                    (false, _) => name,
                };
            }
            if let Some(tool) = &message.tool {
                span.set_attribute(KeyValue::new("gen_ai.tool.name", bounded(tool)));
            }
            if let Some(id) = &message.id {
                span.set_attribute(KeyValue::new(
                    "jsonrpc.request.id",
                    bounded(&id.to_string()),
                ));
            }
        }
        span.update_name(name);
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some(err) = &error {
            span.set_attribute(KeyValue::new("error.type", err.reason));
        }
        // A server span fails on 5xx only: a 4xx is the client's error, not the request's.
        if status.is_server_error() {
            let description = match &error {
                Some(err) => Cow::Owned(err.detail.to_string()),
                None => Cow::Borrowed(""),
            };
            span.set_status(Status::error(description));
            if error.is_none() {
                span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
            }
        }
    }

    /// Ends the span when the answer's body has ended: how it ended and the bytes sent.
    pub fn end(mut self: Box<Self>, outcome: &'static str, bytes: u64) {
        if self.span.is_recording() {
            self.span
                .set_attribute(KeyValue::new("mcp_sidecar.outcome", outcome));
            self.span.set_attribute(KeyValue::new(
                "http.response.body.size",
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ));
        }
        self.span.end();
    }
}

/// One upstream attempt's client span, ended when the answer's head (or the failure) is back.
/// Boxed: it lives in the send's future, which stays small for the requests of a sidecar
/// without tracing.
#[derive(Debug)]
pub struct AttemptSpan {
    span: Box<opentelemetry_sdk::trace::Span>,
}

impl AttemptSpan {
    /// Ends the span with the backend's status, or the error the attempt ended in.
    pub fn end(mut self, result: Result<http::StatusCode, Failed<'_>>) {
        if self.span.is_recording() {
            match result {
                Ok(status) => {
                    self.span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status.as_u16()),
                    ));
                    // A client span fails on any 4xx or 5xx.
                    if status.is_client_error() || status.is_server_error() {
                        self.span
                            .set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
                        self.span.set_status(Status::error(""));
                    }
                }
                Err(err) => {
                    self.span
                        .set_attribute(KeyValue::new("error.type", err.reason));
                    self.span.set_status(Status::error(err.detail.to_string()));
                }
            }
        }
        self.span.end();
    }
}

/// A job run's span.
#[derive(Debug)]
pub struct JobSpan {
    span: Box<opentelemetry_sdk::trace::Span>,
}

impl JobSpan {
    /// Ends the span with the run's outcome (`answered`, `failed`, ...); `error` says why it
    /// failed.
    pub fn end(mut self, outcome: &'static str, error: Option<&str>) {
        if self.span.is_recording() {
            self.span
                .set_attribute(KeyValue::new("mcp_sidecar.job.outcome", outcome));
            if let Some(message) = error {
                self.span.set_status(Status::error(message.to_owned()));
            }
        }
        self.span.end();
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
