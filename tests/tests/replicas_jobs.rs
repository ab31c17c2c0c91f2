//! Two replicas sharing one Redis job store (`jobs.store = "redis"`): a job submitted through
//! one is followed, fetched and cancelled through the other; a replica killed outright has its
//! jobs taken over by the survivor (re-run when the tool is idempotent, else `interrupted`);
//! one that shuts down hands its queued jobs over at once; a Redis restart keeps every acknowledged job (AOF); a Redis that is down gets submissions a
//! quick 503, and things work again once it is back.
//!
//! Each replica is a real, independent sidecar on a runtime (and threads) of its own; killing
//! one drops its runtime at once (`shutdown_background`): no drain, no lease released, no last
//! write, its connections closed by the OS, as after `kill -9` seen from Redis and the backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_e2e_tests::redis_server::RedisServer;
use mcp_e2e_tests::{EventReader, call, client, config, event_json, tool_calls, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::Sidecar;
use mcp_sidecar::config::{Config, RedisConfig, StoreKind, ToolConfig};
use serde_json::{Value, json};

/// The lease of the test replicas: the shortest allowed, so a takeover takes about a second.
const LEASE: Duration = Duration::from_secs(1);

/// One sidecar on a runtime of its own.
struct Replica {
    addr: SocketAddr,
    admin: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    /// Starts the graceful shutdown (SIGTERM).
    term: Option<tokio::sync::oneshot::Sender<()>>,
    /// Says when the graceful shutdown is over.
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(config: Config) -> Self {
        let (addrs, bound) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let (term, termed) = tokio::sync::oneshot::channel::<()>();
        let (done, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let sidecar = runtime.block_on(Sidecar::bind(config)).expect("binds");
            addrs
                .send((sidecar.local_addr().unwrap(), sidecar.admin_addr().unwrap()))
                .unwrap();
            runtime.spawn(async move {
                sidecar
                    .serve(async move {
                        let _ = termed.await;
                    })
                    .await;
                let _ = done.send(());
            });
            let _ = killed.recv();
            runtime.shutdown_background();
        });
        let (addr, admin) = bound.recv().unwrap();
        Self {
            addr,
            admin,
            kill: Some(kill),
            term: Some(term),
            stopped: Some(stopped),
            thread: Some(thread),
        }
    }

    /// Shuts the replica down gracefully (as on SIGTERM) and waits until it has.
    async fn stop(&mut self) {
        if let Some(term) = self.term.take() {
            let _ = term.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(30), stopped)
                .await
                .expect("the drain ends")
                .unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A series' value in the replica's `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        mcp_e2e_tests::metric_value(&text, series).unwrap_or(0.0)
    }

    /// Kills the replica as `kill -9` would (see the module docs).
    async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

async fn backend() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Sse,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

fn tool(name: &str, idempotent: bool) -> ToolConfig {
    ToolConfig {
        name: name.into(),
        timeout: Some(Duration::from_secs(120)),
        stream_idle_timeout: Some(Duration::from_secs(120)),
        idempotent,
        breaker: None,
        offload: None,
        tasks: None,
        task_wait: None,
        job_deadline: Some(Duration::from_secs(120)),
    }
}

/// A replica's config: the Redis job store with a short lease; `progress` is idempotent,
/// `sleep` is not.
fn replica_config(backend: &FixtureServer, redis: &RedisServer) -> Config {
    let mut up = upstream(backend.mcp_url(), Some("/mcp"));
    up.tool = vec![tool("progress", true), tool("sleep", false)];
    let mut cfg = config(vec![up]);
    cfg.jobs.store = StoreKind::Redis;
    cfg.jobs.lease = LEASE;
    let redis: RedisConfig = toml::from_str(&format!(
        "url = \"{}\"\ncommand_timeout = \"500ms\"\nbreaker_open_duration = \"500ms\"",
        redis.url()
    ))
    .unwrap();
    cfg.redis = Some(redis);
    cfg
}

/// Submits a `tools/call` of `tool` through `replica` as a job: the response.
async fn submit_raw(replica: &Replica, tool: &str, args: Value) -> reqwest::Response {
    client()
        .post(replica.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("prefer", "respond-async")
        .body(call(1, tool, args))
        .send()
        .await
        .unwrap()
}

/// Submits and returns the job's id (asserting the 202).
async fn submit(replica: &Replica, tool: &str, args: Value) -> String {
    let resp = submit_raw(replica, tool, args).await;
    assert_eq!(resp.status(), 202);
    let doc: Value = resp.json().await.unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

async fn status_doc(replica: &Replica, id: &str) -> (u16, Value) {
    let resp = client()
        .get(replica.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls the job through `replica` until `done` says so (bounded); the document then.
async fn until(replica: &Replica, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let (status, doc) = status_doc(replica, id).await;
        if status == 200 && done(&doc) {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never {what}: {:?}", status_doc(replica, id).await);
}

fn is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |doc| doc["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_through_one_replica_is_followed_and_fetched_through_another() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    let a = Replica::start(replica_config(&backend, &redis));
    let b = Replica::start(replica_config(&backend, &redis));

    let id = submit(&a, "progress", json!({"steps": 5, "interval_ms": 150})).await;
    let resp = client()
        .get(b.url(&format!("/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    let mut progress = Vec::new();
    let mut statuses = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), events.next_event())
        .await
        .expect("the event stream goes on until the job ends")
    {
        let doc = event_json(&event);
        if event.lines().any(|l| l == "event: progress") {
            progress.push(doc["progress"]["progress"].as_f64().unwrap());
        } else {
            statuses.push(doc["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(statuses.last().map(String::as_str), Some("completed"));
    assert!(
        !progress.is_empty(),
        "progress published by the replica running the job reaches the follower on the other"
    );
    let result: Value = client()
        .get(b.url(&format!("/jobs/{id}/result")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        result["result"]["content"][0]["text"], "completed 5 steps",
        "{result}"
    );
    assert_eq!(tool_calls(&backend, "progress"), 1, "the job ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_replica_reaches_the_running_call() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    let a = Replica::start(replica_config(&backend, &redis));
    let b = Replica::start(replica_config(&backend, &redis));

    let id = submit(&a, "sleep", json!({"ms": 60_000})).await;
    until(&b, &id, "started", is("working")).await;
    let resp = client()
        .delete(b.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let doc = until(&b, &id, "ended", is("cancelled")).await;
    assert_eq!(doc["status"], "cancelled");
    until(&a, &id, "ended on the replica running it", is("cancelled")).await;
    mcp_e2e_tests::eventually("the backend call was cancelled", || {
        backend.stats().cancelled_total == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_jobs_are_taken_over_by_the_survivor() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    let mut a = Replica::start(replica_config(&backend, &redis));
    let b = Replica::start(replica_config(&backend, &redis));

    let once = submit(&a, "sleep", json!({"ms": 60_000})).await;
    let again = submit(&a, "progress", json!({"steps": 20, "interval_ms": 100})).await;
    until(&b, &once, "started", is("working")).await;
    until(&b, &again, "started", is("working")).await;
    a.kill().await;

    // Not idempotent: possibly half done, never sent twice.
    let doc = until(&b, &once, "marked", is("failed")).await;
    assert_eq!(doc["error"]["reason"], "interrupted", "{doc}");
    // Idempotent: run again, to completion.
    let doc = until(&b, &again, "finished", is("completed")).await;
    assert_eq!(doc["attempts"], 2, "{doc}");
    assert_eq!(tool_calls(&backend, "sleep"), 1);
    assert_eq!(tool_calls(&backend, "progress"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_acknowledged_before_a_redis_restart_are_still_there() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    let a = Replica::start(replica_config(&backend, &redis));
    let b = Replica::start(replica_config(&backend, &redis));

    let done = submit(&a, "echo", json!({"text": "kept"})).await;
    until(&a, &done, "finished", is("completed")).await;
    let queued = submit(&a, "sleep", json!({"ms": 1})).await;
    redis.restart().await;

    // Acknowledged before: there after the restart, through either replica (once the breaker
    // lets them ask again).
    let doc = until(&b, &done, "read back", is("completed")).await;
    assert_eq!(doc["id"], done.as_str());
    let result: Value = client()
        .get(b.url(&format!("/jobs/{done}/result")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(result.to_string().contains("kept"), "{result}");
    until(&b, &queued, "read back", |d| d["status"].is_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_submissions_get_a_quick_503_and_work_again_once_it_is_back() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    // A lease longer than the outage: the job running through it stays its replica's.
    let mut cfg = replica_config(&backend, &redis);
    cfg.jobs.lease = Duration::from_secs(30);
    let a = Replica::start(cfg.clone());
    let b = Replica::start(cfg);
    let before = submit(&a, "echo", json!({"text": "before"})).await;
    until(&b, &before, "finished", is("completed")).await;
    let through = submit(&a, "sleep", json!({"ms": 1500})).await;
    until(&b, &through, "started", is("working")).await;

    redis.kill().await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let resp = submit_raw(&a, "echo", json!({"text": "down"})).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered in {:?}",
            started.elapsed()
        );
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(
            doc["error"]["data"]["reason"], "job_store_unavailable",
            "{doc}"
        );
    }
    let started = std::time::Instant::now();
    let (status, doc) = status_doc(&b, &before).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status, 503, "{doc}");
    // The running job ends while Redis is down: every attempt at its final write fails.
    let mut failed = 0.0;
    for _ in 0..400 {
        failed = a
            .metric("mcp_sidecar_job_store_errors_total{op=\"update\"}")
            .await;
        if failed >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(failed >= 5.0, "final write attempts failed: {failed}");

    redis.restart().await;
    let mut id = None;
    for _ in 0..400 {
        let resp = submit_raw(&a, "echo", json!({"text": "after"})).await;
        if resp.status() == 202 {
            let doc: Value = resp.json().await.unwrap();
            id = doc["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let id = id.expect("submissions are taken again once redis is back");
    until(&b, &id, "finished", is("completed")).await;
    // The job that ended while Redis was down: its result is stored once Redis is back.
    let doc = until(&b, &through, "stored", is("completed")).await;
    assert_eq!(doc["attempts"], 1, "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_shuts_down_hands_its_queued_jobs_over_at_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = backend().await;
    // A long lease: a survivor scans every 3 s; without the release it would find the job
    // only once its lease ran out, 6 to 9 s after the stop (the last renewal was at most 3 s
    // before it).
    let lease = Duration::from_secs(9);
    let mut cfg = replica_config(&backend, &redis);
    cfg.jobs.lease = lease;
    cfg.jobs.max_running = 1;
    cfg.jobs.max_running_per_upstream = 1;
    cfg.shutdown.grace_period = Duration::from_millis(200);
    let mut a = Replica::start(cfg.clone());
    let b = Replica::start(cfg);

    let running = submit(&a, "sleep", json!({"ms": 60_000})).await;
    until(&b, &running, "started", is("working")).await;
    let queued = submit(&a, "echo", json!({"text": "handed over"})).await;
    a.stop().await;
    let stopped = std::time::Instant::now();

    // Interrupted after the grace period: not idempotent, so marked, not run again.
    let doc = until(&b, &running, "marked", is("failed")).await;
    assert_eq!(doc["error"]["reason"], "interrupted", "{doc}");
    // Released at the end of the drain: run by the survivor at its next scan, before the lease
    // would have run out.
    until(&b, &queued, "finished", is("completed")).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "taken over after {:?}",
        stopped.elapsed()
    );
}
