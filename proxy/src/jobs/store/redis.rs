//! [`RedisStore`]: jobs in Redis (`jobs.store = "redis"`), shared by every replica of a
//! Service. Besides the [`JobStore`] operations it keeps the leases by which replicas hold
//! unfinished jobs (see `crate::jobs::replicas` for how they are used).
//!
//! Layout (every key under `redis.key_prefix`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `job:{id}` | hash | `j` the record (JSON), `v` its version, `o` the replica holding it (unfinished) |
//! | `idem:{len(owner)}:{owner}{key}` | string | the id an owner's `Idempotency-Key` names |
//! | `owner:{len(owner)}:{owner}{upstream}` | sorted set | `{created_ms:020}{id}`, all score 0: read backwards by lex order for newest first |
//! | `leases` | sorted set | the unfinished jobs' ids, scored by when their lease runs out (Redis's clock) |
//! | `cancel:{id}` | string | a cancellation asked through another replica |
//!
//! Every key of a job expires with it (`PEXPIRE`, set from the record's `expires_ms`), so Redis
//! removes expired jobs itself and [`JobStore::expired`] has nothing to report: the engine's
//! sweeper finds nothing here. An owner index lives as long as its longest-lived job; entries of
//! jobs Redis dropped are removed when a listing meets them. Each write is one Lua script, so a
//! record and its index entries change together; a compare-and-set is a script too.
//!
//! Scripts name keys they derive (a listing's records), so the store needs one Redis (a primary,
//! with Sentinel or a managed fail-over), not a Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::BoxStream;
use redis::Script;

use super::redis_watch::{Watch, Watches};
use super::{Created, Cursor, Durability, JobStore, StoreError, backend, decode};
use crate::jobs::clock::{Clock, millis};
use crate::jobs::model::{Job, JobId, JobState, Owner};
use crate::redis_conn::{RedisConn, RedisError};

/// Jobs claimed per takeover scan round: bounds one script's run time (Redis runs nothing else
/// meanwhile); the scan repeats while it finds that many.
pub(crate) const CLAIM_BATCH: usize = 100;

/// The store's scripts, loaded once per connection (EVALSHA, EVAL on a miss).
#[derive(Debug)]
struct Scripts {
    create: Script,
    update: Script,
    remove: Script,
    list: Script,
    unfinished: Script,
    renew: Script,
    claim: Script,
    release: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Script::new(include_str!("redis/create.lua")),
            update: Script::new(include_str!("redis/update.lua")),
            remove: Script::new(include_str!("redis/remove.lua")),
            list: Script::new(include_str!("redis/list.lua")),
            unfinished: Script::new(include_str!("redis/unfinished.lua")),
            renew: Script::new(include_str!("redis/renew.lua")),
            claim: Script::new(include_str!("redis/claim.lua")),
            release: Script::new(include_str!("redis/release.lua")),
        }
    }
}

/// What a lease renewal found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Renewed {
    /// Jobs this replica no longer holds (another took them over).
    pub(crate) lost: Vec<JobId>,
    /// Jobs whose owner asked, through another replica, to cancel them.
    pub(crate) cancel: Vec<JobId>,
}

/// Jobs in Redis, and this replica's leases on them.
#[derive(Debug)]
pub struct RedisStore {
    conn: Arc<RedisConn>,
    replica: String,
    lease: Duration,
    clock: Clock,
    scripts: Scripts,
    /// `{prefix}job:`
    job_prefix: String,
    /// `{prefix}cancel:`
    cancel_prefix: String,
    /// `{prefix}leases`
    leases: String,
    /// `{prefix}jobs:cancel`: where cancellations are announced.
    cancel_channel: String,
    /// The followers' shared subscription.
    watches: Arc<Watches>,
}

impl RedisStore {
    /// A store on `conn`, as replica `replica` holding jobs by leases of `lease`.
    pub fn new(conn: Arc<RedisConn>, replica: String, lease: Duration) -> Self {
        Self::with_clock(conn, replica, lease, Clock::new())
    }

