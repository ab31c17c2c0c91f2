//! The job store's promise through the real binary: `kill -9` the sidecar while jobs are
//! completed, working and queued, start it again on the same data directory, and every job
//! reaches its documented outcome: completed results are still there, unchanged; a working
//! call of a non-idempotent tool fails as `interrupted` (and is never sent twice); a working
//! call of an `idempotent = true` tool runs again; queued jobs run. The same after SIGTERM, for
//! the jobs still working when the grace period ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use jobs_support::{Sidecar, calls, config, data_dir, fixture, tool_call};
use serde_json::{Value, json};

/// Jobs left queued at the kill.
const QUEUED: u64 = 12;

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_job_reaches_its_documented_outcome() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    // Two jobs run at once, the rest wait; `progress` may be sent again, `sleep` may not.
    let cfg = config(
        &backend.mcp_url(),
        &data,
        "store = \"redb\"\nmax_running = 2\nmax_running_per_upstream = 2\n",
        "[[upstream.tool]]\nname = \"progress\"\nidempotent = true\n",
        "",
    );
    let first = Sidecar::start(&cfg, dir.path(), &[]).await;

    let done_body = tool_call(1, "echo", json!({"text": "kept"}));
    let key = [("idempotency-key", "durable-1")];
    let done = first.submit(&done_body, &key).await;
    let done = id(&done);
    first.wait_status(&done, "completed", &[]).await;
    let done_result = first.result(&done, &[]).await;
    assert!(done_result.to_string().contains("kept"), "{done_result}");

    let sleeping = first
        .submit(&tool_call(2, "sleep", json!({"ms": 30_000})), &[])
        .await;
    let sleeping = id(&sleeping);
    first.wait_status(&sleeping, "working", &[]).await;
    // Long enough to be cut by the kill, short enough to run again quickly after the restart.
    let rerun = first
        .submit(
            &tool_call(3, "progress", json!({"steps": 30, "interval_ms": 250})),
            &[],
        )
        .await;
    let rerun = id(&rerun);
    first.wait_status(&rerun, "working", &[]).await;
    // Submitted at once (one group commit or several), killed right after the last 202:
    // every acknowledged job must be there after the restart.
    let submissions = (0..QUEUED).map(|n| {
        first.submit_owned(tool_call(
            10 + n,
            "echo",
            json!({"text": format!("queued {n}")}),
        ))
    });
    let mut queued = Vec::new();
    for job in futures_util::future::join_all(submissions).await {
        assert_eq!(job["status"], "queued", "{job}");
        queued.push(id(&job));
    }
    assert_eq!(calls(&backend, "sleep"), 1);
    assert_eq!(calls(&backend, "progress"), 1);
    assert_eq!(calls(&backend, "echo"), 1);

    first.kill();
    assert_eq!(calls(&backend, "echo"), 1);

    let second = Sidecar::start(&cfg, dir.path(), &[]).await;
    // Completed: still there, the same answer.
    let job = second.job(&done, &[]).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(second.result(&done, &[]).await, done_result);
    // Its idempotency key still names it: the same job, no new call.
    let replay = second
        .post("/mcp", &done_body, &[("prefer", "respond-async"), key[0]])
        .await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], done.as_str());

    // Working, not idempotent: failed as interrupted, its result says so.
    let job = second.job(&sleeping, &[]).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["reason"], "interrupted", "{job}");
    let result = second.result(&sleeping, &[]).await;
    assert_eq!(result["id"], 2, "{result}");
    assert_eq!(result["error"]["code"], -32047, "{result}");
    assert_eq!(result["error"]["data"]["reason"], "interrupted", "{result}");

    // Working, idempotent: run again, to completion.
    let job = second.wait_status(&rerun, "completed", &[]).await;
    assert_eq!(job["attempts"], 2, "{job}");
    let result = second.result(&rerun, &[]).await;
    assert_eq!(result["id"], 3, "{result}");
    assert!(
        result.to_string().contains("completed 30 steps"),
        "{result}"
    );

    // Queued: run after the restart.
    for (n, q) in queued.iter().enumerate() {
        let job = second.wait_status(q, "completed", &[]).await;
        assert_eq!(job["attempts"], 1, "{job}");
        let result = second.result(q, &[]).await;
        assert!(
            result.to_string().contains(&format!("queued {n}")),
            "{result}"
        );
    }

    // What reached the backend: the interrupted call never again, the idempotent one twice,
    // each queued one once.
    assert_eq!(calls(&backend, "sleep"), 1, "{:?}", backend.stats());
    assert_eq!(calls(&backend, "progress"), 2, "{:?}", backend.stats());
    assert_eq!(calls(&backend, "echo"), 1 + QUEUED, "{:?}", backend.stats());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_interrupts_jobs_past_the_grace_period_and_the_next_start_resumes_them() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    // Two jobs run at once: the third stays queued through the shutdown.
    let cfg = config(
        &backend.mcp_url(),
        &data,
        "max_running = 2\nmax_running_per_upstream = 2\n",
        "[[upstream.tool]]\nname = \"progress\"\nidempotent = true\n",
        "",
    );
    let first = Sidecar::start(&cfg, dir.path(), &[]).await;
    let sleeping = first
        .submit(&tool_call(1, "sleep", json!({"ms": 60_000})), &[])
        .await;
    let sleeping = id(&sleeping);
    first.wait_status(&sleeping, "working", &[]).await;
    // Longer than the 2 s grace period, so the shutdown interrupts it.
    let rerun = first
        .submit(
            &tool_call(2, "progress", json!({"steps": 20, "interval_ms": 250})),
            &[],
        )
        .await;
    let rerun = id(&rerun);
    first.wait_status(&rerun, "working", &[]).await;
    let queued = first
        .submit(&tool_call(3, "echo", json!({"text": "later"})), &[])
        .await;
    let queued = id(&queued);
    assert_eq!(first.job(&queued, &[]).await["status"], "queued");

    first.terminate();
    assert_eq!(first.wait_exit().await, Some(0));
    // The interrupted calls were cancelled at the backend, not left running.
    let stats = backend.stats();
    assert!(
        stats.by_method.get("notifications/cancelled").copied() >= Some(2),
        "{stats:?}"
    );
    assert_eq!(calls(&backend, "echo"), 0);

    let second = Sidecar::start(&cfg, dir.path(), &[]).await;
    let job = second.job(&sleeping, &[]).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["reason"], "interrupted", "{job}");
    let job = second.wait_status(&rerun, "completed", &[]).await;
    assert_eq!(job["attempts"], 2, "{job}");
    let job = second.wait_status(&queued, "completed", &[]).await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(calls(&backend, "sleep"), 1, "{:?}", backend.stats());
    assert_eq!(calls(&backend, "progress"), 2, "{:?}", backend.stats());
    assert_eq!(calls(&backend, "echo"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_stops_the_start_with_an_error_naming_the_file_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    let file = data.join("jobs.redb");
    let garbage = b"this is not a redb file, and it must not be replaced".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let cfg = config("http://127.0.0.1:9/mcp", &data, "", "", "");
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(jobs_support::BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    // A data directory that does not exist yet: the sidecar makes it.
    let data = dir.path().join("state").join("jobs");
    let cfg = config(&backend.mcp_url(), &data, "", "", "");
    let sidecar = Sidecar::start(&cfg, dir.path(), &[]).await;
    let job = sidecar
        .submit(&tool_call(1, "echo", json!({"text": "private"})), &[])
        .await;
    sidecar.wait_status(&id(&job), "completed", &[]).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(&data.join("jobs.redb")), 0o600);
}
