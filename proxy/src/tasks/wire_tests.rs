use std::time::Duration;

use serde_json::json;

use super::*;
use crate::jobs::model::JobRequest;
use crate::jobs::{FailReason, JobId, Owner, TaskInfo};

fn job(status: Status, outcome: Option<Outcome>) -> Job {
    Job {
        id: JobId::from_bytes([7; 16]),
        owner: Owner::new("ip:127.0.0.1"),
        method: "tools/call".into(),
        tool: Some("slow".into()),
        status,
        progress: None,
        seq: 1,
        created_ms: 1_000,
        updated_ms: 2_000,
        started_ms: None,
        finished_ms: None,
        expires_ms: u64::MAX,
        deadline_ms: u64::MAX,
        attempts: 1,
        rerun_on_restart: false,
        unsent: false,
        outcome,
        idempotency: None,
        request: JobRequest {
            upstream: "u".into(),
            path: "/mcp".into(),
            headers: vec![],
            body: r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#
                .into(),
            client_ip: "127.0.0.1".into(),
            tls: false,
            principal: None,
            jsonrpc_id: "1".into(),
        },
        task: Some(TaskInfo {
            revision: STATELESS_REVISION.into(),
            ..TaskInfo::default()
        }),
        version: 1,
    }
}

fn answered(result: serde_json::Value) -> Option<Outcome> {
    Some(Outcome::Answered {
        response: json!({"jsonrpc":"2.0","id":1,"result": result}).to_string(),
    })
}

const TTL: Duration = Duration::from_secs(60);

#[test]
fn the_revision_comes_from_the_header_then_the_meta() {
    let mut h = http::HeaderMap::new();
    assert_eq!(Revision::of(&h, None), Revision::Core);
    let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    assert_eq!(Revision::of(&h, Some(&meta)), Revision::Extension);
    h.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    assert_eq!(Revision::of(&h, Some(&meta)), Revision::Core);
    h.insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    assert_eq!(Revision::of(&h, None), Revision::Extension);
}

#[test]
fn only_a_revision_from_2025_11_25_on_knows_tasks() {
    let mut h = http::HeaderMap::new();
    assert!(!knows_tasks(&h, None), "no version: 2025-03-26");
    h.insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
    assert!(!knows_tasks(&h, None));
    h.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    assert!(knows_tasks(&h, None));
    let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    assert!(knows_tasks(&http::HeaderMap::new(), Some(&meta)));
}