    pub(crate) fn with_clock(
        conn: Arc<RedisConn>,
        replica: String,
        lease: Duration,
        clock: Clock,
    ) -> Self {
        Self {
            job_prefix: conn.key("job:"),
            cancel_prefix: conn.key("cancel:"),
            leases: conn.key("leases"),
            cancel_channel: conn.key("jobs:cancel"),
            conn,
            replica,
            lease,
            clock,
            scripts: Scripts::new(),
            watches: Arc::default(),
        }
    }

    /// A random replica id (16 hex digits): who holds a job, in Redis and in the logs.
    pub fn random_replica_id() -> String {
        JobId::random().map_or_else(
            || format!("{:016x}", std::process::id()),
            |id| id.to_string()[..16].to_owned(),
        )
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// How long a lease lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn record_key(&self, id: JobId) -> String {
        format!("{}{id}", self.job_prefix)
    }

    fn idempotency_key(&self, job: &Job) -> String {
        job.idempotency.as_ref().map_or_else(String::new, |idem| {
            let owner = job.owner.as_str();
            self.conn
                .key(&format!("idem:{}:{owner}{}", owner.len(), idem.key))
        })
    }

    fn owner_index(&self, owner: &Owner, upstream: &str) -> String {
        let owner = owner.as_str();
        self.conn
            .key(&format!("owner:{}:{owner}{upstream}", owner.len()))
    }

    /// The record's time to live from now: at least a millisecond (`PEXPIRE 0` would delete it
    /// before the caller could read its answer).
    fn ttl_ms(&self, job: &Job) -> u64 {
        job.expires_ms.saturating_sub(self.clock.now_ms()).max(1)
    }

    /// The channel a job's events are published on.
    fn events_channel(&self, id: JobId) -> String {
        self.conn.key(&format!("job-events:{id}"))
    }

    fn lease_ms(&self) -> u64 {
        millis(self.lease)
    }

    /// Renews this replica's leases on `ids`; see [`Renewed`].
    pub(crate) async fn renew(&self, ids: &[JobId]) -> Result<Renewed, StoreError> {
        if ids.is_empty() {
            return Ok(Renewed::default());
        }
        let mut invocation = self.scripts.renew.key(&self.leases);
        invocation
            .arg(&self.replica)
            .arg(self.lease_ms())
            .arg(&self.job_prefix)
            .arg(&self.cancel_prefix);
        for id in ids {
            invocation.arg(id.to_string());
        }
        let (lost, cancel): (Vec<String>, Vec<String>) = self
            .conn
            .run("jobs_renew", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await
            .map_err(|e| unavailable("renew", &e))?;
        Ok(Renewed {
            lost: parse_ids(&lost),
            cancel: parse_ids(&cancel),
        })
    }

    /// Claims up to `limit` unfinished jobs whose lease ran out; their records.
    pub(crate) async fn claim_expired(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let mut invocation = self.scripts.claim.key(&self.leases);
        invocation
            .arg(&self.replica)
            .arg(self.lease_ms())
            .arg(&self.job_prefix)
            .arg(limit);
        let ids: Vec<String> = self
            .conn
            .run("jobs_claim", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await
            .map_err(|e| unavailable("claim", &e))?;
        Ok(parse_ids(&ids))
    }

    /// Ends this replica's leases on `ids` now (shutdown): survivors take them over at their
    /// next scan. Returns how many were released.
    pub(crate) async fn release(&self, ids: &[JobId]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.scripts.release.key(&self.leases);
        invocation.arg(&self.replica).arg(&self.job_prefix);
        for id in ids {
            invocation.arg(id.to_string());
        }
        self.conn
            .run("jobs_release", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await
            .map_err(|e| unavailable("release", &e))
    }

    /// Asks the replica holding `job` to cancel it: a flag its next lease renewal sees (kept
    /// until the job's deadline), and a message on the cancel channel it hears at once.
    pub(crate) async fn request_cancel(&self, job: &Job) -> Result<(), StoreError> {
        let ttl = job
            .deadline_ms
            .saturating_sub(self.clock.now_ms())
            .max(self.lease_ms());
        let key = format!("{}{}", self.cancel_prefix, job.id);
        let channel = self.cancel_channel.clone();
        let id = job.id.to_string();
        self.conn
            .run("jobs_cancel", |mut conn| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&id)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(|e| unavailable("cancel", &e))
    }

    /// The ids announced on the cancel channel, from now on (a dedicated connection; the
    /// stream ends when it drops).
    pub(crate) async fn cancellations(&self) -> Result<BoxStream<'static, JobId>, StoreError> {
        let mut pubsub = self
            .conn
            .pubsub()
            .await
            .map_err(|e| unavailable("subscribe", &e))?;
        subscribe(&mut pubsub, &self.cancel_channel).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move {
                let id: String = msg.get_payload().ok()?;
                JobId::parse(&id)
            })
            .boxed())
    }

