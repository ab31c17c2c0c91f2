use serde_json::json;

use super::*;
use crate::jobs::model::JobRequest;

fn waiting(keys: &[&str]) -> Job {
    let mut task = TaskInfo {
        revision: wire::STATELESS_REVISION.into(),
        request_state: Some("state-1".into()),
        ..TaskInfo::default()
    };
    for k in keys {
        task.input_requests
            .insert((*k).into(), json!({"method": "elicitation/create"}));
    }
    Job {
        id: JobId::from_bytes([1; 16]),
        owner: Owner::new("ip:127.0.0.1"),
        method: "tools/call".into(),
        tool: Some("t".into()),
        status: Status::InputRequired,
        progress: None,
        seq: 1,
        created_ms: 0,
        updated_ms: 0,
        started_ms: None,
        finished_ms: None,
        expires_ms: u64::MAX,
        deadline_ms: u64::MAX,
        attempts: 1,
        rerun_on_restart: false,
        unsent: false,
        outcome: None,
        idempotency: None,
        request: JobRequest {
            upstream: "u".into(),
            path: "/mcp".into(),
            headers: vec![],
            body: r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#.into(),
            client_ip: "127.0.0.1".into(),
            tls: false,
            principal: None,
            jsonrpc_id: "1".into(),
        },
        task: Some(task),
        version: 1,
    }
}

fn responses(pairs: &[(&str, serde_json::Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn a_partial_update_keeps_waiting_and_ignores_unknown_keys() {
    let mut job = waiting(&["a", "b"]);
    let r = record_responses(
        &mut job,
        responses(&[("a", json!({"action": "accept"})), ("zzz", json!({}))]),
    );
    assert_eq!(r, Resume::Wait);
    let task = job.task.as_ref().unwrap();
    assert_eq!(task.input_responses.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(wire::outstanding(&job).keys().collect::<Vec<_>>(), ["b"]);
    assert!(!job.request.body.contains("inputResponses"));
}

#[test]
fn the_last_response_of_a_round_sends_the_call_again_with_all_of_them() {
    let mut job = waiting(&["a", "b"]);
    record_responses(&mut job, responses(&[("a", json!({"action": "accept"}))]));
    let r = record_responses(&mut job, responses(&[("b", json!({"action": "decline"}))]));
    assert_eq!(r, Resume::Run);
    let call: Value = serde_json::from_str(&job.request.body).unwrap();
    assert_eq!(call["params"]["inputResponses"]["a"]["action"], "accept");
    assert_eq!(call["params"]["inputResponses"]["b"]["action"], "decline");
    assert_eq!(call["params"]["requestState"], "state-1");
    assert_eq!(call["params"]["name"], "t");
}

#[test]
fn a_relay_that_failed_is_answered_as_whose_failure_it_was() {
    let backend = job_error(
        JobError::Send(ProxyError::UpstreamFailed {
            upstream: "u".into(),
            detail: "it answered HTTP 500 to the relayed message".into(),
        }),
        Revision::Extension,
    );
    assert_eq!(backend.reason(), "upstream_failed");
    assert_eq!(backend.status(), http::StatusCode::BAD_GATEWAY);
    let local = job_error(
        JobError::Send(ProxyError::JobsUnavailable(
            "the job engine is not running".into(),
        )),
        Revision::Extension,
    );
    assert_eq!(local.reason(), "jobs_unavailable");
    assert_eq!(local.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let unknown = job_error(JobError::NotFound, Revision::Core);
    assert_eq!(unknown.jsonrpc_code(), -32602);
}
