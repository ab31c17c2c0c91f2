//! The request path, written down once: [`Proxy::serve`] runs the phases in order, and each phase
//! is a function of its own below it.
//!
//! ```text
//! serve:     request id + span + metrics + access log   (outermost; every error becomes a response)
//! dispatch:  path sanity -> route to upstream -> method check
//!            -> POST: read the body once (bounded, 413 above) and classify it (kind, method, tool, id)
//!            -> upstream request headers (hop-by-hop, Host, X-Forwarded-*, X-Request-Id)
//!            -> pooled client with response timeout
//!            -> response headers back; SSE passthrough (keepalive, idle timeout, endpoint rewrite)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::{
    BoxError, EndpointRewrite, EndpointRewriteBody, ProxyBody, SseBody, full, read_prefix,
};
use crate::error::ProxyError;
use crate::headers::{self, ForwardContext};
use crate::mcp::{self, Classified};
use crate::metrics::{self, Metrics};
use crate::observe::{AccessLog, GaugeGuard, ObservedBody};
use crate::upstream::has_dot_segment;
use crate::upstream::{Router, Upstream};

/// What the sidecar knows about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// Whether the client connected with TLS.
    pub tls: bool,
}

/// The proxy: routing table, metrics and per-request settings. Shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    router: Router,
    metrics: Metrics,
    max_body_bytes: usize,
}

/// What the phases learned about a request so far; later phases and error answers read it.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// The upstream the path routed to.
    pub upstream: Option<Arc<Upstream>>,
    /// The classified POST body.
    pub classified: Option<Classified>,
}

impl Proxy {
    /// A proxy over these upstreams.
    pub fn new(router: Router, metrics: Metrics, max_body_bytes: usize) -> Self {
        Self {
            router,
            metrics,
            max_body_bytes,
        }
    }

