//! The request path, written down once: [`Proxy::serve`] runs the phases in order, and each phase
//! is a function of its own below it.
//!
//! ```text
//! serve:     request id + span + metrics + access log   (outermost; every error becomes a response)
//! dispatch:  path sanity -> route to upstream -> method check
//!            -> peek the POST body (bounded) to learn the JSON-RPC id for error answers
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
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::{
    BoxError, EndpointRewrite, EndpointRewriteBody, Prefixed, ProxyBody, SseBody, read_prefix,
};
use crate::error::ProxyError;
use crate::headers::{self, ForwardContext};
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
    peek_bytes: usize,
}

/// What dispatch learned about a request, for the logging phase and error answers.
#[derive(Debug, Default)]
struct RequestMeta {
    upstream: Option<Arc<str>>,
    jsonrpc_id: Option<Value>,
}

impl Proxy {
    /// A proxy over these upstreams.
    pub fn new(router: Router, metrics: Metrics, peek_bytes: usize) -> Self {
        Self {
            router,
            metrics,
            peek_bytes,
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
            let mut meta = RequestMeta::default();
            let result = self.dispatch(req, &rid_header, conn, &mut meta).await;
            let upstream = meta
                .upstream
                .as_deref()
                .unwrap_or(metrics::NO_UPSTREAM)
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
                    let response = err.to_response(meta.jsonrpc_id.as_ref(), &request_id);
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

    async fn dispatch<B>(
        &self,
        req: Request<B>,
        request_id: &HeaderValue,
        conn: ConnInfo,
        meta: &mut RequestMeta,
    ) -> Result<(Response<ProxyBody>, bool), ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
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
        meta.upstream = Some(upstream.name.clone());
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
        let body = if parts.method == Method::POST {
            let (body, id) = self
                .peek(body)
                .await
                .map_err(|e| ProxyError::BadRequest(format!("reading request body: {e}")))?;
            meta.jsonrpc_id = id;
            body
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

    /// Reads up to `peek_bytes` of a POST body to learn the JSON-RPC id, then hands back a body
    /// that replays those bytes and streams the rest: the upstream sees the body unchanged.
    async fn peek<B>(&self, body: B) -> Result<(ProxyBody, Option<Value>), BoxError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (prefix, rest) = read_prefix(body, self.peek_bytes).await?;
        let id = if rest.is_none() {
            jsonrpc_request_id(&prefix)
        } else {
            None
        };
        Ok((Prefixed::new(prefix, rest).boxed_unsync(), id))
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

/// The `id` of a single JSON-RPC request (an object with `method` and `id`), if `bytes` is one.
pub fn jsonrpc_request_id(bytes: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Probe {
        id: Option<Value>,
        method: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    probe.method?;
    probe.id.filter(|id| id.is_string() || id.is_number())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_ids_are_read_from_requests_only() {
        assert_eq!(
            jsonrpc_request_id(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#),
            Some(json!(3))
        );
        assert_eq!(
            jsonrpc_request_id(br#"{"jsonrpc":"2.0","id":"a","method":"x"}"#),
            Some(json!("a"))
        );
        assert_eq!(
            jsonrpc_request_id(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#),
            None
        );
        assert_eq!(
            jsonrpc_request_id(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            None
        );
        assert_eq!(
            jsonrpc_request_id(br#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#),
            None
        );
        assert_eq!(jsonrpc_request_id(b"not json"), None);
    }
}
