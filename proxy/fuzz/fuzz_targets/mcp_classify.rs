//! MCP body classification (`mcp::classify`), which every POST body reaches before auth
//! decisions by method and tool: never a panic, and what it accepts is consistent (JSON at all,
//! one message unless a batch, each kind with the members that define it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::mcp::{Kind, classify};

fuzz_target!(|data: &[u8]| {
    let Ok(classified) = classify(data) else {
        return;
    };
    assert!(
        serde_json::from_slice::<serde_json::Value>(data).is_ok(),
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
        if m.tool.is_some() {
            assert_eq!(m.method.as_deref(), Some("tools/call"));
        }
    }
});
