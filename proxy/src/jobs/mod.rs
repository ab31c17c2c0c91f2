//! The job engine: long calls taken off the request path. A job is one JSON-RPC request
//! (normally `tools/call`) run against its upstream in the background, owned by the principal
//! that submitted it, with a status, progress, a result and an expiry.
//!
//! ```text
//! submit ──> store (durable) ──> lane of its upstream ──> worker (global + per-upstream cap)
//!   │                                                       │ Runner::run (the request path's
//!   └─ 202 only after the record is on disk                 │ tail: credentials, breaker,
//!                                                           │ timeouts, in-flight cap)
//!                      followers <── events (progress, status) ──┘
//!                                           └──> finish: result stored durably, expiry set
//! ```
//!
//! The engine knows nothing of HTTP: the job API (`crate::job_api`) is one front end, the MCP
//! Tasks facade will be another; the request path supplies the [`Runner`]. Jobs are kept in a
//! [`JobStore`]: the embedded durable [`RedbStore`] by default, [`MemoryStore`] by choice.
//!
//! Guarantees:
//! - a job is written durably before its submission is acknowledged;
//! - a job is marked `working` durably before its call is sent, so after a crash a
//!   non-idempotent call is never sent twice: it fails as `interrupted` (an `idempotent = true`
//!   tool's job is run again);
//! - a job whose call cannot be sent (open circuit, full in-flight cap) waits with backoff
//!   until it can or its deadline passes;
//! - a finished job stays fetchable until `result_ttl` after its end, then the sweeper
//!   removes it.

mod clock;
mod engine;
mod lane;
mod metrics;
pub mod model;
mod replicas;
mod runner;
pub mod store;
mod worker;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

pub use engine::Resume;
pub use metrics::JobMetrics;
pub use model::{
    FailReason, InputRound, Job, JobId, JobState, NewJob, Outcome, Owner, Progress, Status,
    Submitted, TaskInfo,
};
pub use runner::{ProgressSink, RunOutcome, Runner, progress_token};
pub use store::{Cursor, JobStore, MemoryStore, RedbStore, RedisStore, StoreError};
pub use worker::Recovered;

use crate::config::{JobsConfig, StoreKind};
use engine::Engine;

/// What the engine is bounded by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs running at once, over all upstreams.
    pub max_running: usize,
    /// Jobs running at once per upstream.
    pub max_running_per_upstream: usize,
    /// Jobs waiting to run.
    pub max_queued: usize,
    /// Largest result kept.
    pub max_result_bytes: usize,
    /// How long a finished job stays fetchable.
    pub result_ttl: Duration,
    /// The upstreams jobs can run against (their names).
    pub upstreams: Vec<String>,
}

impl Settings {
    /// The settings of `[jobs]` for these upstreams.
    pub fn from_config(config: &JobsConfig, upstreams: Vec<String>) -> Self {
        Self {
            max_running: config.max_running,
            max_running_per_upstream: config.max_running_per_upstream,
            max_queued: config.max_queued,
            max_result_bytes: config.max_result_bytes,
            result_ttl: config.result_ttl,
            upstreams,
        }
    }
}

/// Why the engine refused or could not do something. The job API maps each to its answer.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job, or not the caller's (existence is not disclosed).
    #[error("no such job")]
    NotFound,
    /// `max_queued` jobs are waiting: nothing was stored.
    #[error("the job queue is full ({limit} jobs waiting); retry later")]
    QueueFull {
        /// `jobs.max_queued`.
        limit: usize,
    },
    /// Shutdown began: no new jobs.
    #[error("the sidecar is shutting down and takes no new jobs")]
    ShuttingDown,
    /// The `Idempotency-Key` was used before with another request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    /// The store failed (the sidecar's own failure, not the backend's).
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// A job for an upstream the engine does not run.
    #[error("upstream `{0}` runs no jobs")]
    UnknownUpstream(String),
    /// The client's response to a request of the job's call did not reach the backend: why,
    /// as the request path answers it (the backend's failure, or the sidecar's own).
    #[error("the response could not be delivered to the backend: {0}")]
    Send(crate::error::ProxyError),
}

/// The job engine's handle, shared by the request path, the admin listener and the server.
#[derive(Debug, Clone)]
pub struct Jobs {
    engine: Arc<Engine>,
    workers: Arc<Mutex<JoinSet<()>>>,
}

impl Jobs {
    /// Opens the store `config` names: the redb file in the data directory (created if
    /// missing; an unreadable one is an error naming it, never replaced), memory, or Redis on
    /// `redis` (nothing is dialled yet; this replica gets a random id, logged).
    pub fn open_store(
        config: &JobsConfig,
        redis: Option<Arc<crate::redis_conn::RedisConn>>,
    ) -> Result<Arc<dyn JobStore>, StoreError> {
        match config.store {
            StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
            StoreKind::Redis => {
                let conn = redis.ok_or_else(|| StoreError::Backend {
                    op: "open",
                    message: "jobs.store = \"redis\" needs a [redis] section".to_owned(),
                })?;
                let replica = RedisStore::random_replica_id();
                tracing::info!(
                    replica = %replica,
                    lease = %humantime::format_duration(config.lease),
                    "jobs are kept in redis and shared with the other replicas"
                );
                Ok(Arc::new(RedisStore::new(conn, replica, config.lease)))
            }
            StoreKind::Redb => {
                let dir = config.resolved_data_dir(&|name| std::env::var(name).ok());
                let path = dir.join(crate::config::jobs::STORE_FILE);
                Ok(Arc::new(RedbStore::open(Path::new(&path))?))
            }
        }
    }

