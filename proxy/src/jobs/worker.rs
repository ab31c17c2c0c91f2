//! Running jobs: one lane (queue and workers) per upstream, a global cap over all of them, the
//! wait behind an open circuit, deadlines, cancellation, the restart recovery and the sweeper
//! that removes expired jobs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::{Engine, Live};
use super::lane::Lane;
use super::model::{FailReason, JobId, Outcome, Status};
use super::runner::{ProgressSink, RunOutcome};
use super::store::{Durability, StoreError};

/// First wait of a job whose call could not be sent (open circuit, full in-flight cap); it
/// doubles per try. A quarter second keeps a closing circuit's recovery quick to notice.
const NOT_SENT_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between tries: a job waiting on a circuit that stays open for minutes still
/// looks every few seconds, so it starts soon after the circuit closes.
const NOT_SENT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often expired jobs are removed. Expiry is in hours by default; a minute's lag costs a
/// little disk, and the sweep is one index range read.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Expired jobs removed per sweep round (the round repeats while it finds that many).
const SWEEP_BATCH: usize = 1000;
/// How long an interrupted call's `notifications/cancelled` may take at shutdown.
const SHUTDOWN_CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// A lane's worker: takes the lane's next job when a global slot is free, runs it, repeats
/// until the engine stops.
pub(crate) async fn work(engine: Arc<Engine>, lane: Arc<Lane>) {
    loop {
        // Biased: once shutdown began, a worker that just finished a job must not take the
        // next queued one (an unbiased select may pick `pop`, start the job and see it
        // interrupted at once: a queued job failed instead of kept for the next start).
        let id = tokio::select! {
            biased;
            () = engine.stop.cancelled() => return,
            id = lane.pop() => id,
        };
        let permit = tokio::select! {
            biased;
            () = engine.stop.cancelled() => {
                lane.push_front(id);
                return;
            }
            permit = engine.global.clone().acquire_owned() => permit,
        };
        let Ok(_permit) = permit else { return };
        run_one(&engine, id).await;
    }
}

/// How a run ended, before it is written down.
enum Ended {
    Ran(RunOutcome),
    Cancelled,
    Deadline,
    Interrupted,
    /// Another replica took the job over.
    Lost,
}

