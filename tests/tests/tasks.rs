//! MCP Tasks served by the sidecar (the facade) for the fixture's task tools, which know nothing
//! of tasks, over raw JSON-RPC on the 2026-07-28 wire (no official SDK release speaks the Tasks
//! extension yet): shapes as `schema/2026-07-28` and SEP-2663 give them, input rounds through
//! `tasks/update`, owner isolation, the answer additions in JSON and SSE, and a backend that
//! serves Tasks itself passed through. The 2025-11-25 revision is driven by the official
//! TypeScript SDK in `tasks_sdk.rs`; the conformance suite runs in `conformance.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{client, config, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::{
    ApiKeyConfig, AuthConfig, Config, Offload, Secret, TasksMode, ToolConfig, UpstreamConfig,
};
use serde_json::{Value, json};

const EXTENSION: &str = "io.modelcontextprotocol/tasks";

async fn fixture(mode: ResponseMode) -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: mode,
        conformance_tools: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

fn tool(name: &str, offload: Option<Offload>) -> ToolConfig {
    ToolConfig {
        name: name.into(),
        timeout: None,
        stream_idle_timeout: None,
        idempotent: false,
        breaker: None,
        offload,
        job_deadline: None,
        tasks: None,
        task_wait: None,
    }
}

/// The fixture behind the sidecar, its task tools made facade tools by their `offload`.
fn facade(fx: &FixtureServer) -> UpstreamConfig {
    let mut up = upstream(fx.mcp_url(), Some("/mcp"));
    up.tool = vec![
        tool("slow_compute", Some(Offload::Allowed)),
        tool("failing_job", Some(Offload::Required)),
        tool("confirm_delete", Some(Offload::Allowed)),
        tool("multi_input", Some(Offload::Allowed)),
    ];
    up
}

/// A 2026-07-28 request: the routing headers, and the client capabilities in `_meta` (with the
/// Tasks extension when `tasks`).
async fn rpc(
    base: &str,
    credential: Option<&str>,
    method: &str,
    mut params: Value,
    tasks: bool,
) -> (u16, Value) {
    let capabilities = if tasks {
        json!({"extensions": {EXTENSION: {}}})
    } else {
        json!({})
    };
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    });
    let mut req = client()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
    {
        req = req.header("mcp-name", name);
    }
    if let Some(key) = credential {
        req = req.header("x-api-key", key);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = req.body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    // An SSE answer: its last `data:` line is the response.
    let json_text = if text.starts_with('{') {
        text
    } else {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap_or("null")
            .trim()
            .to_owned()
    };
    (status, serde_json::from_str(&json_text).unwrap())
}

