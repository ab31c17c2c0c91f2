//! [`MemoryStore`]: jobs in this process's memory, lost on restart. For tests, and for operators
//! who choose not to keep jobs across restarts. It keeps the same indexes as the durable store,
//! so the two answer every query alike (the conformance suite in `store_tests.rs` runs against
//! both).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{Created, Cursor, Durability, JobStore, StoreError};
use crate::jobs::model::{Job, JobId, Owner};

/// Jobs in memory. Every operation takes one short lock and never awaits while holding it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<JobId, Job>,
    /// (owner, `Idempotency-Key`) -> the job it names.
    idempotency: HashMap<(Owner, String), JobId>,
    /// (owner, upstream, created_ms, id): iterated backwards for newest first.
    by_owner: BTreeSet<(Owner, String, u64, JobId)>,
    /// (expires_ms, id): soonest first.
    by_expiry: BTreeSet<(u64, JobId)>,
    /// (created_ms, id) of every queued or working job: oldest first.
    unfinished: BTreeSet<(u64, JobId)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-written state behind (every mutation
        // below is infallible once started), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn index(&mut self, job: &Job) {
        if let Some(idem) = &job.idempotency {
            self.idempotency
                .insert((job.owner.clone(), idem.key.clone()), job.id);
        }
        self.by_owner.insert(owner_key(job));
        self.by_expiry.insert((job.expires_ms, job.id));
        if !job.status.is_terminal() {
            self.unfinished.insert((job.created_ms, job.id));
        }
    }

    fn unindex(&mut self, job: &Job) {
        if let Some(idem) = &job.idempotency {
            let key = (job.owner.clone(), idem.key.clone());
            // Only the key's own job releases it.
            if self.idempotency.get(&key) == Some(&job.id) {
                self.idempotency.remove(&key);
            }
        }
        self.by_owner.remove(&owner_key(job));
        self.by_expiry.remove(&(job.expires_ms, job.id));
        self.unfinished.remove(&(job.created_ms, job.id));
    }

    fn create(&mut self, job: Job) -> Result<Created, StoreError> {
        if let Some(idem) = &job.idempotency {
            let key = (job.owner.clone(), idem.key.clone());
            if let Some(existing) = self.idempotency.get(&key).and_then(|id| self.jobs.get(id)) {
                return Ok(Created::Existing(existing.clone()));
            }
        }
        if self.jobs.contains_key(&job.id) {
            // 128 random bits do not collide; if they ever did, the first job is kept.
            return Err(StoreError::Conflict(job.id));
        }
        self.index(&job);
        self.jobs.insert(job.id, job);
        Ok(Created::New)
    }

    fn update(&mut self, job: Job, expected: u64) -> Result<(), StoreError> {
        let Some(stored) = self.jobs.get(&job.id) else {
            return Err(StoreError::NotFound(job.id));
        };
        if stored.version != expected {
            return Err(StoreError::Conflict(job.id));
        }
        let old = stored.clone();
        self.unindex(&old);
        self.index(&job);
        self.jobs.insert(job.id, job);
        Ok(())
    }

    fn remove(&mut self, id: JobId) -> bool {
        match self.jobs.remove(&id) {
            Some(job) => {
                self.unindex(&job);
                true
            }
            None => false,
        }
    }

    fn list(&self, owner: &Owner, upstream: &str, after: Option<Cursor>, limit: usize) -> Vec<Job> {
        let low = (
            owner.clone(),
            upstream.to_owned(),
            0,
            JobId::from_bytes([0; 16]),
        );
        let range = match after {
            Some(c) => self
                .by_owner
                .range(low..(owner.clone(), upstream.to_owned(), c.created_ms, c.id)),
            None => self.by_owner.range(
                low..=(
                    owner.clone(),
                    upstream.to_owned(),
                    u64::MAX,
                    JobId::from_bytes([0xff; 16]),
                ),
            ),
        };
        range
            .rev()
            .filter_map(|(_, _, _, id)| self.jobs.get(id).cloned())
            .take(limit)
            .collect()
    }
}

fn owner_key(job: &Job) -> (Owner, String, u64, JobId) {
    (
        job.owner.clone(),
        job.request.upstream.clone(),
        job.created_ms,
        job.id,
    )
}

impl JobStore for MemoryStore {
    fn create(&self, job: Job) -> BoxFuture<'_, Result<Created, StoreError>> {
        ready(self.lock().create(job)).boxed()
    }

    fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>> {
        ready(Ok(self.lock().jobs.get(&id).cloned())).boxed()
    }

    fn update(
        &self,
        job: Job,
        expected: u64,
        _durability: Durability,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        ready(self.lock().update(job, expected)).boxed()
    }

    fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>> {
        ready(Ok(self.lock().remove(id))).boxed()
    }

    fn list(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        ready(Ok(self.lock().list(&owner, &upstream, after, limit))).boxed()
    }

    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        let inner = self.lock();
        let ids = inner
            .by_expiry
            .range(..=(now_ms, JobId::from_bytes([0xff; 16])))
            .map(|&(_, id)| id)
            .take(limit)
            .collect();
        ready(Ok(ids)).boxed()
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        let inner = self.lock();
        let jobs = inner
            .unfinished
            .iter()
            .filter_map(|(_, id)| inner.jobs.get(id).cloned())
            .collect();
        ready(Ok(jobs)).boxed()
    }
}
