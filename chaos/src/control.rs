//! What the two control APIs (the TCP proxy's Toxiproxy-shaped one, [`crate::tcp::api`], and the
//! HTTP fault proxy's, [`crate::http::api`]) share, so they answer alike: the HTTP/1.1 server
//! loop, the bounded body, the percent-decoded path, and the error shape
//! `{"error": "...", "status": N}` (with `Allow` on a 405).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Largest request body accepted: a toxic, proxy or fault definition is a few hundred bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// An API error: status and message (naming the field or object at fault).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The methods the path takes, for a 405's `Allow`.
    allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405 for `method` on a path that takes only `allow` (`"GET, POST"`).
    pub(crate) fn method_not_allowed(method: &Method, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed here (allowed: {allow})"),
            )
        }
    }

    /// 404 for a path no endpoint has.
    pub(crate) fn no_endpoint(path: &[&str]) -> Self {
        Self::not_found(format!("no such endpoint: /{}", path.join("/")))
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// A successful answer: its status and JSON body (`None`: empty, as a 204).
pub(crate) type Reply = Result<(StatusCode, Option<Value>), ApiError>;

/// One control API: answers a request, given its method, its percent-decoded path segments and
/// its body (already bounded by [`MAX_BODY`]).
pub(crate) trait Routes: Send + Sync + 'static {
    fn route(
        &self,
        method: &Method,
        path: &[&str],
        body: &[u8],
    ) -> impl Future<Output = Reply> + Send;
}

/// Serves `routes` on `listener` until the task is dropped.
pub(crate) async fn serve<R: Routes>(routes: Arc<R>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: wait a little instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let routes = Arc::clone(&routes);
                async move { Ok::<_, Infallible>(handle(&*routes, req).await) }
            });
            // The timer arms hyper's header read timeout (30 s): a client that never finishes
            // its request does not hold a connection forever.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one request: errors become `{"error", "status"}` bodies.
pub(crate) async fn handle<R: Routes>(routes: &R, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => match path_segments(parts.uri.path()) {
            Ok(path) => {
                let path: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
                routes.route(&parts.method, &path, &body.to_bytes()).await
            }
            Err(e) => Err(e),
        },
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ApiError::bad(format!("body: {e}"))),
    };
    let (status, body, allow) = match reply {
        Ok((status, body)) => (status, body, None),
        Err(e) => (
            e.status,
            Some(json!({"error": e.message, "status": e.status.as_u16()})),
            e.allow,
        ),
    };
    let mut res = Response::new(Full::new(
        body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
    ));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(allow) = allow {
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    res
}

/// The segments of a request path, percent-decoded (`/faults/open%20circuit/` →
/// `["faults", "open circuit"]`), so any name can be addressed.
fn path_segments(path: &str) -> Result<Vec<Cow<'_, str>>, ApiError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| ApiError::bad(format!("path: `{s}` is not UTF-8 once decoded")))
        })
        .collect()
}

/// The request body as JSON.
pub(crate) fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: invalid JSON: {e}")))
}

/// `GET /version`.
pub(crate) fn version() -> Reply {
    Ok((
        StatusCode::OK,
        Some(json!({"version": env!("CARGO_PKG_VERSION")})),
    ))
}