async fn call(base: &str, key: Option<&str>, tool: &str, arguments: Value) -> Value {
    let (status, body) = rpc(
        base,
        key,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

async fn get(base: &str, key: Option<&str>, id: &str) -> Value {
    let (status, body) = rpc(base, key, "tasks/get", json!({"taskId": id}), true).await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

/// Polls `tasks/get` until the task has `status` or has ended (bounded).
async fn until(base: &str, key: Option<&str>, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let task = get(base, key, id).await;
        let now = task["status"].as_str().unwrap_or("").to_owned();
        if now == status || matches!(now.as_str(), "completed" | "failed" | "cancelled") {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {id} never became {status}");
}

#[tokio::test]
async fn a_negotiated_call_becomes_a_task_whose_result_tasks_get_inlines() {
    let fx = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let created = call(
        &base,
        None,
        "slow_compute",
        json!({"seconds": 1, "label": "a"}),
    )
    .await;
    // SEP-2663: flat, resultType "task", integer ttlMs and pollIntervalMs, no nested `task`.
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working");
    assert!(created["ttlMs"].as_u64().unwrap() >= 60_000);
    assert!(created["pollIntervalMs"].is_u64());
    assert!(created.get("task").is_none() && created.get("ttl").is_none());
    let id = created["taskId"].as_str().unwrap().to_owned();
    // Stored before the answer: an immediate tasks/get resolves.
    assert_eq!(get(&base, None, &id).await["taskId"], id);
    let done = until(&base, None, &id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resultType"], "complete");
    assert!(done["result"]["content"][0]["text"].is_string(), "{done}");
    // A task is a job: its owner sees it on /jobs too.
    let job: Value = client()
        .get(format!("{base}/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["tool"], "slow_compute");
}

#[tokio::test]
async fn without_negotiation_a_facade_tool_runs_live_and_a_required_one_is_refused() {
    let fx = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let (status, live) = rpc(
        &base,
        None,
        "tools/call",
        json!({"name": "slow_compute", "arguments": {"seconds": 0, "label": "live"}}),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(live["result"]["resultType"], "complete", "{live}");
    assert!(live["result"].get("taskId").is_none());
    let (status, refused) = rpc(
        &base,
        None,
        "tools/call",
        json!({"name": "failing_job", "arguments": {}}),
        false,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], -32021);
    assert_eq!(
        refused["error"]["data"]["requiredCapabilities"]["extensions"][EXTENSION],
        json!({})
    );
    let (status, gated) = rpc(&base, None, "tasks/get", json!({"taskId": "x"}), false).await;
    assert_eq!(
        (status, gated["error"]["code"].as_i64()),
        (400, Some(-32021))
    );
    let (status, removed) = rpc(&base, None, "tasks/list", json!({}), true).await;
    assert_eq!(
        (status, removed["error"]["code"].as_i64()),
        (404, Some(-32601))
    );
}

#[tokio::test]
async fn an_input_round_waits_for_every_response_then_sends_the_call_again() {
    let fx = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let id = call(&base, None, "multi_input", json!({})).await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = until(&base, None, &id, "input_required").await;
    let keys: Vec<String> = waiting["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 2, "{waiting}");
    assert_eq!(
        waiting["inputRequests"][&keys[0]]["method"],
        "elicitation/create"
    );
    let answer = json!({"action": "accept", "content": {"name": "n", "confirm": true}});
    let (_, ack) = rpc(
        &base,
        None,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {keys[0].clone(): answer, "unknown": {}}}),
        true,
    )
    .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    // Still waiting, for the other key only; the backend was not called again.
    let partial = get(&base, None, &id).await;
    assert_eq!(partial["status"], "input_required");
    let left: Vec<&String> = partial["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(left, [&keys[1]]);
    assert_eq!(mcp_e2e_tests::tool_calls(&fx, "multi_input"), 1);
    rpc(
        &base,
        None,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {keys[1].clone(): answer}}),
        true,
    )
    .await;
    let done = until(&base, None, &id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(mcp_e2e_tests::tool_calls(&fx, "multi_input"), 2);
}

#[tokio::test]
async fn cancelling_a_task_reaches_its_job_and_a_finished_task_still_acks() {
    let fx = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let id = call(
        &base,
        None,
        "slow_compute",
        json!({"seconds": 60, "label": "c"}),
    )
    .await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    until(&base, None, &id, "working").await;
    let (_, ack) = rpc(&base, None, "tasks/cancel", json!({"taskId": id}), true).await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    assert_eq!(
        until(&base, None, &id, "cancelled").await["status"],
        "cancelled"
    );
    // The backend is told, with routing headers that describe the notification, not the call.
    mcp_e2e_tests::eventually("the backend got notifications/cancelled", || {
        fx.stats()
            .by_method
            .get("notifications/cancelled")
            .is_some_and(|n| *n >= 1)
    })
    .await;
    let headers = fx.stats().last_request_headers;
    assert_eq!(
        headers.get("mcp-method").map(String::as_str),
        Some("notifications/cancelled"),
        "{headers:?}"
    );
    assert!(!headers.contains_key("mcp-name"), "{headers:?}");
    let (status, again) = rpc(&base, None, "tasks/cancel", json!({"taskId": id}), true).await;
    assert_eq!(
        (status, &again["result"]),
        (200, &json!({"resultType": "complete"}))
    );
    let (status, unknown) = rpc(
        &base,
        None,
        "tasks/cancel",
        json!({"taskId": "00000000000000000000000000000000"}),
        true,
    )
    .await;
    assert_eq!(
        (status, unknown["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
}

#[tokio::test]
async fn another_principals_task_is_unknown_to_it() {
    let fx = fixture(ResponseMode::Json).await;
    let mut c: Config = config(vec![facade(&fx)]);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![
            ApiKeyConfig {
                id: "alice".into(),
                key: Secret("alice-key-0123456789abcdef".into()),
                scopes: vec![],
            },
            ApiKeyConfig {
                id: "bob".into(),
                key: Secret("bob-key-0123456789abcdef00".into()),
                scopes: vec![],
            },
        ],
        ..AuthConfig::default()
    };
    let sidecar = start(c).await;
    let base = sidecar.url("");
    let alice = Some("alice-key-0123456789abcdef");
    let bob = Some("bob-key-0123456789abcdef00");
    let id = call(
        &base,
        alice,
        "slow_compute",
        json!({"seconds": 60, "label": "mine"}),
    )
    .await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    for method in ["tasks/get", "tasks/cancel"] {
        let (status, refused) = rpc(&base, bob, method, json!({"taskId": id}), true).await;
        assert_eq!(
            (status, refused["error"]["code"].as_i64()),
            (400, Some(-32602)),
            "{method}: {refused}"
        );
    }
    let (_, update) = rpc(
        &base,
        bob,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {}}),
        true,
    )
    .await;
    assert_eq!(update["error"]["code"], -32602);
    // Still Alice's, still running.
    assert_eq!(get(&base, alice, &id).await["status"], "working");
    rpc(&base, alice, "tasks/cancel", json!({"taskId": id}), true).await;
}

#[tokio::test]
async fn a_principal_limited_by_method_rules_can_still_follow_its_own_tasks() {
    let fx = fixture(ResponseMode::Json).await;
    let mut up = facade(&fx);
    // Allowed one tool and no task method: the facade's task methods reach only the caller's
    // own tasks, so the rules do not stand between a client and the task of its allowed call.
    up.auth.rules = vec![mcp_sidecar::config::RuleConfig {
        scopes: vec!["tools".into()],
        methods: vec!["tools/list".into()],
        tools: vec!["slow_compute".into()],
    }];
    let mut c: Config = config(vec![up]);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![ApiKeyConfig {
            id: "alice".into(),
            key: Secret("alice-key-0123456789abcdef".into()),
            scopes: vec!["tools".into()],
        }],
        ..AuthConfig::default()
    };
    let sidecar = start(c).await;
    let base = sidecar.url("");
    let alice = Some("alice-key-0123456789abcdef");
    let id = call(
        &base,
        alice,
        "slow_compute",
        json!({"seconds": 0, "label": "r"}),
    )
    .await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        until(&base, alice, &id, "completed").await["status"],
        "completed"
    );
    let (status, _) = rpc(&base, alice, "tasks/cancel", json!({"taskId": id}), true).await;
    assert_eq!(status, 200);
    // The rules still hold for everything else.
    let (status, refused) = rpc(&base, alice, "prompts/list", json!({}), true).await;
    assert_eq!(
        (status, refused["error"]["code"].as_i64()),
        (403, Some(-32011))
    );
    let (status, _) = rpc(
        &base,
        alice,
        "tools/call",
        json!({"name": "failing_job", "arguments": {}}),
        true,
    )
    .await;
    assert_eq!(status, 403, "another tool stays forbidden, task or not");
}

#[tokio::test]
async fn discover_and_tools_list_advertise_the_facade_in_json_and_sse_answers() {
    for mode in [ResponseMode::Json, ResponseMode::Sse] {
        let fx = fixture(mode).await;
        let sidecar = start(config(vec![facade(&fx)])).await;
        let base = sidecar.url("");
        let (_, discover) = rpc(&base, None, "server/discover", json!({}), false).await;
        assert_eq!(
            discover["result"]["capabilities"]["extensions"][EXTENSION],
            json!({}),
            "{mode:?}: {discover}"
        );
        let (_, list) = rpc(&base, None, "tools/list", json!({}), false).await;
        let support = |name: &str| {
            list["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()["execution"]["taskSupport"]
                .clone()
        };
        assert_eq!(support("slow_compute"), "optional", "{mode:?}");
        assert_eq!(support("failing_job"), "required", "{mode:?}");
        assert_eq!(support("greet"), Value::Null, "{mode:?}");
    }
}

#[tokio::test]
async fn routing_headers_that_disagree_with_the_body_are_refused() {
    let fx = fixture(ResponseMode::Json).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "greet", "arguments": {"name": "x"}}});
    for (header, value) in [("mcp-method", "tasks/get"), ("mcp-name", "other")] {
        let resp = client()
            .post(sidecar.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header(header, value)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{header}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], -32020, "{header}: {err}");
        assert_eq!(err["id"], 1);
    }
    assert_eq!(mcp_e2e_tests::tool_calls(&fx, "greet"), 0);
}

#[tokio::test]
async fn a_backend_that_serves_tasks_itself_is_passed_through() {
    // The fixture with the facade's own shapes would be the sidecar talking to itself; a
    // backend that advertises Tasks is enough: its capability is left alone, and after it the
    // task methods and calls go to the backend.
    let backend = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::body_partial_json(
        json!({"method": "server/discover"}),
    ))
    .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
        "jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete",
            "supportedVersions": ["2026-07-28"], "cacheScope": "public", "ttlMs": 0,
            "capabilities": {"tools": {}, "extensions": {EXTENSION: {"own": true}}}}
    })))
    .mount(&backend)
    .await;
    wiremock::Mock::given(wiremock::matchers::body_partial_json(
        json!({"method": "tasks/get"}),
    ))
    .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
        "jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "taskId": "backend-1",
            "status": "working", "createdAt": "2026-01-01T00:00:00Z",
            "lastUpdatedAt": "2026-01-01T00:00:00Z", "ttlMs": 1000}
    })))
    .mount(&backend)
    .await;
    let mut up = upstream(format!("{}/mcp", backend.uri()), Some("/mcp"));
    up.tool = vec![tool("slow_compute", Some(Offload::Allowed))];
    let sidecar = start(config(vec![up])).await;
    let base = sidecar.url("");
    let (_, discover) = rpc(&base, None, "server/discover", json!({}), false).await;
    assert_eq!(
        discover["result"]["capabilities"]["extensions"][EXTENSION],
        json!({"own": true}),
        "the backend's own capability, untouched"
    );
    let (status, task) = rpc(
        &base,
        None,
        "tasks/get",
        json!({"taskId": "backend-1"}),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        task["result"]["taskId"], "backend-1",
        "answered by the backend"
    );

    // `tasks = "passthrough"` says so from the start.
    let mut up = upstream(format!("{}/mcp", backend.uri()), Some("/mcp"));
    up.tasks = Some(TasksMode::Passthrough);
    let sidecar = start(config(vec![up])).await;
    let (_, task) = rpc(
        &sidecar.url(""),
        None,
        "tasks/get",
        json!({"taskId": "backend-1"}),
        true,
    )
    .await;
    assert_eq!(task["result"]["taskId"], "backend-1");
}

