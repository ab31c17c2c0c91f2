//! The engine with a scripted runner and the memory store, on tokio's paused clock: queueing,
//! caps, the wait behind an unsent call, deadlines, cancellation, idempotency, restart recovery,
//! shutdown and expiry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::*;
use crate::jobs::model::{Idempotency, JobRequest};
use crate::jobs::store::Durability;

/// What the scripted runner does on its next call.
#[derive(Debug, Clone)]
enum Act {
    Answer(&'static str),
    NotSent(Duration),
    Hang,
    /// Reports `n` progress steps a second apart, then answers.
    Progress(u32),
    /// Answers `input_required` with these request keys.
    Input(&'static [&'static str]),
}

#[derive(Debug, Default)]
struct Scripted {
    acts: Mutex<VecDeque<Act>>,
    calls: AtomicUsize,
    cancels: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(acts: impl IntoIterator<Item = Act>) -> Arc<Self> {
        Arc::new(Self {
            acts: Mutex::new(acts.into_iter().collect()),
            ..Self::default()
        })
    }

    /// A runner whose calls are never sent: the circuit stays open for the whole test.
    fn never_sent() -> Arc<Self> {
        Self::new(std::iter::repeat_n(
            Act::NotSent(Duration::from_secs(60)),
            100,
        ))
    }
}

impl Runner for Scripted {
    fn run(&self, _job: &Job, progress: ProgressSink) -> BoxFuture<'static, RunOutcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let act = self
            .acts
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Act::Answer("{}"));
        Box::pin(async move {
            match act {
                Act::Answer(text) => RunOutcome::Answered(text.to_owned()),
                Act::NotSent(after) => RunOutcome::NotSent {
                    retry_after: after,
                    why: "circuit open".into(),
                },
                Act::Hang => std::future::pending().await,
                Act::Input(keys) => RunOutcome::InputRequired(InputRound {
                    requests: keys
                        .iter()
                        .map(|k| {
                            (
                                (*k).to_owned(),
                                serde_json::json!({"method": "elicitation/create"}),
                            )
                        })
                        .collect(),
                    request_state: Some("s".into()),
                    answer: "{\"round\":1}".into(),
                }),
                Act::Progress(n) => {
                    for i in 1..=n {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        progress
                            .report(Progress {
                                progress: f64::from(i),
                                total: Some(f64::from(n)),
                                message: None,
                            })
                            .await;
                    }
                    RunOutcome::Answered("{\"done\":true}".into())
                }
            }
        })
    }

    fn cancel(&self, _job: &Job, reason: &str) -> BoxFuture<'static, ()> {
        self.cancels.lock().unwrap().push(reason.to_owned());
        Box::pin(async {})
    }

    fn send(
        &self,
        _job: &Job,
        message: String,
    ) -> BoxFuture<'static, Result<(), crate::error::ProxyError>> {
        self.cancels.lock().unwrap().push(message);
        Box::pin(async { Ok(()) })
    }
}

fn settings() -> Settings {
    Settings {
        max_running: 4,
        max_running_per_upstream: 2,
        max_queued: 100,
        max_result_bytes: 1024,
        result_ttl: Duration::from_secs(3600),
        upstreams: vec!["u".into()],
    }
}

fn engine_with(store: Arc<dyn JobStore>, settings: Settings) -> Jobs {
    Jobs::new(store, settings, &prometheus::Registry::new()).unwrap()
}

fn alice() -> Owner {
    Owner::new("api_key:alice")
}

