//! The logging phase: one access-log event per request, emitted when the response body ends (or
//! the client goes away), and the open-SSE-streams gauge, which must drop however a stream ends.
//!
//! The query string is never logged: legacy MCP endpoints carry session ids there, and some
//! clients put tokens in it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntGauge;
use tokio::time::Instant;

use crate::access_line::AccessFields;
use crate::body::{BoxError, StreamIdleTimeout};

tokio::task_local! {
    /// Set by the server in every connection task (and every HTTP/2 stream task): whether the
    /// sidecar itself is closing what is still open because its shutdown's grace period ran out.
    pub(crate) static CLOSING: std::sync::Arc<std::sync::atomic::AtomicBool>;
}

/// Whether a response dropped before its end now is being closed by the sidecar's shutdown
/// rather than abandoned by its client.
fn closed_by_shutdown() -> bool {
    CLOSING
        .try_with(|closing| closing.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap_or(false)
}

/// What the access log says about one request.
#[derive(Debug)]
pub struct AccessLog {
    /// HTTP method.
    pub method: http::Method,
    /// The request URI; only its path is logged.
    pub uri: http::Uri,
    /// Status sent to the client.
    pub status: u16,
    /// Upstream name; `None` is logged as `none`.
    pub upstream: Option<std::sync::Arc<str>>,
    /// Request id.
    pub request_id: http::HeaderValue,
    /// When the request arrived.
    pub start: Instant,
    /// Time to response headers.
    pub ttfb: Duration,
    /// Why the sidecar answered itself, if it did.
    pub error: Option<&'static str>,
    /// The authenticated caller's subject (never its credential).
    pub subject: Option<String>,
    /// The request's server span when tracing is on: its trace id goes into the line, and it
    /// ends with the line.
    pub trace: Option<Box<crate::trace::ServerSpan>>,
}

impl AccessLog {
    fn upstream(&self) -> &str {
        self.upstream
            .as_deref()
            .unwrap_or(crate::metrics::NO_UPSTREAM)
    }

    fn request_id(&self) -> &str {
        crate::headers::request_id_str(&self.request_id)
    }

    fn emit(mut self, bytes: u64, outcome: &'static str) {
        let trace = self.trace.take();
        let trace_id = trace
            .as_ref()
            .map(|t| crate::trace::context::trace_id_hex(t.trace_id()));
        self.write(bytes, outcome, trace_id.as_ref());
        if let Some(span) = trace {
            span.end(outcome, bytes);
        }
    }

    fn write(&self, bytes: u64, outcome: &str, trace_id: Option<&[u8; 32]>) {
        // `RUST_LOG` decides as for any event (`access=off`, `warn`, ...); the check is a cached
        // per-callsite answer.
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        // Lowercase hex digits: always UTF-8.
        let trace_id = trace_id
            .and_then(|id| std::str::from_utf8(id).ok())
            .unwrap_or("");
        let fields = AccessFields {
            method: self.method.as_str(),
            path: self.uri.path(),
            status: self.status,
            upstream: self.upstream(),
            request_id: self.request_id(),
            duration: self.start.elapsed(),
            ttfb: self.ttfb,
            bytes,
            outcome,
            error: self.error.unwrap_or(""),
            subject: self.subject.as_deref().unwrap_or(""),
            trace_id,
        };
        match crate::log_writer::access_sink() {
            Some(sink) => sink.write(&fields),
            // Embedded (tests, a host program with its own subscriber): a plain tracing event.
            None => tracing::info!(
                target: "access",
                method = %fields.method,
                path = %fields.path,
                status = fields.status,
                upstream = %fields.upstream,
                request_id = %fields.request_id,
                trace_id = fields.trace_id,
                duration_ms = fields.duration.as_secs_f64() * 1000.0,
                ttfb_ms = fields.ttfb.as_secs_f64() * 1000.0,
                bytes,
                outcome,
                error = fields.error,
                subject = fields.subject,
                "request"
            ),
        }
    }
}

/// Counts a stream in a gauge for as long as it lives.
#[derive(Debug)]
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pin_project_lite::pin_project! {
    /// Wraps a response body; logs the request when the body finishes or is dropped.
    pub struct ObservedBody<B: Body> {
        #[pin]
        inner: B,
        log: Option<AccessLog>,
        bytes: u64,
        _stream: Option<GaugeGuard>,
        stream_errors: Option<prometheus::IntCounterVec>,
        idle_timeouts: Option<prometheus::IntCounterVec>,
    }

    impl<B: Body> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(log) = this.log.take() {
                // A body hyper never had to poll (empty, HEAD) is complete; anything else dropped
                // before its end was either cut by the shutdown (the grace period ran out) or
                // abandoned by its client.
                let outcome = if this.inner.is_end_stream() {
                    "complete"
                } else if closed_by_shutdown() {
                    "shutdown"
                } else {
                    "client_gone"
                };
                log.emit(*this.bytes, outcome);
            }
        }
    }
}

impl<B: Body> std::fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<B: Body> ObservedBody<B> {
    /// `stream` counts the body in the SSE gauge; `stream_errors` counts abnormal ends.
    pub fn new(
        inner: B,
        log: AccessLog,
        stream: Option<GaugeGuard>,
        stream_errors: Option<prometheus::IntCounterVec>,
    ) -> Self {
        Self {
            inner,
            log: Some(log),
            bytes: 0,
            _stream: stream,
            stream_errors,
            idle_timeouts: None,
        }
    }

    /// Also counts idle timeouts in `timeouts{upstream, kind="stream_idle"}`.
    pub fn with_idle_timeouts(mut self, timeouts: Option<prometheus::IntCounterVec>) -> Self {
        self.idle_timeouts = timeouts;
        self
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                // hyper stops polling a body whose announced length has been sent, so the end
                // is noticed here rather than by a final `None`.
                if this.inner.is_end_stream()
                    && let Some(log) = this.log.take()
                {
                    log.emit(*this.bytes, "complete");
                }
            }
            Poll::Ready(Some(Err(err))) => {
                let reason = if err.is::<StreamIdleTimeout>() {
                    "idle_timeout"
                } else {
                    "upstream_error"
                };
                if let Some(log) = this.log.take() {
                    if let Some(counter) = this.stream_errors {
                        counter.with_label_values(&[log.upstream(), reason]).inc();
                    }
                    if let Some(counter) = this.idle_timeouts
                        && reason == "idle_timeout"
                    {
                        counter
                            .with_label_values(&[log.upstream(), "stream_idle"])
                            .inc();
                    }
                    tracing::warn!(request_id = %log.request_id(), error = %err, "response stream ended abnormally");
                    log.emit(*this.bytes, reason);
                }
            }
            Poll::Ready(None) => {
                if let Some(log) = this.log.take() {
                    log.emit(*this.bytes, "complete");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
