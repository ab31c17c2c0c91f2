//! MCP body classification (`mcp::classify`), which every POST body reaches before auth,
//! rate limits and breakers decide by method and tool: never a panic, what it accepts is JSON,
//! one message unless a batch, each kind with the members that define it, and the method, id
//! and tool it reads are those a plain JSON parser (serde_json's `Value`, as a backend would)
//! reads from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::mcp::{Kind, Message, classify};
use serde_json::Value;

/// The message as a backend parsing the whole body would see it.
fn check_against_value(m: &Message, v: &Value) {
    assert_eq!(m.method.as_deref(), v.get("method").and_then(Value::as_str));
    assert_eq!(m.id.as_ref(), v.get("id"));
    if m.method.as_deref() == Some("tools/call") {
        let name = v.get("params").and_then(|p| p.get("name"));
        assert_eq!(m.tool.as_deref(), name.and_then(Value::as_str));
    } else {
        assert!(m.tool.is_none());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(classified) = classify(data) else {
        return;
    };
    assert!(
        serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok(),
        "classified a body that is not JSON"
    );
    assert!(!classified.messages.is_empty());
    if !classified.batch {
        assert_eq!(classified.messages.len(), 1);
    }
    for m in &classified.messages {
        match m.kind {
            Kind::Request => assert!(m.method.is_some() && m.id.is_some()),
            Kind::Notification => assert!(m.method.is_some() && m.id.is_none()),
            Kind::Response => assert!(m.method.is_none() && m.id.is_some()),
        }
    }
    // Strings holding lone surrogates (in arguments, say) are JSON but no `Value`.
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match (&value, classified.batch) {
        (Value::Array(items), true) => {
            assert_eq!(items.len(), classified.messages.len());
            for (m, v) in classified.messages.iter().zip(items) {
                check_against_value(m, v);
            }
        }
        (v, false) => check_against_value(&classified.messages[0], v),
        _ => panic!("batch flag disagrees with the JSON"),
    }
});