async fn run_one(engine: &Arc<Engine>, id: JobId) {
    let Some(live) = engine.live(id) else { return };
    // Workers start only after the runner is set (`Jobs::start`).
    let Some(runner) = engine.runner.get().cloned() else {
        return;
    };
    let Some(job) = engine.start(&live).await else {
        return;
    };
    let upstream = job.request.upstream.clone();
    let (created_ms, deadline_ms) = (job.created_ms, job.deadline_ms);
    let now = engine.clock.now_ms();
    let running = engine.metrics.running.with_label_values(&[&upstream]);
    running.inc();
    let deadline = Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now));
    let sink = ProgressSink {
        engine: engine.clone(),
        id,
    };
    let mut backoff = NOT_SENT_FIRST_BACKOFF;
    // Whether the call is known not to have reached the upstream (it was refused before the
    // send): then abandoning it tells the backend nothing, and an interruption re-queues it.
    let mut unsent = false;
    let ended = loop {
        if unsent {
            // Written before the send: a crash during it must find the job possibly sent.
            if !engine.mark_unsent(&live, false).await {
                break Ended::Ran(RunOutcome::Failed {
                    reason: FailReason::Internal,
                    message: "job store: cannot record the send".to_owned(),
                });
            }
            unsent = false;
        }
        let run = runner.run(&job, sink.clone());
        let ended = tokio::select! {
            biased;
            () = live.cancel.cancelled() => Ended::Cancelled,
            () = live.lost.cancelled() => Ended::Lost,
            () = engine.interrupt.cancelled() => Ended::Interrupted,
            () = tokio::time::sleep_until(deadline) => Ended::Deadline,
            outcome = run => Ended::Ran(outcome),
        };
        let Ended::Ran(RunOutcome::NotSent { retry_after, why }) = ended else {
            break ended;
        };
        unsent = engine.mark_unsent(&live, true).await;
        // Not sent: the upstream never saw it. Wait (for the circuit to close, a slot to
        // free) and try again, until the deadline.
        let wait = retry_after.max(backoff).min(NOT_SENT_MAX_BACKOFF);
        backoff = (backoff * 2).min(NOT_SENT_MAX_BACKOFF);
        tracing::debug!(job = %id, why = %why, wait_ms = wait.as_millis() as u64, "job not sent; waiting");
        tokio::select! {
            biased;
            () = live.cancel.cancelled() => break Ended::Cancelled,
            () = live.lost.cancelled() => break Ended::Lost,
            () = engine.interrupt.cancelled() => break Ended::Interrupted,
            () = tokio::time::sleep_until(deadline) => break Ended::Deadline,
            () = tokio::time::sleep(wait) => {}
        }
    };
    running.dec();
    if let Ended::Lost = ended {
        // The call was abandoned (its connection closed); the replica that holds the job now
        // re-runs it or marks it, per the tool's idempotence.
        tracing::warn!(job = %id, "job taken over by another replica (this one's lease ran out); its call here is abandoned");
        engine.remove_live(id);
        return;
    }
    if let Ended::Ran(RunOutcome::InputRequired(round)) = ended {
        engine.park(&live, round).await;
        return;
    }
    let outcome = match ended {
        Ended::Ran(RunOutcome::Answered(response)) => Outcome::Answered { response },
        Ended::Ran(RunOutcome::Failed { reason, message }) => Outcome::Failed { reason, message },
        Ended::Ran(RunOutcome::NotSent { .. } | RunOutcome::InputRequired(_)) | Ended::Lost => {
            Outcome::Failed {
                reason: FailReason::Internal,
                message: "not sent".to_owned(),
            }
        }
        Ended::Cancelled => {
            if !unsent {
                tokio::spawn(runner.cancel(&job, "cancelled by its owner"));
            }
            Outcome::Cancelled
        }
        Ended::Deadline => {
            if !unsent {
                tokio::spawn(runner.cancel(&job, "the job's deadline passed"));
            }
            Outcome::Failed {
                reason: FailReason::DeadlineExceeded,
                message: format!(
                    "the job did not finish within its deadline of {}",
                    humantime::format_duration(Duration::from_millis(
                        deadline_ms.saturating_sub(created_ms)
                    ))
                ),
            }
        }
        Ended::Interrupted => {
            if !unsent {
                let _ = tokio::time::timeout(
                    SHUTDOWN_CANCEL_TIMEOUT,
                    runner.cancel(&job, "the sidecar is shutting down"),
                )
                .await;
            }
            if (job.rerun_on_restart || unsent) && requeue(engine, &live).await {
                return;
            }
            Outcome::Failed {
                reason: FailReason::Interrupted,
                message: "the sidecar shut down while the job was working".to_owned(),
            }
        }
    };
    engine.finish(&live, outcome).await;
}

/// Puts an interrupted job back in the queue (durably), for the next start: an idempotent
/// tool's, or one whose call was not sent. `false` if that could not be written.
async fn requeue(engine: &Engine, live: &Live) -> bool {
    let mut guard = live.state.lock().await;
    guard.job.status = Status::Queued;
    guard.job.unsent = false;
    guard.job.seq += 1;
    guard.job.updated_ms = engine.clock.now_ms();
    let ok = engine
        .persist(&mut guard.job, Durability::Sync)
        .await
        .is_ok();
    if ok {
        tracing::info!(job = %guard.job.id, "job interrupted by shutdown; queued again (idempotent tool, or its call was not sent)");
    }
    ok
}

/// What a restart found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Queued jobs queued again.
    pub queued: usize,
    /// Working jobs of idempotent tools queued again.
    pub rerun: usize,
    /// Working jobs failed as `interrupted`.
    pub interrupted: usize,
    /// Jobs of upstreams no longer configured, failed.
    pub orphaned: usize,
    /// Jobs waiting for their client's input, waiting again.
    pub waiting: usize,
}