    /// An engine over `store`; its metrics go into `registry`. Nothing runs until
    /// [`Jobs::start`].
    pub fn new(
        store: Arc<dyn JobStore>,
        settings: Settings,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let metrics = JobMetrics::new(registry)?;
        metrics
            .queue_capacity
            .set(i64::try_from(settings.max_queued).unwrap_or(i64::MAX));
        Ok(Self {
            engine: Arc::new(Engine::new(store, settings, metrics)),
            workers: Arc::new(Mutex::new(JoinSet::new())),
        })
    }

    /// Takes up what the store holds from before a restart: queued jobs are queued again,
    /// working ones re-run (idempotent tools) or fail as `interrupted`.
    /// With the Redis store, only the jobs whose lease ran out (their replica died) are this
    /// replica's to resume (`replicas::take_over`); Redis being down does not stop the start
    /// (nothing else depends on it then): the lease keeper's next scans take them over.
    pub async fn recover(&self) -> Result<Recovered, StoreError> {
        let report = if self.engine.store.as_redis().is_some() {
            replicas::take_over(&self.engine).await.unwrap_or_else(|e| {
                tracing::warn!(
                    error = %e,
                    "jobs of stopped replicas not taken over at start; retried every scan"
                );
                Recovered::default()
            })
        } else {
            worker::recover(&self.engine).await?
        };
        if report != Recovered::default() {
            tracing::info!(
                queued = report.queued,
                rerun = report.rerun,
                interrupted = report.interrupted,
                orphaned = report.orphaned,
                "jobs recovered from the store"
            );
        }
        Ok(report)
    }

    /// Starts the workers (per upstream, `max_running_per_upstream` each, under the global
    /// cap) and the sweeper, running calls through `runner`.
    pub fn start(&self, runner: Arc<dyn Runner>) {
        let _ = self.engine.runner.set(runner);
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        for lane in self.engine.lanes.values() {
            for _ in 0..self.engine.settings.max_running_per_upstream {
                workers.spawn(worker::work(self.engine.clone(), lane.clone()));
            }
        }
        tokio::spawn(worker::sweep(self.engine.clone()));
        if self.engine.store.as_redis().is_some() {
            tokio::spawn(replicas::lease_loop(self.engine.clone()));
            tokio::spawn(replicas::cancel_listener(self.engine.clone()));
            tokio::spawn(replicas::publish_loop(self.engine.clone()));
        }
    }

    /// The engine's bounds.
    pub fn settings(&self) -> &Settings {
        &self.engine.settings
    }

    /// Whether submissions are taken.
    pub fn accepting(&self) -> bool {
        self.engine.accepting()
    }

    /// Stores a new job and queues it (or replays the job its `Idempotency-Key` names).
    pub async fn submit(&self, new: NewJob) -> Result<Submitted, JobError> {
        self.engine.submit(new).await
    }

    /// The upstream a job runs against, whoever owns it (to know whose authentication
    /// applies before the owner is known); `None` if there is no such job.
    pub async fn upstream_of(&self, id: JobId) -> Result<Option<String>, JobError> {
        self.engine.upstream_of(id).await
    }

    /// The job, if `owner` owns it.
    pub async fn get(&self, id: JobId, owner: &Owner) -> Result<Job, JobError> {
        self.engine.get(id, owner).await
    }

    /// The job's state and, unless it has ended, its later events.
    pub async fn follow(
        &self,
        id: JobId,
        owner: &Owner,
    ) -> Result<(JobState, Option<broadcast::Receiver<JobState>>), JobError> {
        // Not running here, with a shared store: perhaps held by another replica, whose events
        // come through Redis. (A job that starts or ends here meanwhile is published there too.)
        if let Some(store) = self.engine.store.as_redis()
            && self.engine.live(id).is_none()
        {
            return replicas::follow_remote(&self.engine, store, id, owner).await;
        }
        self.engine.follow(id, owner).await
    }

    /// Waits up to `wait` for the job to end; returns it as it is then.
    pub async fn wait(&self, id: JobId, owner: &Owner, wait: Duration) -> Result<Job, JobError> {
        let (state, rx) = self.follow(id, owner).await?;
        if let Some(mut rx) = rx.filter(|_| !state.status.is_terminal()) {
            engine::until_terminal(&mut rx, wait).await;
        }
        self.get(id, owner).await
    }