#[test]
fn negotiation_is_the_extension_in_meta_or_the_task_param() {
    let declared = json!({"_meta": {"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}}});
    assert!(declares_extension(Some(&declared)));
    let other = json!({"_meta": {"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"other": {}}}}});
    assert!(!declares_extension(Some(&other)));
    assert!(!declares_extension(None));
    assert!(asks_for_task(Some(&json!({"task": {"ttl": 1000}}))));
    assert!(!asks_for_task(Some(&json!({"task": 5}))));
}

#[test]
fn the_create_result_is_flat_in_the_extension_and_nested_in_the_core() {
    let j = job(Status::Queued, None);
    let flat = created(&j, Revision::Extension, TTL);
    assert_eq!(flat["resultType"], "task");
    assert_eq!(flat["status"], "working");
    assert_eq!(flat["ttlMs"], 60_000);
    assert_eq!(flat["pollIntervalMs"], 500);
    assert!(flat.get("task").is_none() && flat.get("ttl").is_none());
    assert!(
        flat["createdAt"]
            .as_str()
            .unwrap()
            .starts_with("1970-01-01T00:00:01")
    );
    let nested = created(&j, Revision::Core, TTL);
    assert_eq!(nested["task"]["taskId"], j.id.to_string());
    assert_eq!(nested["task"]["ttl"], 60_000);
    assert!(nested.get("resultType").is_none());
}

#[test]
fn a_tool_error_completes_in_the_extension_and_fails_in_the_core() {
    let j = job(
        Status::Completed,
        answered(json!({"content": [], "isError": true})),
    );
    assert_eq!(status(&j, Revision::Extension), "completed");
    assert_eq!(status(&j, Revision::Core), "failed");
    let d = detailed(&j, Revision::Extension, TTL);
    assert_eq!(d["result"]["isError"], true);
    assert_eq!(d["resultType"], "complete");
}

#[test]
fn a_jsonrpc_error_or_a_sidecar_failure_is_failed_with_an_error_and_no_result() {
    let j = job(
        Status::Completed,
        Some(Outcome::Answered {
            response: json!({"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}})
                .to_string(),
        }),
    );
    let d = detailed(&j, Revision::Extension, TTL);
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error"]["code"], -32603);
    assert!(d.get("result").is_none());
    let j = job(
        Status::Failed,
        Some(Outcome::Failed {
            reason: FailReason::DeadlineExceeded,
            message: "too slow".into(),
        }),
    );
    let d = detailed(&j, Revision::Extension, TTL);
    assert_eq!(d["error"]["message"], "too slow");
    assert_eq!(d["error"]["data"]["reason"], "deadline_exceeded");
    assert_eq!(payload(&j).unwrap_err()["message"], "too slow");
}

#[test]
fn the_inlined_result_loses_the_related_task_meta_and_tasks_result_gains_it() {
    let j = job(
        Status::Completed,
        answered(json!({"content": [{"type":"text","text":"hi"}],
            "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "x"}}})),
    );
    let d = detailed(&j, Revision::Extension, TTL);
    assert!(d["result"].get("_meta").is_none(), "{d}");
    let p = payload(&j).unwrap();
    assert_eq!(
        p["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        j.id.to_string()
    );
}

#[test]
fn an_input_required_task_shows_only_the_unanswered_requests() {
    let mut j = job(Status::InputRequired, None);
    let task = j.task.as_mut().unwrap();
    task.input_requests
        .insert("a".into(), json!({"method": "elicitation/create"}));
    task.input_requests
        .insert("b".into(), json!({"method": "elicitation/create"}));
    task.input_responses
        .insert("a".into(), json!({"action": "accept"}));
    let d = detailed(&j, Revision::Extension, TTL);
    assert_eq!(d["status"], "input_required");
    let keys: Vec<_> = d["inputRequests"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["b"]);
    assert!(d.get("requestState").is_none());
}

#[test]
fn the_responses_and_state_go_into_the_call_sent_again() {
    let mut responses = serde_json::Map::new();
    responses.insert("a".into(), json!({"action": "accept"}));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requestState":"old"}}"#;
    let out: serde_json::Value =
        serde_json::from_str(&with_input_responses(body, &responses, Some("s2")).unwrap()).unwrap();
    assert_eq!(out["params"]["inputResponses"]["a"]["action"], "accept");
    assert_eq!(out["params"]["requestState"], "s2");
    let out: serde_json::Value =
        serde_json::from_str(&with_input_responses(body, &responses, None).unwrap()).unwrap();
    assert!(out["params"].get("requestState").is_none());
}

#[test]
fn the_backend_call_loses_params_task_and_nothing_else() {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "slow", "arguments": {"x": 1}, "task": {"ttl": 60000},
        "_meta": {"progressToken": "job-1"},
    }});
    let sent: Value =
        serde_json::from_str(&without_task_request(&body.to_string()).unwrap()).unwrap();
    let mut want = body;
    want["params"].as_object_mut().unwrap().remove("task");
    assert_eq!(sent, want);
}

#[test]
fn the_backend_call_loses_the_tasks_extension_but_keeps_other_client_capabilities() {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "slow",
        "_meta": {"io.modelcontextprotocol/clientCapabilities": {
            "elicitation": {},
            "extensions": {"io.modelcontextprotocol/tasks": {}, "x.example/other": {}},
        }},
    }});
    let sent: Value =
        serde_json::from_str(&without_task_request(&body.to_string()).unwrap()).unwrap();
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation": {}, "extensions": {"x.example/other": {}}})
    );
}

#[test]
fn a_call_without_a_task_request_is_sent_unchanged() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#;
    assert_eq!(without_task_request(body), None);
}
