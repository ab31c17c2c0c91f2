//! The MCP Tasks facade (revision 2025-11-25) driven by the official TypeScript SDK client's
//! task API (`client.experimental.tasks` of `@modelcontextprotocol/sdk`, pinned in
//! `tests/sdk/package.json`), through an in-process sidecar in front of the fixture, which knows
//! nothing of Tasks. `tests/sdk/tasks_client.mjs` runs one scenario per invocation and prints
//! what the client saw; these tests check it, and what reached the backend and the job API.
//!
//! The facade tools: `sleep` and `progress` (`offload = "allowed"`: task support optional) and
//! `fail` (`offload = "required"`: tasks only); `echo` has no `[[upstream.tool]]` entry and stays a
//! plain tool. One test puts `@modelcontextprotocol/server-everything` (a TypeScript SDK server)
//! behind the facade instead, for what a backend that reads `params.task` makes of the call.
//!
//! Needs `scripts/test-deps.sh` (Node packages in `tests/sdk/node_modules`); without them the
//! tests fail with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::sdk::{Backend, node, run_client, sdk_dir};
use mcp_e2e_tests::{RunningSidecar, client, config, metric_value, start, tool_calls, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::{ApiKeyConfig, AuthConfig, Secret, ToolConfig, UpstreamConfig};
use serde_json::{Value, json};
use tokio::process::Command;

const KEY_A: &str = "tasks-sdk-key-alice-0123456789";
const KEY_B: &str = "tasks-sdk-key-bob-0123456789ab";

/// The fixture's upstream with the facade tools of the module docs.
fn facade_upstream(backend: &FixtureServer) -> UpstreamConfig {
    let tool = |name: &str, offload: &str| -> ToolConfig {
        serde_json::from_value(json!({"name": name, "offload": offload})).unwrap()
    };
    let mut up = upstream(backend.mcp_url(), Some("/mcp"));
    up.tool = vec![
        tool("sleep", "allowed"),
        tool("progress", "allowed"),
        tool("fail", "required"),
    ];
    up
}

/// A sidecar with the facade in front of `backend`, anyone allowed (jobs belong to the client
/// address).
async fn open_sidecar(backend: &FixtureServer) -> RunningSidecar {
    start(config(vec![facade_upstream(backend)])).await
}

/// A sidecar with the facade in front of `backend` that lets in the API keys of two principals,
/// alice (`KEY_A`) and bob (`KEY_B`), and no one else.
async fn keyed_sidecar(backend: &FixtureServer) -> RunningSidecar {
    let mut c = config(vec![facade_upstream(backend)]);
    let key = |id: &str, key: &str| ApiKeyConfig {
        id: id.into(),
        key: Secret(key.into()),
        scopes: Vec::new(),
    };
    c.auth = AuthConfig {
        public_url: Some("http://127.0.0.1".into()),
        api_keys: vec![key("alice", KEY_A), key("bob", KEY_B)],
        ..AuthConfig::default()
    };
    start(c).await
}

/// Runs one `tasks_client.mjs` scenario against the sidecar's `/mcp` (as `key`'s principal when
/// given) and returns its report.
async fn sdk(sidecar: &RunningSidecar, key: Option<&str>, scenario: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(node());
    cmd.arg(sdk_dir().join("tasks_client.mjs"))
        .arg(scenario)
        .arg(sidecar.url("/mcp"))
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("MCP_API_KEY")
        .env("NO_PROXY", "*");
    if let Some(key) = key {
        cmd.env("MCP_API_KEY", key);
    }
    let report = run_client(cmd, &format!("tasks_client.mjs {scenario}")).await;
    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");
    report
}

/// Creates a task calling `tool` with `arguments` as `key`'s principal; its id.
async fn create(
    sidecar: &RunningSidecar,
    key: Option<&str>,
    tool: &str,
    arguments: Value,
) -> String {
    let report = sdk(sidecar, key, "create", &[tool, &arguments.to_string()]).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["task"]["status"], "working", "{report}");
    report["task"]["taskId"].as_str().unwrap().to_owned()
}

/// The task ids of a `tasks/list` outcome.
fn listed(outcome: &Value) -> Vec<String> {
    outcome["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a task list: {outcome}"))
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_owned())
        .collect()
}

