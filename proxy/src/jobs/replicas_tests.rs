//! Two engines on one Redis (a `redis-server` of the test's own; skipped without one outside
//! CI): a cancel through the engine that does not hold the job reaches the one that runs it, and
//! an engine whose lease was taken over abandons its call and writes nothing. Real time (Redis
//! keeps its own), short leases, bounded polling.

use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::*;
use crate::jobs::model::{JobRequest, NewJob, Outcome, Status, Submitted};
use crate::jobs::store::Durability;
use crate::jobs::store::tests::redis_tests::TestRedis;
use crate::jobs::{FailReason, Job, Jobs, ProgressSink, RunOutcome, Runner, Settings};

/// Short, so a renewal (a third of it) comes quickly.
const LEASE: Duration = Duration::from_millis(300);

/// A runner whose calls never answer; records the cancels it is told.
#[derive(Debug, Default)]
struct Hanging {
    cancels: Mutex<Vec<String>>,
}

impl Runner for Hanging {
    fn run(&self, _job: &Job, _progress: ProgressSink) -> BoxFuture<'static, RunOutcome> {
        Box::pin(std::future::pending())
    }

    fn cancel(&self, _job: &Job, reason: &str) -> BoxFuture<'static, ()> {
        self.cancels.lock().unwrap().push(reason.to_owned());
        Box::pin(async {})
    }

    fn send(
        &self,
        _job: &Job,
        _message: String,
    ) -> BoxFuture<'static, Result<(), crate::error::ProxyError>> {
        Box::pin(async { Ok(()) })
    }
}

fn engine(server: &TestRedis, replica: &str, runner: Arc<Hanging>) -> Jobs {
    let store = Arc::new(RedisStore::new(server.conn(), replica.to_owned(), LEASE));
    let settings = Settings {
        max_running: 4,
        max_running_per_upstream: 2,
        max_queued: 100,
        max_result_bytes: 1024,
        result_ttl: Duration::from_secs(3600),
        upstreams: vec!["u".into()],
    };
    let jobs = Jobs::new(store, settings, &prometheus::Registry::new()).unwrap();
    jobs.start(runner);
    jobs
}

fn alice() -> Owner {
    Owner::new("api_key:alice")
}

fn new_job() -> NewJob {
    NewJob {
        id: JobId::random().unwrap(),
        owner: alice(),
        method: "tools/call".into(),
        tool: Some("t".into()),
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
        idempotency: None,
        deadline: Duration::from_secs(600),
        rerun_on_restart: false,
        task: None,
    }
}

async fn working(jobs: &Jobs) -> JobId {
    let Submitted::New(state) = jobs.submit(new_job()).await.unwrap() else {
        panic!("a new job");
    };
    for _ in 0..200 {
        if jobs.get(state.id, &alice()).await.unwrap().status == Status::Working {
            return state.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the job never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_the_other_engine_reaches_the_running_call() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let runner = Arc::new(Hanging::default());
    let a = engine(&server, "a", runner.clone());
    let b = engine(&server, "b", Arc::new(Hanging::default()));
    let id = working(&a).await;

    let state = b
        .cancel(id, &alice(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(a.get(id, &alice()).await.unwrap().status, Status::Cancelled);
    assert_eq!(*runner.cancels.lock().unwrap(), ["cancelled by its owner"]);
    // Someone else's job is not found, through either engine.
    let stranger = Owner::new("api_key:mallory");
    assert!(matches!(
        b.cancel(id, &stranger, Duration::ZERO).await,
        Err(JobError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_lease_was_taken_over_abandons_the_call_and_writes_nothing() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let runner = Arc::new(Hanging::default());
    let a = engine(&server, "a", runner.clone());
    let id = working(&a).await;

    // Another replica claims the job (as if `a` had not renewed in time) and marks it.
    let conn = server.conn();
    let (key, member) = (conn.key("leases"), id.to_string());
    conn.run("zadd", |mut c| async move {
        ::redis::cmd("ZADD")
            .arg(&key)
            .arg(0)
            .arg(&member)
            .query_async::<i64>(&mut c)
            .await
    })
    .await
    .unwrap();
    let other = server.store_with_lease("b", Duration::from_secs(3600));
    assert_eq!(other.claim_expired(10).await.unwrap(), [id]);
    let mut job = other.get(id).await.unwrap().unwrap();
    let expected = job.version;
    job.version += 1;
    job.status = Status::Failed;
    job.outcome = Some(Outcome::Failed {
        reason: FailReason::Interrupted,
        message: "taken over".into(),
    });
    other
        .update(job.clone(), expected, Durability::Sync)
        .await
        .unwrap();

    // `a` learns it at its next renewal: its call is abandoned, nothing of it is written.
    for _ in 0..200 {
        if a.engine.live(id).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.engine.live(id).is_none(), "the lost job is dropped");
    assert_eq!(other.get(id).await.unwrap(), Some(job));
    assert!(
        runner.cancels.lock().unwrap().is_empty(),
        "the new holder decides what the backend is told"
    );
}
