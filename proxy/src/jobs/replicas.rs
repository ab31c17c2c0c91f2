//! Several replicas on one Redis store (`jobs.store = "redis"`): how a job runs once, and how
//! every replica shows, follows and cancels jobs that another one runs.
//!
//! - **Leases.** The replica that takes a submission holds the job from its creation (the
//!   create script records it as the holder, with a lease in Redis's clock) and runs it from
//!   its own queue. [`lease_loop`] renews the leases of every job it holds each third of
//!   `jobs.lease`, and, on the same tick, claims jobs whose lease ran out (their replica died,
//!   or lost Redis for longer than a lease): a claim is one script, so one replica wins. A
//!   claimed job is resumed as at a restart: queued ones run, working ones run again when the
//!   tool is `idempotent` (or the call was known not to have been sent), else fail as
//!   `interrupted`. A replica whose renewal says it lost a job abandons its call without
//!   writing (the version check would refuse its writes anyway). At shutdown the drained
//!   replica ends its leases at once, so survivors take its queued jobs at their next tick.
//! - **Cancel.** A cancel through a replica that does not hold the job sets a flag in Redis
//!   and publishes the id on one channel; the holder ([`cancel_listener`]) cancels at once, or
//!   at its next renewal (a third of the lease) if it missed the message.
//! - **Events.** The holder publishes every state it tells its own followers ([`publish_loop`],
//!   in order); a follower elsewhere subscribes to the job's channel, then reads the record (so
//!   nothing falls between), and re-reads it every [`FOLLOW_POLL`] (pub/sub drops messages
//!   while a connection is down; the record holds every status change). Every follower on a
//!   replica shares one subscription connection (`store::redis_watch`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::JobError;
use super::engine::{EVENT_BUFFER, Engine, until_terminal};
use super::model::{JobId, JobState, Owner};
use super::store::redis::CLAIM_BATCH;
use super::store::redis_watch::Watch;
use super::store::{JobStore, RedisStore, StoreError};
use super::worker::{Recovered, resume};