/// A 2025-11-25 session through the sidecar that declared `elicitation`: its session id.
async fn core_session(base: &str) -> String {
    let resp = client()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "e2e", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"tasks\""), "the core capability: {text}");
    core(
        base,
        &session,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    session
}

/// A POST in the 2025-11-25 session; the answer's text.
async fn core(base: &str, session: &str, message: Value) -> String {
    client()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
        .body(message.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The JSON of an answer that is JSON or an event stream with one `data:` line per event.
fn messages(text: &str) -> Vec<Value> {
    if text.starts_with('{') {
        return vec![serde_json::from_str(text).unwrap()];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

/// Starts `confirm_delete` as a 2025-11-25 task in `session`; its task id once it asks.
async fn asking_task(base: &str, session: &str) -> String {
    let created = core(
        base,
        session,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "confirm_delete", "arguments": {"filename": "a.txt"}, "task": {"ttl": 60000}}}),
    )
    .await;
    let created = &messages(&created)[0];
    let id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..400 {
        let got = core(
            base,
            session,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": id}}),
        )
        .await;
        if messages(&got)[0]["result"]["status"] == "input_required" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {id} never asked for input");
}

#[tokio::test]
async fn a_request_on_the_calls_stream_reaches_a_core_client_through_tasks_result() {
    let fx = fixture(ResponseMode::Sse).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let session = core_session(&base).await;
    let id = asking_task(&base, &session).await;
    // tasks/result streams the backend's request (with the related-task metadata), and after
    // the client's answer, the call's result.
    let resp = client()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .body(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/result", "params": {"taskId": id}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let mut events = mcp_e2e_tests::EventReader::new(resp);
    let asked = mcp_e2e_tests::event_json(&events.next_event().await.unwrap());
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert_eq!(
        asked["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id
    );
    // The client answers as it answers any request: a POST of the response, which the sidecar
    // forwards to the backend's session.
    core(
        &base,
        &session,
        json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
            "action": "accept", "content": {"confirm": true}}}),
    )
    .await;
    let result = mcp_e2e_tests::event_json(&events.next_event().await.unwrap());
    assert_eq!(result["id"], 3, "{result}");
    assert_eq!(result["result"]["content"][0]["text"], "Deleted a.txt");
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id
    );
}

#[tokio::test]
async fn tasks_update_relays_the_response_to_the_backends_pending_request() {
    let fx = fixture(ResponseMode::Sse).await;
    let sidecar = start(config(vec![facade(&fx)])).await;
    let base = sidecar.url("");
    let session = core_session(&base).await;
    let id = asking_task(&base, &session).await;
    // A client on the 2026-07-28 extension sees the request under a key and answers it with
    // tasks/update: the sidecar sends the response to the backend's waiting request.
    let waiting = get(&base, None, &id).await;
    let key = waiting["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        waiting["inputRequests"][&key]["method"],
        "elicitation/create"
    );
    let (_, ack) = rpc(
        &base,
        None,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {key: {"action": "decline"}}}),
        true,
    )
    .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    let done = until(&base, None, &id, "completed").await;
    assert_eq!(done["result"]["content"][0]["text"], "Kept a.txt", "{done}");
    // The backend got one call: the answer went to its pending request, not a new call.
    assert_eq!(mcp_e2e_tests::tool_calls(&fx, "confirm_delete"), 1);
}