    /// Serves one request. Infallible: every failure becomes an HTTP response here, because an
    /// error that reaches hyper drops the connection without an answer.
    pub async fn serve<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let request_id = headers::request_id(req.headers());
        let rid_header = HeaderValue::from_str(&request_id)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid-request-id"));
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
        async move {
            let mut cx = RequestContext::default();
            let result = self.dispatch(req, &rid_header, conn, &mut cx).await;
            let upstream = cx
                .upstream
                .as_ref()
                .map_or(metrics::NO_UPSTREAM, |u| &*u.name)
                .to_owned();
            let (mut response, sse, error) = match result {
                Ok((response, sse)) => (response, sse, None),
                Err(err) => {
                    self.metrics
                        .proxy_errors
                        .with_label_values(&[err.reason()])
                        .inc();
                    if err.status().is_server_error() {
                        tracing::warn!(error = %err, "request failed");
                    } else {
                        tracing::debug!(error = %err, "request refused");
                    }
                    let jsonrpc_id = cx.classified.as_ref().and_then(Classified::request_id);
                    let response = err.to_response(jsonrpc_id, &request_id);
                    (response, false, Some(err.reason()))
                }
            };
            response
                .headers_mut()
                .insert(headers::X_REQUEST_ID.clone(), rid_header);
            let method_label = metrics::method_label(&method);
            let status = response.status();
            self.metrics
                .requests
                .with_label_values(&[upstream.as_str(), method_label, status.as_str()])
                .inc();
            let ttfb = start.elapsed();
            self.metrics
                .request_duration
                .with_label_values(&[upstream.as_str(), method_label])
                .observe(ttfb.as_secs_f64());
            let gauge = sse.then(|| {
                GaugeGuard::new(
                    self.metrics
                        .sse_streams_open
                        .with_label_values(&[upstream.as_str()]),
                )
            });
            let log = AccessLog {
                method,
                path,
                status: status.as_u16(),
                upstream,
                request_id,
                start,
                ttfb,
                error,
            };
            let stream_errors = Some(self.metrics.stream_errors.clone());
            response.map(|body| ObservedBody::new(body, log, gauge, stream_errors).boxed_unsync())
        }
        .instrument(span)
        .await
    }

    /// The phases between routing and the upstream call, in order. Each returns early with the
    /// [`ProxyError`] that ends the request.
    async fn dispatch<B>(
        &self,
        req: Request<B>,
        request_id: &HeaderValue,
        conn: ConnInfo,
        cx: &mut RequestContext,
    ) -> Result<(Response<ProxyBody>, bool), ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        // Path sanity first: a dot segment could resolve outside the mount at the backend.
        let path = req.uri().path();
        if has_dot_segment(path) {
            return Err(ProxyError::BadRequest(format!(
                "path `{path}` has a `.` or `..` segment"
            )));
        }
        let (upstream, rest) = self.router.route(path).ok_or_else(|| ProxyError::NoRoute {
            path: path.to_owned(),
        })?;
        let upstream = upstream.clone();
        cx.upstream = Some(upstream.clone());
        if !matches!(
            *req.method(),
            Method::POST | Method::GET | Method::DELETE | Method::OPTIONS
        ) {
            return Err(ProxyError::MethodNotAllowed {
                method: req.method().to_string(),
            });
        }
        let uri = upstream
            .upstream_uri(rest, req.uri().query())
            .map_err(|e| ProxyError::BadRequest(format!("cannot map path to upstream: {e}")))?;
        let (mut parts, body) = req.into_parts();

        // Classification: every later decision (and any error answer's id) needs to know what the
        // POST carries. The body is read once, bounded, and forwarded byte for byte.
        let body = if parts.method == Method::POST {
            let bytes = self.read_body(&parts.headers, body).await?;
            cx.classified = Some(mcp::classify(&bytes)?);
            full(bytes)
        } else {
            body.map_err(Into::into).boxed_unsync()
        };

        let is_get = parts.method == Method::GET;
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        headers::prepare_upstream_request(
            &mut parts.headers,
            &ForwardContext {
                upstream_authority: &upstream.authority,
                client_ip: conn.remote.ip(),
                client_proto: if conn.tls { "https" } else { "http" },
                request_id,
            },
        );
        let upstream_url = parts.uri.to_string();
        let response = self
            .send(&upstream, Request::from_parts(parts, body))
            .await?;
        Ok(self.respond(&upstream, response, request_id, is_get, &upstream_url))
    }

    /// Reads a POST body whole, refusing more than `max_body_bytes` (413) before reading it when
    /// `Content-Length` already says so.
    async fn read_body<B>(&self, headers: &http::HeaderMap, body: B) -> Result<Bytes, ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        let (bytes, rest) = read_prefix(body, limit.saturating_add(1))
            .await
            .map_err(|e| ProxyError::BadRequest(format!("reading request body: {e}")))?;
        if rest.is_some() || bytes.len() > limit {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        Ok(bytes)
    }

    /// Sends the request upstream, bounded by the response timeout, and maps failures.
    async fn send(
        &self,
        upstream: &Upstream,
        req: Request<ProxyBody>,
    ) -> Result<Response<hyper::body::Incoming>, ProxyError> {
        let started = Instant::now();
        let timeout = upstream.config.response_timeout;
        let result = tokio::time::timeout(timeout, upstream.client.request(req)).await;
        let errors = |kind: &str| {
            self.metrics
                .upstream_errors
                .with_label_values(&[&upstream.name, kind])
                .inc()
        };
        match result {
            Ok(Ok(response)) => {
                self.metrics
                    .upstream_duration
                    .with_label_values(&[&upstream.name])
                    .observe(started.elapsed().as_secs_f64());
                Ok(response)
            }
            Ok(Err(e)) => {
                let detail = error_chain(&e);
                if e.is_connect() {
                    errors("connect");
                    Err(ProxyError::UpstreamUnreachable {
                        upstream: upstream.name.to_string(),
                        detail,
                    })
                } else {
                    errors("reset");
                    Err(ProxyError::UpstreamFailed {
                        upstream: upstream.name.to_string(),
                        detail,
                    })
                }
            }
            Err(_) => {
                errors("timeout");
                Err(ProxyError::UpstreamTimeout {
                    upstream: upstream.name.to_string(),
                    after: timeout,
                })
            }
        }
    }

    /// The response phase: header hygiene and the streaming body wrappers.
    fn respond(
        &self,
        upstream: &Upstream,
        response: Response<hyper::body::Incoming>,
        request_id: &HeaderValue,
        is_get: bool,
        upstream_url: &str,
    ) -> (Response<ProxyBody>, bool) {
        let (mut parts, body) = response.into_parts();
        let sse = headers::is_event_stream(&parts.headers) && parts.status == StatusCode::OK;
        headers::prepare_downstream_response(&mut parts.headers, request_id, sse);
        let config = &upstream.config;
        let mut body: ProxyBody = body.map_err(BoxError::from).boxed_unsync();
        if sse && is_get && upstream.base_path != upstream.mount {
            // A legacy HTTP+SSE backend announces its POST URL in its own path space; the client
            // must be sent back through our mount instead.
            if let Ok(url) = url::Url::parse(upstream_url) {
                let rewrite = EndpointRewrite::new(url, &upstream.base_path, &upstream.mount);
                body = EndpointRewriteBody::new(body, rewrite).boxed_unsync();
            }
        }
        let keepalive = (sse && !config.sse_keepalive.is_zero()).then_some(config.sse_keepalive);
        let body = SseBody::new(body, keepalive, Some(config.stream_idle_timeout)).boxed_unsync();
        (Response::from_parts(parts, body), sse)
    }
}

/// `error: cause: cause` for logs and error bodies; hyper's top-level messages alone are vague.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