/// How often a follower on a replica that does not run the job re-reads its record: pub/sub
/// is at-most-once (a message sent while the subscription reconnects is lost), and the record
/// has every status change, so a follower misses at most this much of a terminal state's
/// latency. Two seconds is what pollers of the job API are told to wait anyway.
pub(crate) const FOLLOW_POLL: Duration = Duration::from_secs(2);
/// Wait before subscribing to the cancel channel again after its connection failed: short,
/// since cancels are missed meanwhile (the renewal's flag check still catches them).
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Renews this replica's leases and takes over expired ones, every third of the lease, until
/// the drain is over.
pub(crate) async fn lease_loop(engine: Arc<Engine>) {
    let Some(store) = engine.store.as_redis() else {
        return;
    };
    // Two renewals may fail before the lease runs out.
    let every = store.lease() / 3;
    loop {
        tokio::select! {
            () = engine.halted.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        renew(&engine, store).await;
        // A replica that is shutting down takes on nothing new.
        if !engine.stop.is_cancelled() {
            let _ = take_over(&engine).await;
        }
    }
}

async fn renew(engine: &Arc<Engine>, store: &RedisStore) {
    // Endings that could not be written (Redis was down) first: once stored, the job leaves
    // the leases, so no other replica takes a finished job over.
    for id in engine.live_ids() {
        if let Some(live) = engine.live(id) {
            engine.store_kept_ending(&live).await;
        }
    }
    let ids = engine.live_ids();
    let Ok(renewed) = engine.timed("renew", store.renew(&ids)).await else {
        return;
    };
    for id in renewed.cancel {
        cancel_here(engine, id);
    }
    for id in renewed.lost {
        let Some(live) = engine.live(id) else {
            continue;
        };
        let status = live.state.lock().await.job.status;
        if status.is_terminal() {
            // Its final write failed and it is kept in memory: nothing runs (its ending is
            // written again at the next tick).
            continue;
        }
        tracing::warn!(job = %id, replica = store.replica(), "lease on a job lost to another replica");
        live.lost.cancel();
        if status != super::model::Status::Working && status != super::model::Status::Queued {
            engine.remove_live(id);
        }
    }
}

/// Claims the jobs whose lease ran out and resumes them here; what it did.
pub(crate) async fn take_over(engine: &Engine) -> Result<Recovered, StoreError> {
    let Some(store) = engine.store.as_redis() else {
        return Ok(Recovered::default());
    };
    let mut report = Recovered::default();
    loop {
        let ids = engine
            .timed("claim", store.claim_expired(CLAIM_BATCH))
            .await?;
        let full = ids.len() == CLAIM_BATCH;
        for id in ids {
            if engine.live(id).is_some() {
                // Already this replica's (its renewal failed for a while): it goes on here.
                continue;
            }
            let Some(job) = engine.timed("get", engine.store.get(id)).await? else {
                continue;
            };
            if job.status.is_terminal() {
                continue;
            }
            resume(
                engine,
                job,
                "the replica running the job stopped while it was working",
                &mut report,
            )
            .await?;
        }
        if !full {
            break;
        }
    }
    if report != Recovered::default() {
        tracing::info!(
            replica = store.replica(),
            queued = report.queued,
            rerun = report.rerun,
            interrupted = report.interrupted,
            orphaned = report.orphaned,
            "jobs taken over from replicas whose lease ran out"
        );
    }
    Ok(report)
}

/// Cancels a job this replica holds, for its owner (asked through another replica).
fn cancel_here(engine: &Arc<Engine>, id: JobId) {
    let Some(live) = engine.live(id) else {
        return;
    };
    let engine = engine.clone();
    tokio::spawn(async move {
        let owner = live.state.lock().await.job.owner.clone();
        let _ = engine.cancel(id, &owner, Duration::ZERO).await;
    });
}

/// Listens for cancels asked through other replicas, until the drain is over.
pub(crate) async fn cancel_listener(engine: Arc<Engine>) {
    let Some(store) = engine.store.as_redis() else {
        return;
    };
    loop {
        let subscribed = tokio::select! {
            () = engine.halted.cancelled() => return,
            s = store.cancellations() => s,
        };
        if let Ok(mut ids) = subscribed {
            loop {
                let next = tokio::select! {
                    () = engine.halted.cancelled() => return,
                    next = ids.next() => next,
                };
                match next {
                    Some(id) => cancel_here(&engine, id),
                    None => break,
                }
            }
            tracing::debug!("job cancel subscription lost; subscribing again");
        }
        tokio::select! {
            () = engine.halted.cancelled() => return,
            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}

/// Publishes the states this replica's jobs go through, in order, until the drain is over
/// (then what is left in the buffer).
pub(crate) async fn publish_loop(engine: Arc<Engine>) {
    let Some(store) = engine.store.as_redis() else {
        return;
    };
    let Some(mut states) = engine.to_publish.lock().ok().and_then(|mut rx| rx.take()) else {
        return;
    };
    loop {
        let state = tokio::select! {
            biased;
            state = states.recv() => state,
            () = engine.halted.cancelled() => {
                while let Ok(state) = states.try_recv() {
                    let _ = store.publish(&state).await;
                }
                return;
            }
        };
        let Some(state) = state else { return };
        let _ = store.publish(&state).await;
    }
}

/// Ends this replica's leases at the end of its drain: survivors take the jobs left here
/// (queued, or re-queued at the interruption) at their next scan.
pub(crate) async fn release(engine: &Engine) {
    let Some(store) = engine.store.as_redis() else {
        return;
    };
    let ids = engine.live_ids();
    match engine.timed("release", store.release(&ids)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "job leases released for the other replicas"),
        Err(_) => tracing::warn!(
            "job leases not released; other replicas take the jobs over when they run out"
        ),
    }
}

/// [`Engine::follow`] for a job this replica does not hold: its events come through Redis.
pub(crate) async fn follow_remote(
    engine: &Engine,
    store: &RedisStore,
    id: JobId,
    owner: &Owner,
) -> Result<(JobState, Option<broadcast::Receiver<JobState>>), JobError> {
    // A job that is not there (or not the caller's), or has ended, needs no subscription.
    let state = engine.get(id, owner).await?.state();
    if state.status.is_terminal() {
        return Ok((state, None));
    }
    // Subscribed, then read again: a state published in between is in the subscription.
    let events = engine.timed("subscribe", store.job_events(id)).await?;
    let state = engine.get(id, owner).await?.state();
    if state.status.is_terminal() {
        return Ok((state, None));
    }
    let (tx, rx) = broadcast::channel(EVENT_BUFFER);
    tokio::spawn(forward(engine.store.clone(), events, tx, state.clone()));
    Ok((state, Some(rx)))
}

/// Relays a remote job's published states (and what re-reading its record finds) to the
/// local followers, newest only, until it ends or nobody follows.
async fn forward(
    store: Arc<dyn JobStore>,
    mut watch: Watch,
    tx: broadcast::Sender<JobState>,
    first: JobState,
) {
    let id = first.id;
    let mut last = first.seq;
    let mut poll = tokio::time::interval(FOLLOW_POLL);
    poll.reset();
    let mut subscribed = true;
    loop {
        let state = tokio::select! {
            next = watch.states.recv(), if subscribed => match next {
                Ok(state) => state,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Behind: the record has the latest status.
                    poll.reset_immediately();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The subscription dropped: the record is read on the poll alone.
                    subscribed = false;
                    continue;
                }
            },
            _ = poll.tick() => {
                if tx.receiver_count() == 0 {
                    return;
                }
                match store.get(id).await {
                    Ok(Some(job)) => job.state(),
                    Ok(None) => return,
                    Err(_) => continue,
                }
            }
        };
        if state.seq <= last {
            continue;
        }
        last = state.seq;
        let ended = state.status.is_terminal();
        if tx.send(state).is_err() || ended {
            return;
        }
    }
}

/// [`Engine::cancel`] for a job this replica does not hold: asks its holder through Redis and
/// waits up to `wait` for it to end.
pub(crate) async fn cancel_remote(
    engine: &Engine,
    store: &RedisStore,
    id: JobId,
    owner: &Owner,
    wait: Duration,
) -> Result<JobState, JobError> {
    let (state, rx) = follow_remote(engine, store, id, owner).await?;
    let Some(mut rx) = rx else {
        return Ok(state);
    };
    let job = engine.get(id, owner).await?;
    engine.timed("cancel", store.request_cancel(&job)).await?;
    until_terminal(&mut rx, wait).await;
    Ok(engine.get(id, owner).await?.state())
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