    /// Waits up to `wait` for the job to end or to ask for input; returns it as it is then.
    pub async fn wait_settled(
        &self,
        id: JobId,
        owner: &Owner,
        wait: Duration,
    ) -> Result<Job, JobError> {
        let (state, rx) = self.follow(id, owner).await?;
        let settled = |s: Status| s.is_terminal() || s == Status::InputRequired;
        if let Some(mut rx) = rx.filter(|_| !settled(state.status)) {
            let _ = tokio::time::timeout(wait, async {
                loop {
                    match rx.recv().await {
                        Ok(s) if settled(s.status) => return,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
            .await;
        }
        self.get(id, owner).await
    }

    /// Changes a job that waits for input (the MCP Tasks facade's `tasks/update`); see
    /// [`Resume`]. `Ok(false)`: it does not wait for input (nothing changed).
    pub async fn update_waiting(
        &self,
        id: JobId,
        owner: &Owner,
        change: impl FnOnce(&mut Job) -> Resume,
    ) -> Result<bool, JobError> {
        self.engine.update_waiting(id, owner, change).await
    }

    /// Sends the client's `message` (a JSON-RPC response to a request the job's running call
    /// made) to the backend, for the job's owner.
    pub async fn send(&self, id: JobId, owner: &Owner, message: String) -> Result<(), JobError> {
        let job = self.engine.get(id, owner).await?;
        self.engine
            .send(&job, message)
            .await
            .map_err(JobError::Send)
    }

    /// Ends a job that waits for input with `outcome`; `false` if it no longer waits.
    pub async fn settle_waiting(&self, id: JobId, outcome: Outcome) -> bool {
        self.engine.settle_waiting(id, outcome).await
    }

    /// Cancels the job (see [`Jobs`]' module docs); waits up to `wait` for a working one.
    pub async fn cancel(
        &self,
        id: JobId,
        owner: &Owner,
        wait: Duration,
    ) -> Result<JobState, JobError> {
        // Not running here, with a shared store: the replica holding it is told through Redis.
        if let Some(store) = self.engine.store.as_redis()
            && self.engine.live(id).is_none()
        {
            return replicas::cancel_remote(&self.engine, store, id, owner, wait).await;
        }
        self.engine.cancel(id, owner, wait).await
    }

    /// The owner's jobs on `upstream`, newest first, after `after`, at most `limit`; and the
    /// cursor of the next page, if there may be one.
    pub async fn list(
        &self,
        owner: &Owner,
        upstream: &str,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<JobState>, Option<Cursor>), JobError> {
        self.engine.list(owner, upstream, after, limit).await
    }

    /// Removes expired jobs now (the sweeper does this every minute); returns how many.
    pub async fn sweep(&self) -> usize {
        worker::sweep_once(&self.engine).await
    }

    /// Shutdown: refuses new jobs, lets running ones finish within `grace`, then interrupts
    /// the rest (idempotent tools' jobs are queued again, others fail as `interrupted`).
    /// Queued jobs stay queued in the store for the next start.
    pub async fn drain(&self, grace: Duration) {
        self.engine.stop_accepting();
        self.engine.stop.cancel();
        let workers = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let mut workers = workers;
        let finished = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("grace period over; interrupting running jobs");
            self.engine.interrupt.cancel();
            while workers.join_next().await.is_some() {}
        }
        // What is left here (queued, re-queued) is the other replicas' to run now.
        replicas::release(&self.engine).await;
        self.engine.halted.cancel();
    }

    /// The operator view (admin listener): jobs per status among those this process holds,
    /// and the age of the oldest queued job.
    pub async fn operator_view(&self) -> Value {
        let now = self.engine.clock.now_ms();
        let mut counts = serde_json::Map::new();
        for status in [Status::Queued, Status::Working] {
            counts.insert(status.as_str().to_owned(), json!(0));
        }
        let mut oldest_queued: Option<u64> = None;
        for live in self.engine.live_jobs() {
            let guard = live.state.lock().await;
            let job = &guard.job;
            let n = counts
                .entry(job.status.as_str().to_owned())
                .or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
            if job.status == Status::Queued {
                oldest_queued =
                    Some(oldest_queued.map_or(job.created_ms, |o| o.min(job.created_ms)));
            }
        }
        let finished = |status: Status| -> u64 {
            self.engine
                .settings
                .upstreams
                .iter()
                .map(|u| {
                    self.engine
                        .metrics
                        .finished
                        .with_label_values(&[u, status.as_str()])
                        .get()
                })
                .sum()
        };
        json!({
            "accepting": self.accepting(),
            "counts": counts,
            "finished_since_start": {
                "completed": finished(Status::Completed),
                "failed": finished(Status::Failed),
                "cancelled": finished(Status::Cancelled),
            },
            "oldest_queued_age_seconds": oldest_queued.map(|c| now.saturating_sub(c) as f64 / 1000.0),
            "max_running": self.engine.settings.max_running,
            "max_running_per_upstream": self.engine.settings.max_running_per_upstream,
            "max_queued": self.engine.settings.max_queued,
        })
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