fn new_job(owner: Owner) -> NewJob {
    NewJob {
        id: JobId::random().unwrap(),
        owner,
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

async fn submit(jobs: &Jobs, new: NewJob) -> JobState {
    match jobs.submit(new).await.unwrap() {
        Submitted::New(s) | Submitted::Replayed(s) => s,
    }
}

/// Waits (on the paused clock) until the job has `status`.
async fn until(jobs: &Jobs, id: JobId, status: Status) -> Job {
    for _ in 0..10_000 {
        let job = jobs.get(id, &alice()).await.unwrap();
        if job.status == status {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job never became {status:?}");
}

#[tokio::test(start_paused = true)]
async fn a_submitted_job_runs_and_keeps_the_answer() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::new([Act::Answer(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)]);
    jobs.start(runner.clone());
    let state = submit(&jobs, new_job(alice())).await;
    assert_eq!(state.status, Status::Queued);
    let job = until(&jobs, state.id, Status::Completed).await;
    assert_eq!(
        job.outcome,
        Some(Outcome::Answered {
            response: r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into()
        })
    );
    assert_eq!(job.attempts, 1);
    assert!(job.finished_ms.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_and_stores_nothing() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(
        store.clone(),
        Settings {
            max_running: 1,
            max_running_per_upstream: 1,
            max_queued: 1,
            ..settings()
        },
    );
    jobs.start(Scripted::new([Act::Hang, Act::Hang]));
    let running = submit(&jobs, new_job(alice())).await;
    until(&jobs, running.id, Status::Working).await;
    let waiting = submit(&jobs, new_job(alice())).await;
    assert_eq!(waiting.status, Status::Queued);
    let refused = new_job(alice());
    let refused_id = refused.id;
    assert!(matches!(
        jobs.submit(refused).await,
        Err(JobError::QueueFull { limit: 1 })
    ));
    assert_eq!(store.get(refused_id).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_was_not_sent_waits_and_runs_when_it_can() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::new([
        Act::NotSent(Duration::from_secs(10)),
        Act::NotSent(Duration::from_secs(1)),
        Act::Answer("{}"),
    ]);
    jobs.start(runner.clone());
    let state = submit(&jobs, new_job(alice())).await;
    let start = tokio::time::Instant::now();
    let job = until(&jobs, state.id, Status::Completed).await;
    assert_eq!(runner.calls.load(Ordering::SeqCst), 3);
    // It waited (capped at the longest backoff) instead of failing at once.
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(job.attempts, 1, "not-sent tries are one attempt");
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_deadline_fails_and_its_call_is_cancelled() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::new([Act::Hang]);
    jobs.start(runner.clone());
    let mut new = new_job(alice());
    new.deadline = Duration::from_secs(30);
    let state = submit(&jobs, new).await;
    let job = until(&jobs, state.id, Status::Failed).await;
    let Some(Outcome::Failed { reason, .. }) = job.outcome else {
        panic!("{job:?}")
    };
    assert_eq!(reason, FailReason::DeadlineExceeded);
    tokio::task::yield_now().await;
    assert_eq!(runner.cancels.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_circuit_that_stays_open_fails_the_job_at_its_deadline() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    jobs.start(Scripted::never_sent());
    let mut new = new_job(alice());
    new.deadline = Duration::from_secs(20);
    let state = submit(&jobs, new).await;
    let job = until(&jobs, state.id, Status::Failed).await;
    assert!(matches!(
        job.outcome,
        Some(Outcome::Failed {
            reason: FailReason::DeadlineExceeded,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_working_job_abandons_its_call_and_tells_the_backend() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::new([Act::Hang]);
    jobs.start(runner.clone());
    let state = submit(&jobs, new_job(alice())).await;
    until(&jobs, state.id, Status::Working).await;
    let cancelled = jobs
        .cancel(state.id, &alice(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    tokio::task::yield_now().await;
    assert_eq!(
        runner.cancels.lock().unwrap().as_slice(),
        ["cancelled by its owner"]
    );
    // Cancelling again returns the ended job as it is.
    let again = jobs
        .cancel(state.id, &alice(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.status, Status::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_queued_job_never_runs_it() {
    let jobs = engine_with(
        Arc::new(MemoryStore::new()),
        Settings {
            max_running: 1,
            max_running_per_upstream: 1,
            ..settings()
        },
    );
    let runner = Scripted::new([Act::Hang]);
    jobs.start(runner.clone());
    let first = submit(&jobs, new_job(alice())).await;
    until(&jobs, first.id, Status::Working).await;
    let queued = submit(&jobs, new_job(alice())).await;
    let cancelled = jobs
        .cancel(queued.id, &alice(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    jobs.cancel(first.id, &alice(), Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runner.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn another_owner_cannot_see_follow_or_cancel_a_job() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    jobs.start(Scripted::new([Act::Hang]));
    let state = submit(&jobs, new_job(alice())).await;
    let mallory = Owner::new("api_key:mallory");
    assert!(matches!(
        jobs.get(state.id, &mallory).await,
        Err(JobError::NotFound)
    ));
    assert!(matches!(
        jobs.follow(state.id, &mallory).await,
        Err(JobError::NotFound)
    ));
    assert!(matches!(
        jobs.cancel(state.id, &mallory, Duration::ZERO).await,
        Err(JobError::NotFound)
    ));
    assert!(
        jobs.list(&mallory, "u", None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(jobs.list(&alice(), "u", None, 10).await.unwrap().0.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_replays_the_same_job_and_refuses_another_body() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::new([Act::Answer("{}")]);
    jobs.start(runner.clone());
    let keyed = |fingerprint: &str| {
        let mut new = new_job(alice());
        new.idempotency = Some(Idempotency {
            key: "k1".into(),
            fingerprint: fingerprint.into(),
        });
        new
    };
    let first = jobs.submit(keyed("aa")).await.unwrap();
    let Submitted::New(first) = first else {
        panic!()
    };
    let second = jobs.submit(keyed("aa")).await.unwrap();
    assert!(matches!(&second, Submitted::Replayed(s) if s.id == first.id));
    assert!(matches!(
        jobs.submit(keyed("bb")).await,
        Err(JobError::IdempotencyMismatch)
    ));
    until(&jobs, first.id, Status::Completed).await;
    assert_eq!(runner.calls.load(Ordering::SeqCst), 1);
    // The same key from another owner is another job.
    let mut other = keyed("aa");
    other.owner = Owner::new("api_key:bob");
    assert!(matches!(
        jobs.submit(other).await.unwrap(),
        Submitted::New(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn progress_reaches_followers_while_the_job_runs() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    jobs.start(Scripted::new([Act::Progress(3)]));
    let state = submit(&jobs, new_job(alice())).await;
    let (_, rx) = jobs.follow(state.id, &alice()).await.unwrap();
    let mut rx = rx.unwrap();
    let mut seen = Vec::new();
    loop {
        let s = rx.recv().await.unwrap();
        seen.push((s.status, s.progress.as_ref().map(|p| p.progress)));
        if s.status.is_terminal() {
            break;
        }
    }
    let progress: Vec<_> = seen
        .iter()
        .filter(|(st, p)| *st == Status::Working && p.is_some())
        .map(|(_, p)| p.unwrap())
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0]);
    assert_eq!(seen.last().unwrap().0, Status::Completed);
}

/// A job as a previous process left it in the store.
fn stored(status: Status, rerun: bool) -> Job {
    let new = new_job(alice());
    Job {
        id: new.id,
        owner: new.owner,
        method: new.method,
        tool: new.tool,
        status,
        progress: None,
        seq: 2,
        created_ms: 1,
        updated_ms: 1,
        started_ms: None,
        finished_ms: None,
        expires_ms: u64::MAX,
        deadline_ms: u64::MAX,
        attempts: u32::from(status == Status::Working),
        rerun_on_restart: rerun,
        unsent: false,
        outcome: None,
        idempotency: None,
        request: new.request,
        task: None,
        version: 3,
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_runs_queued_jobs_reruns_idempotent_ones_and_fails_the_rest() {
    let store = Arc::new(MemoryStore::new());
    let queued = stored(Status::Queued, false);
    let working = stored(Status::Working, false);
    let idempotent = stored(Status::Working, true);
    let mut orphan = stored(Status::Queued, false);
    orphan.request.upstream = "gone".into();
    for job in [&queued, &working, &idempotent, &orphan] {
        store.create(job.clone()).await.unwrap();
    }
    let jobs = engine_with(store.clone(), settings());
    let report = jobs.recover().await.unwrap();
    assert_eq!(
        report,
        Recovered {
            queued: 1,
            rerun: 1,
            interrupted: 1,
            orphaned: 1,
            waiting: 0
        }
    );
    let runner = Scripted::new([Act::Answer("{}"), Act::Answer("{}")]);
    jobs.start(runner.clone());
    until(&jobs, queued.id, Status::Completed).await;
    until(&jobs, idempotent.id, Status::Completed).await;
    let failed = jobs.get(working.id, &alice()).await.unwrap();
    assert!(matches!(
        failed.outcome,
        Some(Outcome::Failed {
            reason: FailReason::Interrupted,
            ..
        })
    ));
    assert_eq!(runner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_jobs_and_interrupts_what_outlives_the_grace_period() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(store.clone(), settings());
    jobs.start(Scripted::new([Act::Hang, Act::Hang]));
    let plain = submit(&jobs, new_job(alice())).await;
    let mut idem = new_job(alice());
    idem.rerun_on_restart = true;
    let idem = submit(&jobs, idem).await;
    until(&jobs, plain.id, Status::Working).await;
    until(&jobs, idem.id, Status::Working).await;
    jobs.drain(Duration::from_secs(30)).await;
    assert!(matches!(
        jobs.submit(new_job(alice())).await,
        Err(JobError::ShuttingDown)
    ));
    let plain = store.get(plain.id).await.unwrap().unwrap();
    assert!(matches!(
        plain.outcome,
        Some(Outcome::Failed {
            reason: FailReason::Interrupted,
            ..
        })
    ));
    // The idempotent tool's job is queued again, durably, for the next start.
    assert_eq!(
        store.get(idem.id).await.unwrap().unwrap().status,
        Status::Queued
    );
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_expire_after_the_result_ttl() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(
        store.clone(),
        Settings {
            result_ttl: Duration::from_secs(60),
            ..settings()
        },
    );
    jobs.start(Scripted::new([Act::Answer("{}")]));
    let state = submit(&jobs, new_job(alice())).await;
    until(&jobs, state.id, Status::Completed).await;
    assert_eq!(jobs.sweep().await, 0);
    tokio::time::sleep(Duration::from_secs(61)).await;
    // Expired: no longer shown, even before the sweeper runs.
    assert!(matches!(
        jobs.get(state.id, &alice()).await,
        Err(JobError::NotFound)
    ));
    // The background sweeper removes it within one interval.
    tokio::time::sleep(worker::SWEEP_INTERVAL).await;
    assert_eq!(store.get(state.id).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn progress_is_written_lazily_and_the_end_durably() {
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        lazy: AtomicUsize,
        sync: AtomicUsize,
    }
    impl JobStore for Counting {
        fn create(&self, job: Job) -> BoxFuture<'_, Result<store::Created, StoreError>> {
            self.inner.create(job)
        }
        fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>> {
            self.inner.get(id)
        }
        fn update(
            &self,
            job: Job,
            expected: u64,
            durability: Durability,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            match durability {
                Durability::Lazy => self.lazy.fetch_add(1, Ordering::SeqCst),
                Durability::Sync => self.sync.fetch_add(1, Ordering::SeqCst),
            };
            self.inner.update(job, expected, durability)
        }
        fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>> {
            self.inner.remove(id)
        }
        fn list(
            &self,
            owner: Owner,
            upstream: String,
            after: Option<Cursor>,
            limit: usize,
        ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
            self.inner.list(owner, upstream, after, limit)
        }
        fn expired(
            &self,
            now_ms: u64,
            limit: usize,
        ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
            self.inner.expired(now_ms, limit)
        }
        fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
            self.inner.unfinished()
        }
    }
    let store = Arc::new(Counting::default());
    let jobs = engine_with(store.clone(), settings());
    jobs.start(Scripted::new([Act::Progress(3)]));
    let state = submit(&jobs, new_job(alice())).await;
    until(&jobs, state.id, Status::Completed).await;
    // `working` and the end are durable; progress only lazily.
    assert_eq!(store.sync.load(Ordering::SeqCst), 2);
    assert!(store.lazy.load(Ordering::SeqCst) >= 1);
    let kept = store.inner.get(state.id).await.unwrap().unwrap();
    assert_eq!(kept.progress.map(|p| p.progress), Some(3.0));
}

#[tokio::test(start_paused = true)]
async fn a_job_waiting_behind_an_open_circuit_is_queued_again_by_an_interruption() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(store.clone(), settings());
    let runner = Scripted::never_sent();
    jobs.start(runner.clone());
    // Not an idempotent tool: only the knowledge that nothing was sent makes a re-run safe.
    let state = submit(&jobs, new_job(alice())).await;
    until(&jobs, state.id, Status::Working).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(store.get(state.id).await.unwrap().unwrap().unsent);
    jobs.drain(Duration::from_secs(2)).await;
    let kept = store.get(state.id).await.unwrap().unwrap();
    assert_eq!(kept.status, Status::Queued);
    assert!(!kept.unsent);
    // Nothing was sent, so the backend is told nothing.
    assert!(runner.cancels.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restart_queues_again_a_working_job_known_not_to_have_been_sent() {
    let store = Arc::new(MemoryStore::new());
    let mut waiting = stored(Status::Working, false);
    waiting.unsent = true;
    store.create(waiting.clone()).await.unwrap();
    let jobs = engine_with(store.clone(), settings());
    let report = jobs.recover().await.unwrap();
    assert_eq!((report.rerun, report.interrupted), (1, 0));
    jobs.start(Scripted::new([Act::Answer("{}")]));
    until(&jobs, waiting.id, Status::Completed).await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_job_whose_call_was_never_sent_tells_the_backend_nothing() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    let runner = Scripted::never_sent();
    jobs.start(runner.clone());
    let state = submit(&jobs, new_job(alice())).await;
    until(&jobs, state.id, Status::Working).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cancelled = jobs
        .cancel(state.id, &alice(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    tokio::task::yield_now().await;
    assert!(runner.cancels.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_call_that_asks_for_input_waits_and_runs_again_when_its_round_is_answered() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(store.clone(), settings());
    let runner = Scripted::new([Act::Input(&["a", "b"]), Act::Answer("{\"done\":1}")]);
    jobs.start(runner.clone());
    let state = submit(&jobs, new_job(alice())).await;
    let job = until(&jobs, state.id, Status::InputRequired).await;
    let task = job.task.as_ref().unwrap();
    assert_eq!(task.input_requests.len(), 2);
    assert_eq!(task.round_answer.as_deref(), Some("{\"round\":1}"));
    // Written durably: a restart finds it waiting.
    assert_eq!(
        store.get(state.id).await.unwrap().unwrap().status,
        Status::InputRequired
    );
    // Someone else's update finds nothing.
    assert!(matches!(
        jobs.update_waiting(state.id, &Owner::new("api_key:bob"), |_| Resume::Run)
            .await,
        Err(JobError::NotFound)
    ));
    assert!(
        jobs.update_waiting(state.id, &alice(), |_| Resume::Wait)
            .await
            .unwrap()
    );
    assert_eq!(runner.calls.load(Ordering::SeqCst), 1, "still waiting");
    assert!(
        jobs.update_waiting(state.id, &alice(), |job| {
            job.request.body = "{\"again\":true}".into();
            Resume::Run
        })
        .await
        .unwrap()
    );
    let job = until(&jobs, state.id, Status::Completed).await;
    assert_eq!(runner.calls.load(Ordering::SeqCst), 2);
    assert_eq!(job.request.body, "{\"again\":true}");
    assert!(job.task.unwrap().input_requests.is_empty());
    // A finished job is not waiting: the update changes nothing.
    assert!(
        !jobs
            .update_waiting(state.id, &alice(), |_| Resume::Run)
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_job_is_cancelled_at_once_kept_across_a_restart_and_failed_past_its_deadline() {
    let store = Arc::new(MemoryStore::new());
    let jobs = engine_with(store.clone(), settings());
    jobs.start(Scripted::new([Act::Input(&["a"]), Act::Input(&["a"])]));
    let cancelled = submit(&jobs, new_job(alice())).await;
    until(&jobs, cancelled.id, Status::InputRequired).await;
    let state = jobs
        .cancel(cancelled.id, &alice(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(state.status, Status::Cancelled);

    let mut new = new_job(alice());
    new.deadline = Duration::from_secs(120);
    let kept = submit(&jobs, new).await;
    until(&jobs, kept.id, Status::InputRequired).await;
    // A second process over the same store takes the waiting job up again.
    let again = engine_with(store.clone(), settings());
    let report = again.recover().await.unwrap();
    assert_eq!(report.waiting, 1);
    assert_eq!(
        again.get(kept.id, &alice()).await.unwrap().status,
        Status::InputRequired
    );
    // Nobody answers: the sweep after its deadline fails it.
    tokio::time::advance(Duration::from_secs(121)).await;
    again.sweep().await;
    let job = again.get(kept.id, &alice()).await.unwrap();
    assert_eq!(job.status, Status::Failed);
    assert!(matches!(
        job.outcome,
        Some(Outcome::Failed {
            reason: FailReason::DeadlineExceeded,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_job_can_be_settled_with_its_rounds_answer() {
    let jobs = engine_with(Arc::new(MemoryStore::new()), settings());
    jobs.start(Scripted::new([Act::Input(&["a"])]));
    let state = submit(&jobs, new_job(alice())).await;
    let job = until(&jobs, state.id, Status::InputRequired).await;
    let answer = job.task.unwrap().round_answer.unwrap();
    assert!(
        jobs.settle_waiting(
            state.id,
            Outcome::Answered {
                response: answer.clone()
            }
        )
        .await
    );
    let job = jobs.get(state.id, &alice()).await.unwrap();
    assert_eq!(job.status, Status::Completed);
    assert_eq!(job.outcome, Some(Outcome::Answered { response: answer }));
    assert!(!jobs.settle_waiting(state.id, Outcome::Cancelled).await);
}
