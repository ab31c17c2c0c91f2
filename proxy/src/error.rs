//! The one error type for everything the sidecar itself refuses or fails at, and its one mapping to
//! an HTTP response and to a metrics label. No other module builds error responses.
//!
//! Every error answer is a JSON-RPC error object: when the request was a JSON-RPC request whose `id`
//! could be read, the object carries that `id`, so an MCP client surfaces the message against the
//! call that failed; otherwise `id` is `null` (as JSON-RPC prescribes when the id is unknown).
//! Proxy error codes sit in the implementation-defined range -32000..-32019.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{ProxyBody, full};
use crate::mcp::ClassifyError;

/// What the sidecar could not do, and why.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream is mounted at the request's path.
    #[error("no upstream is mounted at `{path}`")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The HTTP method is not one MCP uses.
    #[error("method {method} is not allowed; MCP endpoints take POST, GET, DELETE and OPTIONS")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },
    /// The request is malformed in a way the sidecar refuses to forward.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The POST body exceeds `listen.max_body_bytes`.
    #[error("request body exceeds the {limit}-byte limit (listen.max_body_bytes)")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The POST body is not a JSON-RPC message.
    #[error("{0}")]
    NotJsonRpc(#[from] crate::mcp::ClassifyError),
    /// The upstream could not be connected to.
    #[error("upstream `{upstream}` is unreachable: {detail}")]
    UpstreamUnreachable {
        /// Upstream name.
        upstream: String,
        /// What the connector said.
        detail: String,
    },
    /// The upstream did not send response headers in time.
    #[error("upstream `{upstream}` did not respond within {}", humantime::format_duration(*after))]
    UpstreamTimeout {
        /// Upstream name.
        upstream: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The upstream connection failed after it was established (reset, closed early, bad HTTP).
    #[error("upstream `{upstream}` failed: {detail}")]
    UpstreamFailed {
        /// Upstream name.
        upstream: String,
        /// What went wrong.
        detail: String,
    },
}

/// JSON-RPC error codes of the sidecar's own errors (documented in the README's error table).
pub mod codes {
    /// Upstream unreachable (connect failed or timed out).
    pub const UPSTREAM_UNREACHABLE: i64 = -32001;
    /// Upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32002;
    /// Upstream connection failed mid-exchange.
    pub const UPSTREAM_FAILED: i64 = -32003;
    /// Nothing mounted at the path.
    pub const NO_ROUTE: i64 = -32004;
    /// HTTP method not allowed.
    pub const METHOD_NOT_ALLOWED: i64 = -32005;
    /// Malformed request refused by the sidecar.
    pub const BAD_REQUEST: i64 = -32006;
    /// POST body over the limit.
    pub const PAYLOAD_TOO_LARGE: i64 = -32007;
    /// JSON-RPC's own code for a body that is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC's own code for JSON that is not a JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
}

impl ProxyError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::NotJsonRpc(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnreachable { .. } | Self::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Bounded label for metrics and the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotJsonRpc(ClassifyError::Parse(_)) => "parse_error",
            Self::NotJsonRpc(ClassifyError::Invalid(_)) => "invalid_request",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamFailed { .. } => "upstream_failed",
        }
    }

    /// The JSON-RPC error code.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Self::NoRoute { .. } => codes::NO_ROUTE,
            Self::MethodNotAllowed { .. } => codes::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => codes::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => codes::PAYLOAD_TOO_LARGE,
            Self::NotJsonRpc(ClassifyError::Parse(_)) => codes::PARSE_ERROR,
            Self::NotJsonRpc(ClassifyError::Invalid(_)) => codes::INVALID_REQUEST,
            Self::UpstreamUnreachable { .. } => codes::UPSTREAM_UNREACHABLE,
            Self::UpstreamTimeout { .. } => codes::UPSTREAM_TIMEOUT,
            Self::UpstreamFailed { .. } => codes::UPSTREAM_FAILED,
        }
    }

    fn upstream(&self) -> Option<&str> {
        match self {
            Self::UpstreamUnreachable { upstream, .. }
            | Self::UpstreamTimeout { upstream, .. }
            | Self::UpstreamFailed { upstream, .. } => Some(upstream),
            _ => None,
        }
    }

    /// The response for this error. `jsonrpc_id` is the id of the JSON-RPC request, when known.
    pub fn to_response(&self, jsonrpc_id: Option<&Value>, request_id: &str) -> Response<ProxyBody> {
        let mut data = json!({ "reason": self.reason(), "request_id": request_id });
        if let Some(up) = self.upstream() {
            data["upstream"] = Value::String(up.to_owned());
        }
        let body = json!({
            "jsonrpc": "2.0",
            "id": jsonrpc_id.cloned().unwrap_or(Value::Null),
            "error": { "code": self.jsonrpc_code(), "message": self.to_string(), "data": data },
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::MethodNotAllowed { .. } = self {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: Response<ProxyBody>) -> Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unreachable_is_502_with_jsonrpc_id() {
        let err = ProxyError::UpstreamUnreachable {
            upstream: "shield".into(),
            detail: "refused".into(),
        };
        let resp = err.to_response(Some(&json!(7)), "rid");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let v = body_json(resp).await;
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], codes::UPSTREAM_UNREACHABLE);
        assert_eq!(v["error"]["data"]["upstream"], "shield");
        assert_eq!(v["error"]["data"]["request_id"], "rid");
    }

    #[tokio::test]
    async fn timeout_is_504_and_unknown_id_is_null() {
        let err = ProxyError::UpstreamTimeout {
            upstream: "u".into(),
            after: Duration::from_secs(5),
        };
        let resp = err.to_response(None, "rid");
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        let v = body_json(resp).await;
        assert!(v["id"].is_null());
        assert!(v["error"]["message"].as_str().unwrap().contains("5s"));
    }

    #[test]
    fn every_code_is_in_the_proxy_range() {
        let all = [
            ProxyError::NoRoute { path: "/".into() },
            ProxyError::MethodNotAllowed {
                method: "PUT".into(),
            },
            ProxyError::BadRequest("x".into()),
            ProxyError::PayloadTooLarge { limit: 1 },
            ProxyError::UpstreamUnreachable {
                upstream: "u".into(),
                detail: "d".into(),
            },
            ProxyError::UpstreamTimeout {
                upstream: "u".into(),
                after: Duration::from_secs(1),
            },
            ProxyError::UpstreamFailed {
                upstream: "u".into(),
                detail: "d".into(),
            },
        ];
        for e in all {
            assert!((-32019..=-32000).contains(&e.jsonrpc_code()), "{e}");
        }
    }
}
