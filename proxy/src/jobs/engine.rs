//! The engine's shared state and the operations its front ends call: submit, read, follow,
//! cancel, list. Every write to an unfinished job goes through that job's [`Live`] entry, one at
//! a time, so the stored record, the in-memory copy and the events followers see never
//! disagree. The workers that run jobs are in [`super::worker`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, millis};
use super::lane::Lane;
use super::metrics::JobMetrics;
use super::model::{
    FailReason, InputRound, Job, JobId, JobState, NewJob, Outcome, Owner, Progress, Status,
    Submitted, TaskInfo,
};
use super::runner::Runner;
use super::store::{Created, Cursor, Durability, JobStore, StoreError};
use super::{JobError, Settings};

/// Events kept for a follower that is behind; one that falls further behind is sent the
/// current state instead (progress is cumulative, so nothing is lost by skipping).
pub(crate) const EVENT_BUFFER: usize = 64;
/// Progress is written to the store at most this often per job (without fsync): the job's end
/// writes the final state durably anyway, and a chatty tool must not turn into a write storm.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// States waiting to be published to other replicas' followers (Redis store). A follower that
/// misses one (the buffer was full) still reads the record every few seconds.
const PUBLISH_BUFFER: usize = 4096;
/// A terminal write that fails is tried this many times before the job is left in memory
/// only (and the failure logged): losing an acknowledged result is the one thing not allowed.
const FINAL_WRITE_ATTEMPTS: u32 = 5;

/// What the change given to [`super::Jobs::update_waiting`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The job goes on waiting for input (the round is not complete).
    Wait,
    /// The job's (rewritten) call runs again.
    Run,
}

/// An unfinished job's in-memory side: its latest record (the writer's lock), its followers'
/// channel and its cancellation.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) state: tokio::sync::Mutex<LiveState>,
    pub(crate) events: broadcast::Sender<JobState>,
    /// The owner asked to cancel a working job: its worker abandons the call.
    pub(crate) cancel: CancellationToken,
    /// Another replica took the job over (this one's lease ran out): its worker abandons the
    /// call and writes nothing, the job is the other replica's now.
    pub(crate) lost: CancellationToken,
}

#[derive(Debug)]
pub(crate) struct LiveState {
    /// The record; `version` is the stored one, other fields may be ahead of the store
    /// (progress not yet written).
    pub(crate) job: Job,
    /// When progress was last written.
    progress_written: Option<Instant>,
}

/// The engine: store, settings, live jobs, lanes.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) settings: Settings,
    pub(crate) metrics: JobMetrics,
    pub(crate) clock: Clock,
    live: Mutex<HashMap<JobId, Arc<Live>>>,
    pub(crate) lanes: HashMap<String, Arc<Lane>>,
    /// Jobs queued over all upstreams (the `max_queued` bound).
    pub(crate) queued: AtomicUsize,
    pub(crate) global: Arc<tokio::sync::Semaphore>,
    accepting: AtomicBool,
    pub(crate) runner: OnceLock<Arc<dyn Runner>>,
    /// No job starts once set (shutdown began).
    pub(crate) stop: CancellationToken,
    /// Running jobs stop once set (the grace period is over).
    pub(crate) interrupt: CancellationToken,
    /// Set when the drain is over: the lease keeper and the other replica tasks stop.
    pub(crate) halted: CancellationToken,
    /// States to publish to other replicas (Redis store only), in order.
    pub(crate) published: Option<tokio::sync::mpsc::Sender<JobState>>,
    /// Its receiving end, until the publisher task takes it.
    pub(crate) to_publish: Mutex<Option<tokio::sync::mpsc::Receiver<JobState>>>,
}