/// Resumes the embedded store's unfinished jobs after a restart: queued ones are queued again,
/// working ones re-run (idempotent tools) or fail as `interrupted`. (With the Redis store only
/// the jobs whose lease ran out are this replica's to resume: `Jobs::recover` takes those over
/// instead.)
pub(crate) async fn recover(engine: &Engine) -> Result<Recovered, StoreError> {
    let jobs = engine
        .timed("unfinished", engine.store.unfinished())
        .await?;
    let mut report = Recovered::default();
    for job in jobs {
        resume(
            engine,
            job,
            "the sidecar stopped while the job was working",
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

/// Takes up one unfinished job whose process stopped (a restart, or another replica that
/// died): queued, it is queued here; working, it is queued again (an idempotent tool's, or a
/// call known not to have been sent) or fails as `interrupted` with `why`.
pub(crate) async fn resume(
    engine: &Engine,
    mut job: super::model::Job,
    why: &str,
    report: &mut Recovered,
) -> Result<(), StoreError> {
    let Some(lane) = engine.lanes.get(&job.request.upstream).cloned() else {
        let upstream = job.request.upstream.clone();
        let live = engine.add_live(job);
        engine
            .fail(
                &live,
                FailReason::Internal,
                format!("upstream `{upstream}` is no longer configured"),
            )
            .await;
        report.orphaned += 1;
        return Ok(());
    };
    // A job whose call was running: working, or waiting on requests its call sent on its
    // stream (the call was running all the same).
    let streaming = job
        .task
        .as_ref()
        .is_some_and(super::model::TaskInfo::streaming);
    if job.status == Status::InputRequired && streaming {
        job.status = Status::Working;
        if let Some(task) = job.task.as_mut() {
            task.input_requests.clear();
            task.input_responses.clear();
            task.pending_ids.clear();
        }
    }
    match job.status {
        Status::Queued => report.queued += 1,
        // Possibly sent, but safe to send again; or known not to have been sent.
        Status::Working if job.rerun_on_restart || job.unsent => {
            job.status = Status::Queued;
            job.unsent = false;
            job.seq += 1;
            engine.persist(&mut job, Durability::Sync).await?;
            report.rerun += 1;
        }
        // Waits for its client's input, as it did before the restart.
        Status::InputRequired => {
            engine.add_live(job);
            report.waiting += 1;
            return Ok(());
        }
        Status::Working => {
            let live = engine.add_live(job);
            engine
                .fail(&live, FailReason::Interrupted, why.to_owned())
                .await;
            report.interrupted += 1;
            return Ok(());
        }
        _ => return Ok(()),
    }
    let id = job.id;
    engine.queued.fetch_add(1, Ordering::AcqRel);
    engine
        .metrics
        .queued
        .with_label_values(&[&lane.upstream])
        .inc();
    engine.add_live(job);
    lane.push(id);
    Ok(())
}

/// Removes expired jobs every [`SWEEP_INTERVAL`] until the engine stops.
pub(crate) async fn sweep(engine: Arc<Engine>) {
    loop {
        tokio::select! {
            () = engine.stop.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
        sweep_once(&engine).await;
    }
}

/// One sweep: fails jobs that waited for input past their deadline, and removes every
/// finished job past its expiry. Returns how many were removed.
pub(crate) async fn sweep_once(engine: &Engine) -> usize {
    let now = engine.clock.now_ms();
    for live in engine.live_jobs() {
        let overdue = {
            let guard = live.state.lock().await;
            guard.job.status == Status::InputRequired
                && !guard
                    .job
                    .task
                    .as_ref()
                    .is_some_and(super::model::TaskInfo::streaming)
                && now >= guard.job.deadline_ms
        };
        if overdue {
            engine
                .fail(
                    &live,
                    FailReason::DeadlineExceeded,
                    "the job's deadline passed while it waited for input".to_owned(),
                )
                .await;
        }
    }
    let mut removed = 0;
    loop {
        let now = engine.clock.now_ms();
        let Ok(ids) = engine
            .timed("expired", engine.store.expired(now, SWEEP_BATCH))
            .await
        else {
            return removed;
        };
        let full = ids.len() == SWEEP_BATCH;
        let mut progressed = false;
        for id in ids {
            // A job still running is not removed under its worker (its expiry moves when it
            // ends).
            if engine.live(id).is_some() {
                continue;
            }
            if let Ok(true) = engine.timed("remove", engine.store.remove(id)).await {
                removed += 1;
                progressed = true;
            }
        }
        if !full || !progressed {
            if removed > 0 {
                tracing::debug!(removed, "expired jobs removed");
            }
            return removed;
        }
    }
}
