//! Where jobs are kept: the [`JobStore`] trait and its implementations, [`MemoryStore`]
//! (tests, and operators who choose to lose jobs on restart), [`RedbStore`] (the durable
//! default: an embedded `redb` file in `jobs.data_dir`) and [`RedisStore`] (shared by several
//! replicas).
//!
//! The trait is small on purpose so that a networked store (Redis, for several replicas) can
//! implement it: every operation is a single-key read or write, a compare-and-set on one record's
//! `version`, or a range over a secondary index (owner by creation time, expiry time, unfinished
//! jobs), each of which maps onto a sorted set.

mod memory;
mod redb;
pub(crate) mod redis;
pub(crate) mod redis_watch;

use std::path::PathBuf;

use futures_util::future::BoxFuture;

pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;
pub use self::redis::RedisStore;
use super::model::{Job, JobId, Owner};

/// How durable a write must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fsync'd) before the call returns: submissions, status changes, results.
    Sync,
    /// May be lost in a crash until a later `Sync` write (progress updates: the next one, or the
    /// job's end, supersedes them).
    Lazy,
}

/// Where a listing starts: after this (creation time, id) in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `created_ms` of the last job of the previous page.
    pub created_ms: u64,
    /// Its id (jobs created in the same millisecond are ordered by id).
    pub id: JobId,
}

/// What `create` did.
// Returned once per `create` and moved, never stored in bulk: boxing the job would cost an
// allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The job was stored.
    New,
    /// The job carried an `Idempotency-Key` that the owner already used: nothing was stored, and
    /// this is the job the key names.
    Existing(Job),
}

/// A store's own failure in `op` (I/O, a transaction, Redis), as [`StoreError::Backend`].
fn backend(op: &'static str, message: impl ToString) -> StoreError {
    StoreError::Backend {
        op,
        message: message.to_string(),
    }
}

/// A stored job record (JSON, as every durable store keeps it) read back; one that does not
/// decode is the store's failure, named by `op`.
fn decode(op: &'static str, record: &[u8]) -> Result<super::model::Job, StoreError> {
    serde_json::from_slice(record)
        .map_err(|e| backend(op, format!("a job record does not decode: {e}")))
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `update`'s expected version is not the stored one (someone else wrote the job first).
    #[error("job {0} changed concurrently")]
    Conflict(JobId),
    /// `update` of a job that is not stored (removed by the sweeper, say).
    #[error("job {0} is not stored")]
    NotFound(JobId),
    /// The store file cannot be opened or is not a job store: the sidecar refuses to start
    /// rather than replace it.
    #[error("job store {}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store cannot be reached now (Redis down, its breaker open, no answer in time):
    /// answered 503 with `Retry-After`; nothing was written.
    #[error("job store {op}: unavailable: {message}")]
    Unavailable {
        /// The operation, a metric label.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// The backend failed (I/O error, a record that does not decode).
    #[error("job store {op}: {message}")]
    Backend {
        /// The operation (`create`, `get`, ...), a metric label.
        op: &'static str,
        /// What failed.
        message: String,
    },
}

/// Keeps jobs. All methods are safe to call concurrently.
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new job (its `version` as given). With `job.idempotency` set, atomically: when
    /// the owner already has a job under that key, stores nothing and returns
    /// [`Created::Existing`] with that job (whatever its body: the caller compares fingerprints).
    fn create(&self, job: Job) -> BoxFuture<'_, Result<Created, StoreError>>;

    /// The job with this id, if stored.
    fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>>;

    /// Replaces the stored job when its stored `version` is `expected` (compare-and-set); the
    /// caller has already set `job.version` to a newer value. Index entries follow the record
    /// (a changed expiry, a job that is no longer unfinished).
    fn update(
        &self,
        job: Job,
        expected: u64,
        durability: Durability,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Removes the job and its index entries (its idempotency key included). `false` if it was
    /// not stored.
    fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The owner's jobs on `upstream`, newest first, starting after `after`, at most `limit`.
    fn list(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>>;

    /// Ids of jobs whose `expires_ms` is at or before `now_ms`, soonest first, at most `limit`.
    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>>;

    /// Every job not yet terminal (queued or working), oldest first: what a restart resumes.
    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>>;

    /// The Redis store, shared by several replicas: the engine then holds jobs by leases,
    /// takes over other replicas' expired ones and follows and cancels jobs run elsewhere.
    fn as_redis(&self) -> Option<&RedisStore> {
        None
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