impl Engine {
    pub(crate) fn new(store: Arc<dyn JobStore>, settings: Settings, metrics: JobMetrics) -> Self {
        let lanes = settings
            .upstreams
            .iter()
            .map(|u| {
                metrics.init_upstream(u);
                (u.clone(), Arc::new(Lane::new(u.clone())))
            })
            .collect();
        let (published, to_publish) = if store.as_redis().is_some() {
            let (tx, rx) = tokio::sync::mpsc::channel(PUBLISH_BUFFER);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self {
            store,
            global: Arc::new(tokio::sync::Semaphore::new(settings.max_running)),
            settings,
            metrics,
            clock: Clock::new(),
            live: Mutex::new(HashMap::new()),
            lanes,
            queued: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            runner: OnceLock::new(),
            stop: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            halted: CancellationToken::new(),
            published,
            to_publish: Mutex::new(to_publish),
        }
    }

    /// Tells the job's followers here, and (Redis store) those on other replicas.
    pub(crate) fn announce(&self, live: &Live, state: JobState) {
        if let Some(out) = &self.published
            && out.try_send(state.clone()).is_err()
        {
            tracing::debug!(job = %state.id, "job event not published (buffer full); followers elsewhere read the record");
        }
        let _ = live.events.send(state);
    }

    /// The ids of the jobs this process holds.
    pub(crate) fn live_ids(&self) -> Vec<JobId> {
        self.live
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Times a store operation and counts its failure.
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result = fut.await;
        self.metrics
            .store_latency
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.store_errors.with_label_values(&[op]).inc();
            tracing::warn!(op, error = %e, "job store operation failed");
        }
        result
    }

    pub(crate) fn live(&self, id: JobId) -> Option<Arc<Live>> {
        self.live.lock().ok()?.get(&id).cloned()
    }

    pub(crate) fn add_live(&self, job: Job) -> Arc<Live> {
        let id = job.id;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let live = Arc::new(Live {
            state: tokio::sync::Mutex::new(LiveState {
                job,
                progress_written: None,
            }),
            events,
            cancel: CancellationToken::new(),
            lost: CancellationToken::new(),
        });
        if let Ok(mut map) = self.live.lock() {
            map.insert(id, live.clone());
        }
        live
    }

    pub(crate) fn remove_live(&self, id: JobId) {
        if let Ok(mut map) = self.live.lock() {
            map.remove(&id);
        }
    }

    /// Whether submissions are taken (not after shutdown began).
    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Unfinished jobs, for the operator view: (status, created_ms) of each.
    pub(crate) fn live_jobs(&self) -> Vec<Arc<Live>> {
        self.live
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Stores a new job (durably) and queues it; or, for a known `Idempotency-Key`, returns the
    /// job it names.
    pub(crate) async fn submit(&self, new: NewJob) -> Result<Submitted, JobError> {
        let upstream = new.request.upstream.clone();
        let refuse = |reason: &str| {
            self.metrics
                .refused
                .with_label_values(&[&upstream, reason])
                .inc();
        };
        if !self.accepting() {
            refuse("shutting_down");
            return Err(JobError::ShuttingDown);
        }
        let Some(lane) = self.lanes.get(&upstream).cloned() else {
            return Err(JobError::UnknownUpstream(upstream));
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.settings.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            refuse("queue_full");
            return Err(JobError::QueueFull {
                limit: self.settings.max_queued,
            });
        }
        let id = new.id;
        let now = self.clock.now_ms();
        let deadline_ms = now.saturating_add(millis(new.deadline));
        let job = Job {
            id,
            owner: new.owner,
            method: new.method,
            tool: new.tool,
            status: Status::Queued,
            progress: None,
            seq: 1,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            finished_ms: None,
            // Until it ends, a job lives as long as it may run, plus the result's lifetime.
            expires_ms: deadline_ms.saturating_add(millis(self.settings.result_ttl)),
            deadline_ms,
            attempts: 0,
            rerun_on_restart: new.rerun_on_restart,
            unsent: false,
            outcome: None,
            idempotency: new.idempotency,
            request: new.request,
            task: new.task,
            version: 1,
        };
        let created = self.timed("create", self.store.create(job.clone())).await;
        match created {
            Ok(Created::New) => {
                let state = job.state();
                self.add_live(job);
                self.metrics.submitted.with_label_values(&[&upstream]).inc();
                self.metrics.queued.with_label_values(&[&upstream]).inc();
                tracing::debug!(job = %id, upstream = %upstream, status = "queued", "job transition");
                lane.push(id);
                Ok(Submitted::New(state))
            }
            Ok(Created::Existing(existing)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                let same = match (&existing.idempotency, &job.idempotency) {
                    (Some(a), Some(b)) => a.fingerprint == b.fingerprint,
                    _ => false,
                };
                if !same || existing.request.upstream != job.request.upstream {
                    return Err(JobError::IdempotencyMismatch);
                }
                self.metrics.replayed.with_label_values(&[&upstream]).inc();
                let state = match self.live(existing.id) {
                    Some(live) => live.state.lock().await.job.state(),
                    None => existing.state(),
                };
                Ok(Submitted::Replayed(state))
            }
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                refuse("store");
                Err(JobError::Store(e))
            }
        }
    }

