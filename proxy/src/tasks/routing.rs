//! `Mcp-Method` and `Mcp-Name` (SEP-2243, 2026-07-28): headers that repeat the body's method and
//! name for intermediaries that route on headers. A request whose headers disagree with its
//! body is refused (400, -32020): the sidecar decides on the body, a router behind it may decide
//! on the headers, and the two must not be told different things.
//!
//! Only headers that are present are checked; whether a client must send them is the backend's
//! rule. `Mcp-Name` is compared for the methods that have a name (`tools/call`, `prompts/get`:
//! `params.name`; `resources/read`: `params.uri`; `tasks/*`: `params.taskId`); values are
//! compared after the optional whitespace RFC 9110 strips, and in SEP-2243's `=?base64?…?=`
//! form decoded first.

use base64::Engine as _;
use serde_json::Value;

use crate::error::{McpErrorKind, McpRefusal, ProxyError};
use crate::exchange::Exchange;
use crate::mcp::{Classified, Kind};

/// `Mcp-Method`.
pub const MCP_METHOD: http::HeaderName = http::HeaderName::from_static("mcp-method");
/// `Mcp-Name`.
pub const MCP_NAME: http::HeaderName = http::HeaderName::from_static("mcp-name");

/// Refuses a request whose `Mcp-Method` or `Mcp-Name` disagrees with its (classified) body.
pub fn check(ex: &Exchange) -> Result<(), ProxyError> {
    let headers = &ex.head.headers;
    let method_header = headers.get(&MCP_METHOD);
    let name_header = headers.get(&MCP_NAME);
    if method_header.is_none() && name_header.is_none() {
        return Ok(());
    }
    // A batch has no one method to compare with (batches predate these headers).
    let Some(message) = ex
        .classified
        .as_ref()
        .and_then(Classified::single)
        .filter(|m| m.kind == Kind::Request)
    else {
        return Ok(());
    };
    let method = message.method.as_deref().unwrap_or("");
    if let Some(value) = method_header {
        let value = value.to_str().map(str::trim).unwrap_or("\u{fffd}");
        if value != method {
            return Err(mismatch(format!(
                "the Mcp-Method header `{}` does not match the body's method `{method}`",
                value.escape_default()
            )));
        }
    }
    let Some(value) = name_header else {
        return Ok(());
    };
    let expected = match method {
        "tools/call" => message.tool.clone(),
        "prompts/get" => param(ex, "name"),
        "resources/read" => param(ex, "uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" => param(ex, "taskId"),
        _ => return Ok(()),
    };
    let given = decode(value.as_bytes());
    if given.is_none() || given != expected {
        return Err(mismatch(format!(
            "the Mcp-Name header `{}` does not match the body's `{}` of {method}",
            String::from_utf8_lossy(value.as_bytes()).escape_default(),
            expected.as_deref().unwrap_or("(none)").escape_default(),
        )));
    }
    Ok(())
}

fn mismatch(message: String) -> ProxyError {
    ProxyError::Mcp(McpRefusal::new(McpErrorKind::HeaderMismatch, message, true))
}

/// `params.<key>` of the body, when it is a string.
fn param(ex: &Exchange, key: &str) -> Option<String> {
    let body: Value = serde_json::from_slice(ex.body.as_deref()?).ok()?;
    body.get("params")?.get(key)?.as_str().map(str::to_owned)
}

/// A header value as text: trimmed of optional whitespace, and decoded when it is in SEP-2243's
/// `=?base64?<base64>?=` form (for names that are not visible ASCII). `None` for bytes that
/// are neither.
pub fn decode(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_info::ConnInfo;
    use bytes::Bytes;

    fn exchange(body: &str, headers: &[(&str, &str)]) -> Exchange {
        let mut builder = http::Request::builder().method("POST").uri("/mcp");
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        let (head, ()) = builder.body(()).unwrap().into_parts();
        let mut ex = Exchange::new(head, ConnInfo::new("127.0.0.1:1".parse().unwrap(), false));
        ex.classified = Some(crate::mcp::classify(body.as_bytes()).unwrap());
        ex.body = Some(Bytes::from(body.to_owned()));
        ex
    }

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"greet"}}"#;
    const GET: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t1"}}"#;

    fn code(r: Result<(), ProxyError>) -> Option<i64> {
        r.err().map(|e| e.jsonrpc_code())
    }

    #[test]
    fn matching_or_absent_routing_headers_pass() {
        assert!(check(&exchange(CALL, &[])).is_ok());
        assert!(
            check(&exchange(
                CALL,
                &[("mcp-method", "tools/call"), ("mcp-name", " greet ")]
            ))
            .is_ok()
        );
        assert!(
            check(&exchange(
                GET,
                &[("mcp-method", "tasks/get"), ("mcp-name", "t1")]
            ))
            .is_ok()
        );
        // `greet` in SEP-2243's base64 form.
        assert!(check(&exchange(CALL, &[("mcp-name", "=?base64?Z3JlZXQ=?=")])).is_ok());
    }

    #[test]
    fn a_header_that_disagrees_with_the_body_is_a_header_mismatch() {
        assert_eq!(
            code(check(&exchange(CALL, &[("mcp-method", "tasks/get")]))),
            Some(-32020)
        );
        assert_eq!(
            code(check(&exchange(CALL, &[("mcp-name", "other")]))),
            Some(-32020)
        );
        assert_eq!(
            code(check(&exchange(GET, &[("mcp-name", "t2")]))),
            Some(-32020)
        );
        assert_eq!(
            code(check(&exchange(GET, &[("mcp-name", "=?base64?!!?=")]))),
            Some(-32020)
        );
        let err = check(&exchange(CALL, &[("mcp-method", "tasks/get")])).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
}
