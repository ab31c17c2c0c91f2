//! How a client speaks the 2026-07-28 revision (SEP-2575, SEP-2243): no `initialize` and no
//! session; every request names its revision twice (the `MCP-Protocol-Version` header and
//! `params._meta`), carries the client's capabilities in `_meta` (per request: that is where a
//! call asks for a task, by declaring the Tasks extension), and repeats its method and name in
//! the `Mcp-Method` / `Mcp-Name` headers for routers, which a server (and the sidecar) refuses
//! when they disagree with the body.

use base64::Engine as _;
use http::HeaderValue;
use mcp_sidecar::error::TASKS_EXTENSION;
use mcp_sidecar::tasks::wire::{CLIENT_CAPABILITIES, PROTOCOL_VERSION, STATELESS_REVISION};
use serde_json::{Value, json};

/// Whether `version` is on the stateless protocol (2026-07-28 or later; `YYYY-MM-DD` dates
/// compare as strings).
pub fn is_stateless(version: &str) -> bool {
    version >= STATELESS_REVISION
}

/// Whether `text` is a revision as MCP names them: `YYYY-MM-DD`.
pub fn is_revision(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The client capabilities a request declares: none, or the Tasks extension (the request may
/// then run as a task).
pub fn capabilities(tasks: bool) -> Value {
    if tasks {
        json!({"extensions": {TASKS_EXTENSION: {}}})
    } else {
        json!({})
    }
}

/// The headers that mirror a request's body (SEP-2243).
#[derive(Debug, Default)]
pub struct Routing {
    /// `Mcp-Method`.
    pub method: Option<HeaderValue>,
    /// `Mcp-Name`, for the methods that have a name.
    pub name: Option<HeaderValue>,
}

/// Puts the 2026-07-28 envelope into the request `message` (its revision and `capabilities` in
/// `params._meta`) and returns the routing headers that mirror it.
pub fn wrap(message: &mut Value, version: &str, capabilities: Value) -> Routing {
    let Some(object) = message.as_object_mut() else {
        return Routing::default();
    };
    let params = object.entry("params").or_insert_with(|| json!({}));
    if let Some(params) = params.as_object_mut() {
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(PROTOCOL_VERSION.into(), version.into());
            meta.insert(CLIENT_CAPABILITIES.into(), capabilities);
        }
    }
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    };
    let name = field
        .and_then(|f| message.get("params")?.get(f))
        .and_then(Value::as_str)
        .and_then(name_header);
    Routing {
        method: HeaderValue::from_str(method).ok(),
        name,
    }
}

/// A name as `Mcp-Name` carries it: as is when it is visible ASCII (inner spaces allowed),
/// else in SEP-2243's `=?base64?…?=` form, which the sidecar and servers decode.
pub fn name_header(name: &str) -> Option<HeaderValue> {
    let plain = !name.is_empty()
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && name.bytes().all(|b| (0x20..0x7f).contains(&b))
        // A plain name that looks encoded would be decoded by the receiver.
        && (!name.starts_with("=?") || !name.ends_with("?="));
    if plain {
        return HeaderValue::from_str(name).ok();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(name);
    HeaderValue::from_str(&format!("=?base64?{encoded}?=")).ok()
}

/// The `server/discover` request a stateless client starts with.
pub fn discover() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_names_the_revision_and_the_routing_headers_mirror_the_body() {
        let mut call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}}});
        let routing = wrap(&mut call, "2026-07-28", capabilities(true));
        assert_eq!(routing.method.unwrap(), "tools/call");
        assert_eq!(routing.name.unwrap(), "echo");
        let meta = &call["params"]["_meta"];
        assert_eq!(meta[PROTOCOL_VERSION], "2026-07-28");
        assert!(meta[CLIENT_CAPABILITIES]["extensions"][TASKS_EXTENSION].is_object());
        let mut get = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get",
            "params": {"taskId": "t1"}});
        assert_eq!(
            wrap(&mut get, "2026-07-28", capabilities(false))
                .name
                .unwrap(),
            "t1"
        );
        let mut list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        let routing = wrap(&mut list, "2026-07-28", capabilities(false));
        assert!(routing.name.is_none());
        assert!(list["params"]["_meta"].is_object(), "params made for _meta");
    }

    #[test]
    fn a_name_that_is_not_visible_ascii_is_sent_base64_encoded() {
        assert_eq!(name_header("get weather").unwrap(), "get weather");
        let encoded = name_header("météo").unwrap();
        let text = encoded.to_str().unwrap();
        assert_eq!(
            mcp_sidecar::tasks::routing::decode(text.as_bytes()).as_deref(),
            Some("météo")
        );
        assert!(
            name_header(" padded")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("=?base64?")
        );
    }

    #[test]
    fn revisions_are_dates_and_2026_07_28_on_is_stateless() {
        assert!(is_revision("2026-07-28") && !is_revision("2026-7-28") && !is_revision("latest"));
        assert!(is_stateless("2026-07-28") && is_stateless("2027-01-01"));
        assert!(!is_stateless("2025-11-25"));
    }
}
