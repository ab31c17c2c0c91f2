//! Getting finished spans to the collector without the request path ever waiting on it: a
//! bounded queue (a full one drops the span and counts it), one task that takes batches off it
//! and hands them to `opentelemetry-otlp`'s OTLP/HTTP exporter, and that exporter's HTTP client
//! on the sidecar's own hyper + rustls stack.
//!
//! The SDK's `BatchSpanProcessor` is not used: it exports from a thread of its own through a
//! blocking client (a second HTTP stack and runtime in the binary), and says how many spans it
//! dropped only in its own logs; here drops are a metric.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::{Notify, mpsc};

use crate::rate_limited_log::RateLimitedLog;

/// Finished spans waiting for export: the OpenTelemetry SDKs' default `maxQueueSize`. At a few
/// hundred bytes each, a full queue is about a megabyte; past it spans are dropped (counted),
/// never waited for.
pub const QUEUE_SPANS: usize = 2048;
/// Spans per export request: the SDKs' default `maxExportBatchSize`.
pub const BATCH_SPANS: usize = 512;
/// How long the first span of a batch waits for others: at low traffic one export a second, not
/// one per request; short enough that a trace shows up while the operator is still looking.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Largest collector answer read (an `ExportTraceServiceResponse` is a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// At most one warning per minute about failed exports (each failure is counted).
const EXPORT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// `mcp_sidecar_trace_spans_exported_total` and `..._dropped_total{reason}`.
#[derive(Debug, Clone)]
pub struct ExportMetrics {
    /// Spans the collector accepted.
    pub exported: IntCounter,
    /// Spans lost: `queue_full` (the collector is slower than the traffic, or down),
    /// `export_failed` (the collector refused or could not be reached).
    pub dropped: IntCounterVec,
}

impl ExportMetrics {
    /// Creates and registers the counters.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let exported = IntCounter::with_opts(Opts::new(
            "mcp_sidecar_trace_spans_exported_total",
            "Spans sent to the OTLP collector and accepted",
        ))?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_trace_spans_dropped_total",
                "Spans recorded but not exported, by reason (queue_full, export_failed)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        // Both reasons are visible at zero, so alerts need no `absent()`.
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        Ok(Self { exported, dropped })
    }
}

/// The SDK's span processor: puts each finished, sampled span on the queue without waiting.
#[derive(Debug)]
pub struct QueueProcessor {
    queue: mpsc::Sender<SpanData>,
    queue_full: IntCounter,
}

impl QueueProcessor {
    /// A processor feeding `queue`.
    pub fn new(queue: mpsc::Sender<SpanData>, metrics: &ExportMetrics) -> Self {
        Self {
            queue,
            queue_full: metrics.dropped.with_label_values(&["queue_full"]),
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        // Recorded but not sampled (never the case with the samplers used here): not exported.
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(span).is_err() {
            self.queue_full.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The export task flushes at the sidecar's shutdown ([`super::Tracing::shutdown`]).
        Ok(())
    }
}

/// Takes batches off the queue and exports them until `stop` is notified, then exports what
/// is left (each export bounded by the exporter's timeout) and returns.
pub async fn run_exports<E: SpanExporter>(
    exporter: E,
    mut queue: mpsc::Receiver<SpanData>,
    stop: Arc<Notify>,
    metrics: ExportMetrics,
    timeout: Duration,
) {
    let failures = RateLimitedLog::new(EXPORT_FAILURE_LOG_INTERVAL);
    let mut batch = Vec::with_capacity(BATCH_SPANS);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        // Wait for a first span, then up to `BATCH_DELAY` for the batch to fill.
        tokio::select! {
            n = queue.recv_many(&mut batch, BATCH_SPANS) => if n == 0 { break },
            () = &mut stopped => break,
        }
        let deadline = tokio::time::sleep(BATCH_DELAY);
        tokio::pin!(deadline);
        let mut stopping = false;
        while batch.len() < BATCH_SPANS {
            let room = BATCH_SPANS - batch.len();
            tokio::select! {
                n = queue.recv_many(&mut batch, room) => if n == 0 { break },
                () = &mut deadline => break,
                () = &mut stopped => { stopping = true; break },
            }
        }
        export(&exporter, &mut batch, &metrics, &failures, timeout).await;
        if stopping {
            break;
        }
    }
    // Shutdown: what is queued goes out, batch by batch.
    while let Ok(span) = queue.try_recv() {
        batch.push(span);
        if batch.len() == BATCH_SPANS {
            export(&exporter, &mut batch, &metrics, &failures, timeout).await;
        }
    }
    export(&exporter, &mut batch, &metrics, &failures, timeout).await;
}

async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    metrics: &ExportMetrics,
    failures: &RateLimitedLog,
    timeout: Duration,
) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let spans = std::mem::replace(batch, Vec::with_capacity(BATCH_SPANS));
    // The client bounds each request too; this also bounds the encoding and a stuck connect.
    let result = tokio::time::timeout(timeout, exporter.export(spans)).await;
    let error = match result {
        Ok(Ok(())) => {
            metrics.exported.inc_by(n);
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}", humantime::format_duration(timeout)),
    };
    metrics
        .dropped
        .with_label_values(&["export_failed"])
        .inc_by(n);
    if let Some(suppressed) = failures.admit(tokio::time::Instant::now()) {
        tracing::warn!(spans = n, suppressed, error = %error, "exporting spans to the OTLP collector failed; they are dropped");
    }
}

/// The OTLP exporter's HTTP client: hyper-util over rustls (system roots), as the JWKS fetcher
/// and the upstream clients use, so no second HTTP library is linked.
#[derive(Debug, Clone)]
pub struct HyperClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HyperClient {
    /// A client whose requests (answer included) take at most `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let connector = crate::tls::outbound_connector(Vec::new(), Some(timeout))?;
        // One export a second at most: keep the connection between them.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Ok(Self { client, timeout })
    }
}

#[async_trait::async_trait]
impl HttpClient for HyperClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::from("the collector did not answer in time"))?
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
