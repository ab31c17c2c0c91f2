//! Two `mcp-sidecar` processes on one Redis job store (`jobs.store = "redis"`), and a real
//! `kill -9` of the one running the jobs: the survivor takes them over once their leases run
//! out. A working call of an `idempotent = true` tool runs again to completion there; a
//! working call of any other tool fails as `interrupted` and is never sent twice; a queued job
//! runs. The in-process replica tests (`tests/tests/replicas_jobs.rs`) cover the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use jobs_support::{Sidecar, calls, config, data_dir, fixture, tool_call};
use mcp_fixtures::redis_server::RedisServer;
use serde_json::{Value, json};

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn after_kill_9_of_one_replica_the_other_finishes_or_marks_its_jobs() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = fixture().await;
    // The shortest lease, so the takeover comes a second or two after the kill; one job runs at
    // a time on the victim, so a third one is still queued when it dies.
    let cfg = |dir: &std::path::Path| {
        config(
            &backend.mcp_url(),
            &data_dir(dir),
            "store = \"redis\"\nlease = \"1s\"\nmax_running = 2\nmax_running_per_upstream = 2\n",
            "[[upstream.tool]]\nname = \"progress\"\nidempotent = true\n",
            &format!("[redis]\nurl = \"{}\"\n", redis.url()),
        )
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Sidecar::start(&cfg(dir_a.path()), dir_a.path(), &[]).await;
    let b = Sidecar::start(&cfg(dir_b.path()), dir_b.path(), &[]).await;

    let rerun = a
        .submit(
            &tool_call(1, "progress", json!({"steps": 8, "interval_ms": 250})),
            &[],
        )
        .await;
    let rerun = id(&rerun);
    let interrupted = a
        .submit(&tool_call(2, "sleep", json!({"ms": 30_000})), &[])
        .await;
    let interrupted = id(&interrupted);
    let queued = a
        .submit(&tool_call(3, "echo", json!({"text": "queued"})), &[])
        .await;
    let queued = id(&queued);
    a.wait_status(&rerun, "working", &[]).await;
    a.wait_status(&interrupted, "working", &[]).await;
    // Seen through the other replica before the kill: one store.
    assert_eq!(b.job(&queued, &[]).await["status"], "queued");
    assert_eq!(calls(&backend, "progress"), 1);
    assert_eq!(calls(&backend, "sleep"), 1);

    a.kill();

    let done = b.wait_status(&rerun, "completed", &[]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        calls(&backend, "progress"),
        2,
        "the idempotent call runs again"
    );
    let job = b.wait_status(&interrupted, "failed", &[]).await;
    assert_eq!(job["error"]["reason"], "interrupted", "{job}");
    let result = b.result(&interrupted, &[]).await;
    assert_eq!(result["id"], 2, "{result}");
    assert_eq!(result["error"]["data"]["reason"], "interrupted", "{result}");
    assert_eq!(calls(&backend, "sleep"), 1, "never sent twice");
    b.wait_status(&queued, "completed", &[]).await;
    let result = b.result(&queued, &[]).await;
    assert!(result.to_string().contains("queued"), "{result}");
}