/// `method` on the job API path `path` as `key`'s principal: (status, body as JSON).
async fn job_api(
    sidecar: &RunningSidecar,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> (u16, Value) {
    let resp = client()
        .request(method, sidecar.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded) until the fixture has seen `notifications/cancelled`.
async fn backend_saw_cancel(backend: &FixtureServer) {
    for _ in 0..200 {
        if backend
            .stats()
            .by_method
            .get("notifications/cancelled")
            .is_some_and(|n| *n >= 1)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the backend never saw notifications/cancelled: {:?}",
        backend.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sees_the_tasks_capability_and_task_support_only_on_offloadable_tools() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let report = sdk(&sidecar, None, "advert", &[]).await;
    assert_eq!(
        report["tasks"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
        "{report}"
    );
    let execution = &report["execution"];
    assert_eq!(
        execution["sleep"],
        json!({"taskSupport": "optional"}),
        "{report}"
    );
    assert_eq!(
        execution["progress"],
        json!({"taskSupport": "optional"}),
        "{report}"
    );
    assert_eq!(
        execution["fail"],
        json!({"taskSupport": "required"}),
        "{report}"
    );
    assert_eq!(execution["echo"], Value::Null, "{report}");
    assert_eq!(execution["add"], Value::Null, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_creates_a_task_polls_it_working_then_completed_and_fetches_the_tools_result() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    // Long enough for the SDK's polls (every `pollInterval`, 500 ms) to see it working.
    let report = sdk(&sidecar, None, "lifecycle", &["sleep", r#"{"ms": 1500}"#]).await;
    let task_id = report["taskId"].as_str().unwrap();
    let messages = report["messages"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds.first(), Some(&("taskCreated", "working")), "{report}");
    assert!(
        kinds.contains(&("taskStatus", "working")),
        "no poll saw the task working: {report}"
    );
    let n = kinds.len();
    assert!(n >= 4, "{report}");
    assert_eq!(kinds[n - 2], ("taskStatus", "completed"), "{report}");
    assert_eq!(kinds[n - 1].0, "result", "{report}");
    let expected = json!([{"type": "text", "text": "slept 1500 ms"}]);
    assert_eq!(messages[n - 1]["result"]["content"], expected, "{report}");
    // tasks/result carries the related-task metadata (2025-11-25).
    assert_eq!(
        messages[n - 1]["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task_id,
        "{report}"
    );
    // Asked again after the end: the same task, the same result.
    assert_eq!(report["get"]["result"]["taskId"], task_id, "{report}");
    assert_eq!(report["get"]["result"]["status"], "completed", "{report}");
    assert_eq!(report["result"]["result"]["content"], expected, "{report}");
    // One call reached the backend: polling and fetching never call the tool again.
    assert_eq!(tool_calls(&backend, "sleep"), 1, "{:?}", backend.stats());
    // The task is counted as the job it is.
    let metrics = sidecar.metrics().await;
    for series in [
        r#"mcp_sidecar_jobs_submitted_total{upstream="u"}"#,
        r#"mcp_sidecar_jobs_finished_total{status="completed",upstream="u"}"#,
    ] {
        assert_eq!(
            metric_value(&metrics, series),
            Some(1.0),
            "{series}\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_task_whose_call_gets_a_json_rpc_error_fails_and_tasks_result_returns_that_error() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let arguments = json!({"mode": "jsonrpc_error", "code": -32042, "message": "backend says no"});
    let report = sdk(
        &sidecar,
        None,
        "lifecycle",
        &["fail", &arguments.to_string()],
    )
    .await;
    let messages = report["messages"].as_array().unwrap();
    assert_eq!(messages[0]["type"], "taskCreated", "{report}");
    let n = messages.len();
    assert_eq!(messages[n - 2]["status"], "failed", "{report}");
    assert_eq!(messages[n - 1]["type"], "error", "{report}");
    assert_eq!(report["get"]["result"]["status"], "failed", "{report}");
    assert_eq!(report["result"]["error"]["code"], -32042, "{report}");
    assert!(
        report["result"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backend says no"),
        "{report}"
    );
    assert_eq!(tool_calls(&backend, "fail"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_cancel_of_a_running_task_ends_it_cancelled_and_cancels_the_backend_call() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let report = sdk(&sidecar, None, "cancel", &["sleep", r#"{"ms": 30000}"#]).await;
    let task_id = report["taskId"].as_str().unwrap();
    assert_eq!(report["created"], "working", "{report}");
    assert_eq!(report["before"]["result"]["status"], "working", "{report}");
    // tasks/cancel answers the task, cancelled; tasks/get keeps saying so.
    assert_eq!(report["cancel"]["result"]["taskId"], task_id, "{report}");
    assert_eq!(
        report["cancel"]["result"]["status"], "cancelled",
        "{report}"
    );
    assert_eq!(report["after"]["result"]["status"], "cancelled", "{report}");
    // 2025-11-25: cancelling a task in a terminal status is invalid params.
    assert_eq!(report["cancelAgain"]["error"]["code"], -32602, "{report}");
    // A cancelled task has no result to give.
    assert!(report["result"]["error"]["code"].is_i64(), "{report}");
    // The backend's call was abandoned and told so.
    backend_saw_cancel(&backend).await;
    assert_eq!(tool_calls(&backend, "sleep"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_list_tasks_shows_each_callers_own_tasks() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = keyed_sidecar(&backend).await;
    let a1 = create(&sidecar, Some(KEY_A), "sleep", json!({"ms": 30000})).await;
    let a2 = create(
        &sidecar,
        Some(KEY_A),
        "progress",
        json!({"steps": 1, "interval_ms": 10}),
    )
    .await;
    let b1 = create(&sidecar, Some(KEY_B), "sleep", json!({"ms": 30000})).await;
    let mut alice = listed(&sdk(&sidecar, Some(KEY_A), "list", &[]).await["list"]);
    alice.sort();
    let mut want = vec![a1, a2];
    want.sort();
    assert_eq!(alice, want);
    assert_eq!(
        listed(&sdk(&sidecar, Some(KEY_B), "list", &[]).await["list"]),
        vec![b1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principal_gets_unknown_task_from_every_task_method_and_does_not_list_it() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = keyed_sidecar(&backend).await;
    let task_id = create(&sidecar, Some(KEY_A), "sleep", json!({"ms": 30000})).await;

    let bob = sdk(&sidecar, Some(KEY_B), "probe", &[&task_id]).await;
    for method in ["get", "result", "cancel"] {
        assert_eq!(
            bob[method]["error"]["code"], -32602,
            "bob's {method}: {bob}"
        );
    }
    assert!(!listed(&bob["list"]).contains(&task_id), "{bob}");
    let unknown = sdk(
        &sidecar,
        Some(KEY_B),
        "probe",
        &["0123456789abcdef0123456789abcdef"],
    )
    .await;
    for method in ["get", "result", "cancel"] {
        assert_eq!(
            bob[method]["error"]["message"],
            unknown[method]["error"]["message"]
                .as_str()
                .unwrap()
                .replace("0123456789abcdef0123456789abcdef", &task_id),
            "bob's {method} must read as for a task that does not exist: {bob} {unknown}"
        );
    }
    // Bob's cancel did nothing: alice's task still runs, and the job API hides it from bob too.
    let alice = sdk(&sidecar, Some(KEY_A), "get", &[&task_id]).await;
    assert_eq!(alice["get"]["result"]["status"], "working", "{alice}");
    let path = format!("/jobs/{task_id}");
    assert_eq!(
        job_api(&sidecar, reqwest::Method::GET, &path, KEY_B)
            .await
            .0,
        404
    );
    assert_eq!(
        backend.stats().by_method.get("notifications/cancelled"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_a_job_its_owner_sees_on_the_job_api_and_a_delete_there_cancels_the_task() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = keyed_sidecar(&backend).await;
    let task_id = create(&sidecar, Some(KEY_A), "sleep", json!({"ms": 30000})).await;
    let path = format!("/jobs/{task_id}");

    let (status, job) = job_api(&sidecar, reqwest::Method::GET, &path, KEY_A).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["id"], task_id.as_str(), "{job}");
    assert_eq!(job["tool"], "sleep", "{job}");
    assert!(
        matches!(job["status"].as_str(), Some("queued" | "working")),
        "{job}"
    );
    let (status, _) = job_api(&sidecar, reqwest::Method::GET, "/jobs", KEY_A).await;
    assert_eq!(status, 200);

    let (status, job) = job_api(&sidecar, reqwest::Method::DELETE, &path, KEY_A).await;
    assert!((200..300).contains(&status), "{status} {job}");
    let alice = sdk(&sidecar, Some(KEY_A), "get", &[&task_id]).await;
    assert_eq!(alice["get"]["result"]["status"], "cancelled", "{alice}");
    backend_saw_cancel(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_task_tool_called_without_a_task_gets_method_not_found_and_never_runs() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let arguments = json!({"mode": "tool_error"}).to_string();
    let report = sdk(&sidecar, None, "required", &["fail", &arguments]).await;
    // The SDK's own callTool refuses before sending, from `taskSupport: "required"`.
    assert_eq!(report["callTool"]["error"]["code"], -32600, "{report}");
    // Sent anyway (a plain tools/call): the sidecar answers -32601, as 2025-11-25 says.
    assert_eq!(report["request"]["error"]["code"], -32601, "{report}");
    assert!(
        report["request"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fail"),
        "{report}"
    );
    assert_eq!(tool_calls(&backend, "fail"), 0, "{:?}", backend.stats());
}

/// The facade's call to the backend is a plain `tools/call`: `params.task` is the client's
/// request to the sidecar, not to a backend that never advertised Tasks to it. A TypeScript SDK
/// server (here `server-everything`, with the facade asked for on its `echo`) that sees
/// `params.task` treats the call as task-augmented and refuses the tool's plain result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reaches_a_typescript_sdk_backend_as_a_plain_call_and_completes() {
    let backend = Backend::everything("streamableHttp").await;
    let mut up = upstream(backend.url("/mcp"), None);
    up.tool = vec![serde_json::from_value(json!({"name": "echo", "tasks": "facade"})).unwrap()];
    let sidecar = start(config(vec![up])).await;
    let arguments = json!({"message": "through a task"}).to_string();
    let report = sdk(&sidecar, None, "lifecycle", &["echo", &arguments]).await;
    let messages = report["messages"].as_array().unwrap();
    assert_eq!(messages[0]["type"], "taskCreated", "{report}");
    let last = messages.last().unwrap();
    assert_eq!(last["type"], "result", "{report}\n{}", backend.output());
    assert_eq!(
        last["result"]["content"][0]["text"], "Echo: through a task",
        "{report}"
    );
    assert_eq!(report["get"]["result"]["status"], "completed", "{report}");
}

/// 2025-11-25, tool-level negotiation: a tool without `execution.taskSupport` is not invoked
/// as a task; a server SHOULD answer such a request -32601. The backend never advertised
/// Tasks: sent on, it would run the call and answer a plain result the client cannot read as
/// the `CreateTaskResult` it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_request_for_a_tool_without_task_support_gets_method_not_found_and_never_runs() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let arguments = json!({"text": "not a task"}).to_string();
    let report = sdk(&sidecar, None, "create", &["echo", &arguments]).await;
    assert_eq!(report["error"]["code"], -32601, "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo"),
        "{report}"
    );
    assert_eq!(tool_calls(&backend, "echo"), 0, "{:?}", backend.stats());
}

/// 2025-11-25: a receiver that accepts a task-augmented request MUST answer the
/// `CreateTaskResult`, however soon the call ends; only 2026-07-28's extension lets a server
/// answer such a call with its result. A `task_wait` is for the latter: here the SDK gets its
/// task, and the result through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_call_with_task_wait_still_answers_a_2025_11_25_task_request_with_the_task() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let mut up = facade_upstream(&backend);
    up.tool[0] =
        serde_json::from_value(json!({"name": "sleep", "offload": "allowed", "task_wait": "5s"}))
            .unwrap();
    let sidecar = start(config(vec![up])).await;
    let report = sdk(&sidecar, None, "lifecycle", &["sleep", r#"{"ms": 10}"#]).await;
    let messages = report["messages"].as_array().unwrap();
    assert_eq!(messages[0]["type"], "taskCreated", "{report}");
    let last = messages.last().unwrap();
    assert_eq!(last["type"], "result", "{report}");
    assert_eq!(
        last["result"]["content"][0]["text"], "slept 10 ms",
        "{report}"
    );
    assert_eq!(tool_calls(&backend, "sleep"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_task_tool_called_without_a_task_runs_live_and_makes_no_job() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let report = sdk(&sidecar, None, "call", &["sleep", r#"{"ms": 10}"#]).await;
    assert_eq!(
        report["call"]["result"]["content"][0]["text"], "slept 10 ms",
        "{report}"
    );
    assert_eq!(report["call"]["result"]["_meta"], Value::Null, "{report}");
    let jobs: Value = client()
        .get(sidecar.url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    assert_eq!(tool_calls(&backend, "sleep"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tasks_result_of_a_working_task_waits_for_its_end() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let report = sdk(&sidecar, None, "fetch", &["sleep", r#"{"ms": 1000}"#]).await;
    assert_eq!(
        report["result"]["result"]["content"][0]["text"], "slept 1000 ms",
        "{report}"
    );
    assert!(report["waitedMs"].as_i64().unwrap() >= 500, "{report}");
    assert_eq!(report["get"]["result"]["status"], "completed", "{report}");
}

/// 2025-11-25 counts a tool's own error (`isError`) as a failed task; `tasks/result` still
/// returns exactly what the call answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_task_whose_tool_reports_an_error_fails_and_tasks_result_returns_the_tools_answer() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let arguments = json!({"mode": "tool_error", "message": "tool says no"}).to_string();
    let report = sdk(&sidecar, None, "lifecycle", &["fail", &arguments]).await;
    assert_eq!(report["get"]["result"]["status"], "failed", "{report}");
    let result = &report["result"]["result"];
    assert_eq!(result["isError"], true, "{report}");
    assert_eq!(result["content"][0]["text"], "tool says no", "{report}");
}

/// A stateful backend answering in SSE (the call carries the job's progress token): the task's
/// call runs in the client's session and its streamed answer becomes the task's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_task_on_a_stateful_sse_backend_completes_with_the_streamed_result() {
    let backend = FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Sse,
        stateless: false,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let sidecar = open_sidecar(&backend).await;
    let arguments = json!({"steps": 3, "interval_ms": 200}).to_string();
    let report = sdk(&sidecar, None, "lifecycle", &["progress", &arguments]).await;
    // The SDK made it a task: it read the capability and `taskSupport` from SSE answers.
    assert_eq!(report["messages"][0]["type"], "taskCreated", "{report}");
    let last = report["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "result", "{report}");
    assert_eq!(
        last["result"]["content"][0]["text"], "completed 3 steps",
        "{report}"
    );
    assert_eq!(tool_calls(&backend, "progress"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tasks_list_with_a_cursor_the_server_never_gave_is_invalid_params() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = open_sidecar(&backend).await;
    let report = sdk(&sidecar, None, "list", &["not-a-cursor"]).await;
    assert_eq!(report["list"]["error"]["code"], -32602, "{report}");
}

/// The reverse of a task on `/jobs`: a job its owner submitted with `Prefer: respond-async` is a
/// task to the same principal's SDK client (`tasks/get`, `tasks/result`, `tasks/list`), and
/// stays unknown to another principal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_on_the_job_api_is_a_task_to_its_owner_only() {
    let backend = mcp_e2e_tests::json_fixture().await;
    let sidecar = keyed_sidecar(&backend).await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("x-api-key", KEY_A)
        .header("content-type", "application/json")
        .header("accept", mcp_e2e_tests::ACCEPT_BOTH)
        .header("prefer", "respond-async")
        .body(mcp_e2e_tests::call(1, "sleep", json!({"ms": 10})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();

    let alice = sdk(&sidecar, Some(KEY_A), "probe", &[id]).await;
    assert_eq!(alice["get"]["result"]["taskId"], id, "{alice}");
    assert_eq!(
        alice["result"]["result"]["content"][0]["text"], "slept 10 ms",
        "{alice}"
    );
    assert!(listed(&alice["list"]).contains(&id.to_owned()), "{alice}");
    let bob = sdk(&sidecar, Some(KEY_B), "probe", &[id]).await;
    assert_eq!(bob["get"]["error"]["code"], -32602, "{bob}");
}
