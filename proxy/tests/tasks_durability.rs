//! MCP Tasks (revision 2025-11-25, raw JSON-RPC as `schema/2025-11-25/schema.ts` defines it)
//! survive a sidecar restart, because a task is a job in the durable store: `kill -9` the
//! binary between a task's creation and its fetch, start it again on the same data directory,
//! and `tasks/get` and `tasks/result` still answer for every task: a completed one with its
//! result unchanged, a working call of a non-idempotent tool as `failed` (interrupted, never
//! sent twice), a working call of an `idempotent = true` tool run again to completion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use std::time::Instant;

use jobs_support::{PATIENCE, POLL, Sidecar, calls, config, data_dir, fixture, jsonrpc_response};
use serde_json::{Value, json};

/// The revision whose core protocol defines Tasks.
const REVISION: &str = "2025-11-25";

/// Sends one JSON-RPC request to `/mcp` as a 2025-11-25 client; the JSON-RPC response.
async fn rpc(sidecar: &Sidecar, id: u64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let resp = sidecar
        .post(
            "/mcp",
            &body.to_string(),
            &[("mcp-protocol-version", REVISION)],
        )
        .await;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{method}: {text}");
    jsonrpc_response(&content_type, &text)
}

/// Creates a task calling `tool` (`params.task`); its id, after checking the
/// `CreateTaskResult`.
async fn create(sidecar: &Sidecar, id: u64, tool: &str, arguments: Value) -> String {
    let answer = rpc(
        sidecar,
        id,
        "tools/call",
        json!({"name": tool, "arguments": arguments, "task": {"ttl": 600_000}}),
    )
    .await;
    let task = &answer["result"]["task"];
    assert_eq!(task["status"], "working", "{answer}");
    task["taskId"].as_str().unwrap().to_owned()
}

/// `tasks/get`'s task.
async fn get(sidecar: &Sidecar, task: &str) -> Value {
    let answer = rpc(sidecar, 90, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(answer["result"]["taskId"], task, "{answer}");
    answer["result"].clone()
}

/// Polls `tasks/get` every [`POLL`] until the task's status is `want` (bounded).
async fn wait_task(sidecar: &Sidecar, task: &str, want: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let t = get(sidecar, task).await;
        if t["status"] == want {
            return t;
        }
        assert!(
            t["status"] == "working" && Instant::now() < deadline,
            "task is {}, not {want}: {t}",
            t["status"]
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `tasks/result`'s JSON-RPC response (result or error).
async fn result(sidecar: &Sidecar, task: &str) -> Value {
    rpc(sidecar, 91, "tasks/result", json!({"taskId": task})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_a_kill_9_between_create_and_fetch() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    // Facade tools (`offload` set); `progress` may be sent again, `sleep` may not.
    let cfg = config(
        &backend.mcp_url(),
        &data,
        "store = \"redb\"\n",
        "[[upstream.tool]]\nname = \"sleep\"\noffload = \"allowed\"\n\
         [[upstream.tool]]\nname = \"progress\"\noffload = \"allowed\"\nidempotent = true\n",
        "",
    );
    let first = Sidecar::start(&cfg, dir.path(), &[]).await;

    let done = create(&first, 1, "sleep", json!({"ms": 10})).await;
    wait_task(&first, &done, "completed").await;
    let done_result = result(&first, &done).await;
    assert_eq!(
        done_result["result"]["content"][0]["text"], "slept 10 ms",
        "{done_result}"
    );

    let interrupted = create(&first, 2, "sleep", json!({"ms": 30_000})).await;
    first.wait_status(&interrupted, "working", &[]).await;
    // Long enough to be cut by the kill, short enough to run again quickly after the restart.
    let rerun = create(
        &first,
        3,
        "progress",
        json!({"steps": 30, "interval_ms": 250}),
    )
    .await;
    first.wait_status(&rerun, "working", &[]).await;
    // `working` is recorded as the call is sent: wait until both reached the backend.
    let deadline = Instant::now() + PATIENCE;
    while calls(&backend, "sleep") < 2 || calls(&backend, "progress") < 1 {
        assert!(Instant::now() < deadline, "{:?}", backend.stats());
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(calls(&backend, "sleep"), 2);
    assert_eq!(calls(&backend, "progress"), 1);

    first.kill();

    let second = Sidecar::start(&cfg, dir.path(), &[]).await;
    // Completed: still there, the same result.
    assert_eq!(get(&second, &done).await["status"], "completed");
    assert_eq!(result(&second, &done).await, done_result);

    // Working, not idempotent: failed as interrupted; tasks/result says so.
    let task = get(&second, &interrupted).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["statusMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{task}"
    );
    let answer = result(&second, &interrupted).await;
    assert_eq!(answer["id"], 91, "{answer}");
    assert!(answer["error"]["code"].is_i64(), "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "interrupted", "{answer}");

    // Working, idempotent: run again, to completion, under the same task id.
    wait_task(&second, &rerun, "completed").await;
    let answer = result(&second, &rerun).await;
    assert!(
        answer["result"].to_string().contains("completed 30 steps"),
        "{answer}"
    );
    assert_eq!(
        answer["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        rerun.as_str(),
        "{answer}"
    );
    assert_eq!(second.job(&rerun, &[]).await["attempts"], 2);

    // What reached the backend: the interrupted call never again, the idempotent one twice.
    assert_eq!(calls(&backend, "sleep"), 2, "{:?}", backend.stats());
    assert_eq!(calls(&backend, "progress"), 2, "{:?}", backend.stats());
    drop(second);
}
