//! The Tasks facade's readers of untrusted input (`mcp_sidecar::tasks`): the `Mcp-Name` header
//! decoder, the revision and negotiation readers, and the rewrites of a stored call, on arbitrary
//! input. Never a panic; a decoded name has no surrounding whitespace unless base64 put it
//! there; a rewritten call still parses, carries exactly the responses given, and a call without
//! its task request has neither `params.task` nor the extension.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_sidecar::tasks::{routing, wire};
use serde_json::{Map, Value};

fuzz_target!(|input: &[u8]| {
    if let Some(name) = routing::decode(input)
        && !input.starts_with(b"=?base64?")
        && !input.trim_ascii_start().starts_with(b"=?base64?")
    {
        assert_eq!(name, name.trim_matches([' ', '\t']), "{input:?}");
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(input) {
        headers.insert("mcp-protocol-version", v);
    }
    let Ok(text) = std::str::from_utf8(input) else {
        let _ = wire::Revision::of(&headers, None);
        return;
    };
    let value: Option<Value> = serde_json::from_str(text).ok();
    let params = value.as_ref().and_then(|v| v.get("params"));
    let _ = wire::Revision::of(&headers, params);
    let _ = wire::declares_extension(params);
    let _ = wire::asks_for_task(params);
    let responses: Map<String, Value> = value
        .as_ref()
        .and_then(|v| v.get("responses"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(out) = wire::with_input_responses(text, &responses, Some("s")) {
        let call: Value = serde_json::from_str(&out).expect("the rewritten call parses");
        assert_eq!(call["params"]["inputResponses"], Value::Object(responses));
        assert_eq!(call["params"]["requestState"], "s");
    }
    if let Some(out) = wire::without_task_request(text) {
        let call: Value = serde_json::from_str(&out).expect("the rewritten call parses");
        assert!(call["params"].get("task").is_none());
        assert!(!wire::declares_extension(call.get("params")));
    }
});