    pub(crate) async fn upstream_of(&self, id: JobId) -> Result<Option<String>, JobError> {
        if let Some(live) = self.live(id) {
            return Ok(Some(live.state.lock().await.job.request.upstream.clone()));
        }
        let job = self
            .timed("get", self.store.get(id))
            .await
            .map_err(JobError::Store)?;
        Ok(job
            .filter(|j| !j.expired(self.clock.now_ms()))
            .map(|j| j.request.upstream))
    }

    /// The job, if `owner` owns it (the freshest copy: a live job's progress may be ahead of
    /// the store).
    pub(crate) async fn get(&self, id: JobId, owner: &Owner) -> Result<Job, JobError> {
        let job = match self.live(id) {
            Some(live) => live.state.lock().await.job.clone(),
            None => self
                .timed("get", self.store.get(id))
                .await
                .map_err(JobError::Store)?
                .ok_or(JobError::NotFound)?,
        };
        if &job.owner != owner || job.expired(self.clock.now_ms()) {
            return Err(JobError::NotFound);
        }
        Ok(job)
    }

    /// The job's current state and, unless it has ended, a receiver of its later events
    /// (subscribed before the state was read, so nothing falls between them).
    pub(crate) async fn follow(
        &self,
        id: JobId,
        owner: &Owner,
    ) -> Result<(JobState, Option<broadcast::Receiver<JobState>>), JobError> {
        if let Some(live) = self.live(id) {
            let rx = live.events.subscribe();
            let job = live.state.lock().await.job.state();
            let owned = self.get_owner_check(&live, owner).await;
            if !owned {
                return Err(JobError::NotFound);
            }
            let rx = (!job.status.is_terminal()).then_some(rx);
            return Ok((job, rx));
        }
        Ok((self.get(id, owner).await?.state(), None))
    }

    async fn get_owner_check(&self, live: &Live, owner: &Owner) -> bool {
        &live.state.lock().await.job.owner == owner
    }

    /// Cancels the job: a queued one at once, a working one by abandoning its call (and telling
    /// the backend). Waits up to `wait` for a working job to end; returns its state then. A job
    /// that has already ended is returned as it is.
    pub(crate) async fn cancel(
        &self,
        id: JobId,
        owner: &Owner,
        wait: Duration,
    ) -> Result<JobState, JobError> {
        let Some(live) = self.live(id) else {
            return Ok(self.get(id, owner).await?.state());
        };
        let mut rx = live.events.subscribe();
        {
            let mut guard = live.state.lock().await;
            if &guard.job.owner != owner {
                return Err(JobError::NotFound);
            }
            match guard.job.status {
                Status::Queued => {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    self.metrics
                        .queued
                        .with_label_values(&[&guard.job.request.upstream])
                        .dec();
                    let state = self
                        .finish_locked(&live, &mut guard, Outcome::Cancelled)
                        .await;
                    return Ok(state);
                }
                Status::Working => live.cancel.cancel(),
                // Its call is still running (the requests came on its stream): abandoned as
                // a working job's is.
                Status::InputRequired
                    if guard.job.task.as_ref().is_some_and(TaskInfo::streaming) =>
                {
                    live.cancel.cancel()
                }
                // No call is running: it ends here. (Its last call was answered, so the
                // backend has nothing to abandon.)
                Status::InputRequired => {
                    let state = self
                        .finish_locked(&live, &mut guard, Outcome::Cancelled)
                        .await;
                    return Ok(state);
                }
                _ => return Ok(guard.job.state()),
            }
        }
        until_terminal(&mut rx, wait).await;
        Ok(live.state.lock().await.job.state())
    }

