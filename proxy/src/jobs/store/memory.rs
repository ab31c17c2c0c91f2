//! TEMPORARY stub (replaced by the store branch).
use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{Created, Cursor, Durability, JobStore, StoreError};
use crate::jobs::model::{Job, JobId, Owner, Status};

/// Stub.
#[derive(Debug, Default)]
pub struct MemoryStore {
    jobs: Mutex<HashMap<JobId, Job>>,
}

impl MemoryStore {
    /// Stub.
    pub fn new() -> Self {
        Self::default()
    }
}

impl JobStore for MemoryStore {
    fn create(&self, job: Job) -> BoxFuture<'_, Result<Created, StoreError>> {
        let mut m = self.jobs.lock().unwrap();
        if let Some(k) = &job.idempotency {
            if let Some(j) = m.values().find(|j| {
                j.owner == job.owner && j.idempotency.as_ref().map(|i| &i.key) == Some(&k.key)
            }) {
                return ready(Ok(Created::Existing(j.clone()))).boxed();
            }
        }
        m.insert(job.id, job);
        ready(Ok(Created::New)).boxed()
    }
    fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>> {
        ready(Ok(self.jobs.lock().unwrap().get(&id).cloned())).boxed()
    }
    fn update(
        &self,
        job: Job,
        expected: u64,
        _d: Durability,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut m = self.jobs.lock().unwrap();
        let r = match m.get(&job.id) {
            None => Err(StoreError::NotFound(job.id)),
            Some(j) if j.version != expected => Err(StoreError::Conflict(job.id)),
            Some(_) => {
                m.insert(job.id, job);
                Ok(())
            }
        };
        ready(r).boxed()
    }
    fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>> {
        ready(Ok(self.jobs.lock().unwrap().remove(&id).is_some())).boxed()
    }
    fn list(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        let m = self.jobs.lock().unwrap();
        let mut v: Vec<Job> = m
            .values()
            .filter(|j| j.owner == owner && j.request.upstream == upstream)
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_ms, b.id).cmp(&(a.created_ms, a.id)));
        let v = v
            .into_iter()
            .filter(|j| after.is_none_or(|c| (j.created_ms, j.id) < (c.created_ms, c.id)))
            .take(limit)
            .collect();
        ready(Ok(v)).boxed()
    }
    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        let m = self.jobs.lock().unwrap();
        let mut v: Vec<&Job> = m.values().filter(|j| j.expires_ms <= now_ms).collect();
        v.sort_by_key(|j| (j.expires_ms, j.id));
        ready(Ok(v.into_iter().take(limit).map(|j| j.id).collect())).boxed()
    }
    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        let m = self.jobs.lock().unwrap();
        let mut v: Vec<Job> = m
            .values()
            .filter(|j| matches!(j.status, Status::Queued | Status::Working))
            .cloned()
            .collect();
        v.sort_by_key(|j| (j.created_ms, j.id));
        ready(Ok(v)).boxed()
    }
}