    /// Publishes a job's new state to the followers on other replicas.
    pub(crate) async fn publish(&self, state: &JobState) -> Result<(), StoreError> {
        let payload = serde_json::to_string(state).map_err(|e| backend("publish", e))?;
        let channel = self.events_channel(state.id);
        self.conn
            .run("jobs_publish", |mut conn| async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(|e| unavailable("publish", &e))
    }

    /// A job's states as its holder publishes them, from now on (subscribed when this
    /// returns, so a read of the record after it misses nothing), on this replica's one shared
    /// subscription connection. Its receiver closes if that connection drops.
    pub(crate) async fn job_events(&self, id: JobId) -> Result<Watch, StoreError> {
        self.watches
            .watch(&self.conn, self.events_channel(id))
            .await
            .map_err(|e| unavailable("subscribe", &e))
    }

    async fn run_script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.conn
            .run(op, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await
            .map_err(|e| unavailable(op, &e))
    }

    async fn create_job(&self, job: Job) -> Result<Created, StoreError> {
        let record = encode("create", &job)?;
        let mut invocation = self.scripts.create.key(self.record_key(job.id));
        invocation
            .key(self.idempotency_key(&job))
            .key(self.owner_index(&job.owner, &job.request.upstream))
            .key(&self.leases)
            .arg(record)
            .arg(job.version)
            .arg(self.ttl_ms(&job))
            .arg(owner_member(&job))
            .arg(job.id.to_string())
            .arg(if job.status.is_terminal() { "0" } else { "1" })
            .arg(&self.replica)
            .arg(self.lease_ms())
            .arg(&self.job_prefix);
        let answer: Vec<String> = self.run_script("jobs_create", invocation).await?;
        match answer.first().map(String::as_str) {
            Some("new") => Ok(Created::New),
            Some("existing") => {
                let record = answer.get(1).map_or("", String::as_str);
                Ok(Created::Existing(decode("create", record.as_bytes())?))
            }
            Some("conflict") => Err(StoreError::Conflict(job.id)),
            other => Err(backend("create", format!("unexpected answer {other:?}"))),
        }
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let key = self.record_key(id);
        let record: Option<Vec<u8>> = self
            .conn
            .run("jobs_get", |mut conn| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("j")
                    .query_async(&mut conn)
                    .await
            })
            .await
            .map_err(|e| unavailable("get", &e))?;
        record.map(|r| decode("get", &r)).transpose()
    }