    /// The owner's jobs on `upstream`, newest first, and where the next page starts (when the
    /// store had a full page: expired jobs the sweeper has not removed yet are left out, so a
    /// page may be shorter than `limit` and still have a next one).
    pub(crate) async fn list(
        &self,
        owner: &Owner,
        upstream: &str,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<JobState>, Option<Cursor>), JobError> {
        let jobs = self
            .timed(
                "list",
                self.store
                    .list(owner.clone(), upstream.to_owned(), after, limit),
            )
            .await
            .map_err(JobError::Store)?;
        let next = (jobs.len() == limit)
            .then(|| {
                jobs.last().map(|j| Cursor {
                    created_ms: j.created_ms,
                    id: j.id,
                })
            })
            .flatten();
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs.into_iter().filter(|j| !j.expired(now)) {
            out.push(match self.live(job.id) {
                Some(live) => live.state.lock().await.job.state(),
                None => job.state(),
            });
        }
        Ok((out, next))
    }

    /// Records a working job's progress and tells its followers.
    pub(crate) async fn progress(&self, id: JobId, progress: Progress) {
        let Some(live) = self.live(id) else { return };
        let mut guard = live.state.lock().await;
        if guard.job.status != Status::Working {
            return;
        }
        guard.job.progress = Some(progress);
        guard.job.seq += 1;
        guard.job.updated_ms = self.clock.now_ms();
        self.announce(&live, guard.job.state());
        let due = guard
            .progress_written
            .is_none_or(|at| at.elapsed() >= PROGRESS_WRITE_INTERVAL);
        if due {
            guard.progress_written = Some(Instant::now());
            // A lost progress write is superseded by the next one or the job's end.
            let _ = self.persist(&mut guard.job, Durability::Lazy).await;
        }
    }

    /// Writes `job` with the next version (compare-and-set on the current one).
    pub(crate) async fn persist(
        &self,
        job: &mut Job,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let expected = job.version;
        job.version += 1;
        let result = self
            .timed(
                "update",
                self.store.update(job.clone(), expected, durability),
            )
            .await;
        if result.is_err() {
            job.version = expected;
        }
        result
    }

    /// Moves a job to `Working` (durably: a crash after the call is sent must find it
    /// working, not queued, so a non-idempotent call is not sent twice).
    ///
    /// Checked and done under the job's lock, so a cancel cannot slip between the check that
    /// the job is still queued and its start. A job past its deadline, or whose `working` cannot
    /// be written, is failed here instead.
    pub(crate) async fn start(&self, live: &Live) -> Option<Job> {
        let mut guard = live.state.lock().await;
        if guard.job.status != Status::Queued {
            // Cancelled while it waited (the cancel took it off the counts).
            return None;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.metrics
            .queued
            .with_label_values(&[&guard.job.request.upstream])
            .dec();
        if live.lost.is_cancelled() {
            // Another replica holds it now.
            self.remove_live(guard.job.id);
            return None;
        }
        let now = self.clock.now_ms();
        if now >= guard.job.deadline_ms {
            let outcome = Outcome::Failed {
                reason: FailReason::DeadlineExceeded,
                message: "the job's deadline passed while it waited to run".to_owned(),
            };
            self.finish_locked(live, &mut guard, outcome).await;
            return None;
        }
        self.metrics
            .queue_wait
            .with_label_values(&[&guard.job.request.upstream])
            .observe(now.saturating_sub(guard.job.created_ms) as f64 / 1000.0);
        guard.job.status = Status::Working;
        guard.job.started_ms = Some(now);
        guard.job.updated_ms = now;
        guard.job.attempts += 1;
        guard.job.seq += 1;
        if let Err(e) = self.persist(&mut guard.job, Durability::Sync).await {
            // Not sent, and not known to be working: it fails rather than risk a second send.
            guard.job.status = Status::Queued;
            guard.job.attempts -= 1;
            let outcome = Outcome::Failed {
                reason: FailReason::Internal,
                message: format!("job store: {e}"),
            };
            self.finish_locked(live, &mut guard, outcome).await;
            return None;
        }
        self.announce(live, guard.job.state());
        tracing::debug!(job = %guard.job.id, upstream = %guard.job.request.upstream, status = "working", attempt = guard.job.attempts, "job transition");
        Some(guard.job.clone())
    }

    /// Records, durably, whether a working job's call is known not to have been sent: set when
    /// it waits behind an open circuit, cleared before it is sent again (so a crash during the
    /// send finds it possibly sent). `false` if the write failed.
    pub(crate) async fn mark_unsent(&self, live: &Live, unsent: bool) -> bool {
        let mut guard = live.state.lock().await;
        if guard.job.unsent == unsent || guard.job.status != Status::Working {
            return guard.job.status == Status::Working;
        }
        guard.job.unsent = unsent;
        if self
            .persist(&mut guard.job, Durability::Sync)
            .await
            .is_err()
        {
            guard.job.unsent = !unsent;
            return false;
        }
        true
    }

    /// Parks a working job whose call asked for input: `input_required` with the round's
    /// requests (durably), until [`Engine::update_waiting`] queues it again.
    pub(crate) async fn park(&self, live: &Live, round: InputRound) {
        let mut guard = live.state.lock().await;
        if guard.job.status != Status::Working {
            return;
        }
        let job = &mut guard.job;
        let task = job.task.get_or_insert_with(TaskInfo::default);
        task.issued_keys.extend(round.requests.keys().cloned());
        task.input_requests = round.requests;
        task.input_responses.clear();
        task.request_state = round.request_state;
        task.round_answer = Some(round.answer);
        job.status = Status::InputRequired;
        job.seq += 1;
        job.updated_ms = self.clock.now_ms();
        if let Err(e) = self.persist(&mut guard.job, Durability::Sync).await {
            let outcome = Outcome::Failed {
                reason: FailReason::Internal,
                message: format!("job store: cannot record the input request: {e}"),
            };
            self.finish_locked(live, &mut guard, outcome).await;
            return;
        }
        tracing::debug!(job = %guard.job.id, status = "input_required", "job transition");
        self.announce(live, guard.job.state());
    }

    /// Records a request a working job's call sent on its stream (see
    /// [`super::ProgressSink::input_request`]): `input_required`, durably, with the request
    /// under a key never used before in the task.
    pub(crate) async fn stream_input(&self, id: JobId, request: serde_json::Value) {
        let Some(live) = self.live(id) else { return };
        let mut guard = live.state.lock().await;
        if !matches!(guard.job.status, Status::Working | Status::InputRequired) {
            return;
        }
        let Some(backend_id) = request.get("id").cloned() else {
            return;
        };
        let job = &mut guard.job;
        let task = job.task.get_or_insert_with(TaskInfo::default);
        if job.status == Status::Working {
            task.input_requests.clear();
            task.input_responses.clear();
            task.pending_ids.clear();
            task.request_state = None;
            task.round_answer = None;
        }
        let base = match &backend_id {
            serde_json::Value::String(s) => format!("request-{s}"),
            other => format!("request-{other}"),
        };
        let mut key = base.clone();
        let mut n = 1;
        while task.issued_keys.contains(&key) {
            n += 1;
            key = format!("{base}-{n}");
        }
        let mut shown = serde_json::Map::new();
        for field in ["method", "params"] {
            if let Some(v) = request.get(field) {
                shown.insert(field.to_owned(), v.clone());
            }
        }
        task.issued_keys.push(key.clone());
        task.input_requests
            .insert(key.clone(), serde_json::Value::Object(shown));
        task.pending_ids.insert(key, backend_id);
        job.status = Status::InputRequired;
        job.seq += 1;
        job.updated_ms = self.clock.now_ms();
        // Lost only with the process, and then the call is gone too (the restart handles it
        // as an interrupted working job): no fsync.
        let _ = self.persist(&mut guard.job, Durability::Lazy).await;
        tracing::debug!(job = %id, status = "input_required", "job transition (request on the stream)");
        self.announce(&live, guard.job.state());
    }

    /// The running call went on after its stream's requests were answered: working again.
    pub(crate) async fn stream_resumed(&self, id: JobId) {
        let Some(live) = self.live(id) else { return };
        let mut guard = live.state.lock().await;
        let streaming = guard.job.task.as_ref().is_some_and(TaskInfo::streaming);
        if guard.job.status != Status::InputRequired || !streaming {
            return;
        }
        if let Some(task) = guard.job.task.as_mut() {
            task.input_requests.clear();
            task.input_responses.clear();
            task.pending_ids.clear();
        }
        guard.job.status = Status::Working;
        guard.job.seq += 1;
        guard.job.updated_ms = self.clock.now_ms();
        let _ = self.persist(&mut guard.job, Durability::Lazy).await;
        tracing::debug!(job = %id, status = "working", "job transition (input answered)");
        self.announce(&live, guard.job.state());
    }

    /// Sends `message` to the backend in the job's session (see [`Runner::send`]).
    pub(crate) async fn send(
        &self,
        job: &Job,
        message: String,
    ) -> Result<(), crate::error::ProxyError> {
        let runner = self.runner.get().cloned().ok_or_else(|| {
            crate::error::ProxyError::JobsUnavailable("the job engine is not running".into())
        })?;
        runner.send(job, message).await
    }

    /// Changes a job that waits for input (see [`Engine::park`]) with `change`, durably: the
    /// facade records the client's responses, and once the round is complete rewrites the call
    /// and asks for it to run again ([`Resume::Run`]). A job that does not wait for input is
    /// left alone (`Ok(false)`); one the owner does not own is not found.
    pub(crate) async fn update_waiting(
        &self,
        id: JobId,
        owner: &Owner,
        change: impl FnOnce(&mut Job) -> Resume,
    ) -> Result<bool, JobError> {
        let Some(live) = self.live(id) else {
            self.get(id, owner).await?;
            return Ok(false);
        };
        let mut guard = live.state.lock().await;
        if &guard.job.owner != owner || guard.job.expired(self.clock.now_ms()) {
            return Err(JobError::NotFound);
        }
        if guard.job.status != Status::InputRequired {
            return Ok(false);
        }
        let before = guard.job.clone();
        let resume = change(&mut guard.job);
        let upstream = guard.job.request.upstream.clone();
        let lane = match resume {
            Resume::Run => match self.lanes.get(&upstream) {
                Some(lane) => {
                    if self.queued.fetch_add(1, Ordering::AcqRel) >= self.settings.max_queued {
                        self.queued.fetch_sub(1, Ordering::AcqRel);
                        guard.job = before;
                        return Err(JobError::QueueFull {
                            limit: self.settings.max_queued,
                        });
                    }
                    guard.job.status = Status::Queued;
                    if let Some(task) = guard.job.task.as_mut() {
                        task.input_requests.clear();
                        task.input_responses.clear();
                        task.request_state = None;
                        task.round_answer = None;
                    }
                    Some(lane.clone())
                }
                None => {
                    guard.job = before;
                    return Err(JobError::UnknownUpstream(upstream));
                }
            },
            Resume::Wait => None,
        };
        guard.job.seq += 1;
        guard.job.updated_ms = self.clock.now_ms();
        if let Err(e) = self.persist(&mut guard.job, Durability::Sync).await {
            if lane.is_some() {
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
            let version = guard.job.version;
            guard.job = before;
            guard.job.version = version;
            return Err(JobError::Store(e));
        }
        self.announce(&live, guard.job.state());
        if let Some(lane) = lane {
            self.metrics.queued.with_label_values(&[&upstream]).inc();
            tracing::debug!(job = %id, status = "queued", "job transition (input received)");
            drop(guard);
            lane.push(id);
        }
        Ok(true)
    }

    /// Ends a job that waits for input with `outcome` (the facade answered its first round
    /// itself); `false` if it no longer waits.
    pub(crate) async fn settle_waiting(&self, id: JobId, outcome: Outcome) -> bool {
        let Some(live) = self.live(id) else {
            return false;
        };
        let mut guard = live.state.lock().await;
        if guard.job.status != Status::InputRequired {
            return false;
        }
        self.finish_locked(&live, &mut guard, outcome).await;
        true
    }

    /// Ends the job with `outcome`, durably, tells its followers and forgets it.
    pub(crate) async fn finish(&self, live: &Live, outcome: Outcome) -> JobState {
        let mut guard = live.state.lock().await;
        self.finish_locked(live, &mut guard, outcome).await
    }

    async fn finish_locked(
        &self,
        live: &Live,
        guard: &mut LiveState,
        outcome: Outcome,
    ) -> JobState {
        let job = &mut guard.job;
        if job.status.is_terminal() {
            return job.state();
        }
        let now = self.clock.now_ms();
        let was = job.status;
        job.status = match &outcome {
            Outcome::Answered { .. } => Status::Completed,
            Outcome::Failed { .. } => Status::Failed,
            Outcome::Cancelled => Status::Cancelled,
        };
        job.outcome = Some(outcome);
        job.finished_ms = Some(now);
        job.updated_ms = now;
        job.expires_ms = now.saturating_add(millis(self.settings.result_ttl));
        job.seq += 1;
        let mut written = false;
        for attempt in 1..=FINAL_WRITE_ATTEMPTS {
            match self.persist(job, Durability::Sync).await {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(StoreError::NotFound(_)) => break,
                // Only with a shared store: another replica took the job over (this one's lease
                // ran out) and wrote it since; its record stands, nothing is kept here.
                Err(StoreError::Conflict(_)) => {
                    tracing::warn!(job = %job.id, "job changed by another replica; its ending here is not stored");
                    written = true;
                    break;
                }
                Err(_) if attempt < FINAL_WRITE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(_) => {}
            }
        }
        let state = job.state();
        let upstream = job.request.upstream.clone();
        let status = job.status.as_str();
        self.metrics
            .finished
            .with_label_values(&[&upstream, status])
            .inc();
        if was == Status::Working
            && let Some(started) = job.started_ms
        {
            self.metrics
                .run_duration
                .with_label_values(&[&upstream, status])
                .observe(now.saturating_sub(started) as f64 / 1000.0);
        }
        let reason = state.failure.as_ref().map(|(r, _)| r.as_str());
        tracing::info!(job = %job.id, upstream = %upstream, method = %job.method, tool = job.tool.as_deref(), owner = job.owner.as_str(), status, reason, attempts = job.attempts, run_ms = job.started_ms.map(|s| now.saturating_sub(s)), "job ended");
        self.announce(live, state.clone());
        if written {
            self.remove_live(job.id);
        } else {
            // Kept in memory so the result can still be fetched while this process runs.
            tracing::error!(job = %job.id, "job result could not be stored; it is kept in memory only");
        }
        state
    }

    /// Writes again the end of a job whose final write failed (the store was down) and that is
    /// kept in memory since; forgets it once the store has it, or once the store says it is
    /// someone else's (removed, or taken over by another replica). `true` if it is forgotten.
    pub(crate) async fn store_kept_ending(&self, live: &Live) -> bool {
        let mut guard = live.state.lock().await;
        if !guard.job.status.is_terminal() {
            return false;
        }
        let id = guard.job.id;
        match self.persist(&mut guard.job, Durability::Sync).await {
            Ok(()) => {
                tracing::info!(job = %id, "job result stored after the store came back");
            }
            Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
            Err(_) => return false,
        }
        self.remove_live(id);
        true
    }

    /// Fails a job that cannot run (unknown upstream after a config change, past its deadline
    /// while queued).
    pub(crate) async fn fail(&self, live: &Live, reason: FailReason, message: String) -> JobState {
        self.finish(live, Outcome::Failed { reason, message }).await
    }
}

/// Waits up to `wait` for `rx` to carry a terminal state (or to close: the job is gone from
/// here); a lagging receiver skips what it missed, since only the end matters.
pub(super) async fn until_terminal(rx: &mut broadcast::Receiver<JobState>, wait: Duration) {
    let _ = tokio::time::timeout(wait, async {
        loop {
            match rx.recv().await {
                Ok(state) if state.status.is_terminal() => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
}