    async fn update_job(&self, job: Job, expected: u64) -> Result<(), StoreError> {
        let record = encode("update", &job)?;
        let mut invocation = self.scripts.update.key(self.record_key(job.id));
        invocation
            .key(self.idempotency_key(&job))
            .key(self.owner_index(&job.owner, &job.request.upstream))
            .key(&self.leases)
            .arg(record)
            .arg(job.version)
            .arg(expected)
            .arg(self.ttl_ms(&job))
            .arg(if job.status.is_terminal() { "1" } else { "0" })
            .arg(job.id.to_string())
            .arg(&self.replica)
            .arg(self.lease_ms());
        let answer: String = self.run_script("jobs_update", invocation).await?;
        match answer.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound(job.id)),
            "conflict" => Err(StoreError::Conflict(job.id)),
            other => Err(backend("update", format!("unexpected answer {other:?}"))),
        }
    }

    async fn remove_job(&self, id: JobId) -> Result<bool, StoreError> {
        let Some(job) = self.get_job(id).await? else {
            return Ok(false);
        };
        let mut invocation = self.scripts.remove.key(self.record_key(id));
        invocation
            .key(self.idempotency_key(&job))
            .key(self.owner_index(&job.owner, &job.request.upstream))
            .key(&self.leases)
            .arg(id.to_string())
            .arg(owner_member(&job));
        let removed: i64 = self.run_script("jobs_remove", invocation).await?;
        Ok(removed == 1)
    }

    async fn list_jobs(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let start = after.map_or_else(
            || "+".to_owned(),
            |c| format!("({:020}{}", c.created_ms, c.id),
        );
        let mut invocation = self.scripts.list.key(self.owner_index(&owner, &upstream));
        invocation.arg(start).arg(limit).arg(&self.job_prefix);
        let records: Vec<Vec<u8>> = self.run_script("jobs_list", invocation).await?;
        records.iter().map(|r| decode("list", r)).collect()
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut invocation = self.scripts.unfinished.key(&self.leases);
        invocation.arg(&self.job_prefix);
        let records: Vec<Vec<u8>> = self.run_script("jobs_unfinished", invocation).await?;
        let mut jobs = records
            .iter()
            .map(|r| decode("unfinished", r))
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| (j.created_ms, j.id));
        Ok(jobs)
    }
}

/// The owner-index member of `job`: creation time (zero-padded, so lex order is time order)
/// then id (ties in one millisecond, ordered by id as the other stores do).
fn owner_member(job: &Job) -> String {
    format!("{:020}{}", job.created_ms, job.id)
}

async fn subscribe(pubsub: &mut redis::aio::PubSub, channel: &str) -> Result<(), StoreError> {
    pubsub.subscribe(channel).await.map_err(|source| {
        unavailable(
            "subscribe",
            &RedisError::Command {
                op: "subscribe",
                source,
            },
        )
    })
}

fn parse_ids(ids: &[String]) -> Vec<JobId> {
    ids.iter().filter_map(|id| JobId::parse(id)).collect()
}

fn encode(op: &'static str, job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(job).map_err(|e| backend(op, e))
}

/// Redis did not answer (down, breaker open, deadline): the store is unavailable, which the
/// job API answers with 503 and `Retry-After`.
fn unavailable(op: &'static str, e: &RedisError) -> StoreError {
    StoreError::Unavailable {
        op,
        message: e.to_string(),
    }
}

impl JobStore for RedisStore {
    fn create(&self, job: Job) -> BoxFuture<'_, Result<Created, StoreError>> {
        self.create_job(job).boxed()
    }

    fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>> {
        self.get_job(id).boxed()
    }

    fn update(
        &self,
        job: Job,
        expected: u64,
        // Every write is as durable as Redis's own configuration makes it (AOF,
        // `appendfsync`): the operator's choice, documented in OPERATIONS.md.
        _durability: Durability,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.update_job(job, expected).boxed()
    }

    fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.remove_job(id).boxed()
    }

    fn list(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        self.list_jobs(owner, upstream, after, limit).boxed()
    }

    fn expired(
        &self,
        _now_ms: u64,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        // Redis expires every key of a job itself: nothing is left for the sweeper.
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        self.unfinished_jobs().boxed()
    }

    fn as_redis(&self) -> Option<&RedisStore> {
        Some(self)
    }
}
