//! The writer thread of [`RedbStore`](super::RedbStore): group commit. Every write waiting
//! when a commit starts goes into the next transaction; each gets its own answer once that
//! transaction is committed.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use redb::{ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::{
    BY_EXPIRY, BY_OWNER, Created, Durability, IDEMPOTENCY, Id, JOBS, Job, JobId, MAX_BATCH,
    MAX_LAZY_SPAN, StoreError, UNFINISHED, backend, decode,
};

/// A write for the writer thread, with where its answer goes.
pub(super) enum Write {
    Create(Job, oneshot::Sender<Result<Created, StoreError>>),
    Update {
        job: Job,
        expected: u64,
        durability: Durability,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Remove(JobId, oneshot::Sender<Result<bool, StoreError>>),
}

impl Write {
    /// Whether the write must be durable before it is answered (all but lazy updates).
    fn wants_sync(&self) -> bool {
        !matches!(
            self,
            Write::Update {
                durability: Durability::Lazy,
                ..
            }
        )
    }
}

/// The writer thread: takes every write waiting (up to [`MAX_BATCH`]), applies them in one
/// transaction, commits once, answers them all. Ends when the store is dropped, after making
/// the last non-durable commit durable.
pub(super) fn write_loop(db: &redb::Database, queue: &mpsc::Receiver<Write>) {
    // Since when the latest commits are not durable (only lazy writes since the last sync).
    let mut lazy_since: Option<Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = match lazy_since {
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => queue.recv_timeout(MAX_LAZY_SPAN.saturating_sub(since.elapsed())),
        };
        match first {
            Ok(write) => batch.push(write),
            Err(RecvTimeoutError::Timeout) => {
                // Idle with lazy writes not yet on disk: sync them now (or retry a span later).
                lazy_since = if sync(db) { None } else { Some(Instant::now()) };
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let durable = lazy_since.is_some_and(|since| since.elapsed() >= MAX_LAZY_SPAN)
            || batch.iter().any(Write::wants_sync);
        let answers = commit_batch(db, &batch, durable);
        if answers.is_ok() {
            lazy_since = if durable {
                None
            } else {
                lazy_since.or_else(|| Some(Instant::now()))
            };
        }
        answer_all(&mut batch, answers);
    }
    if lazy_since.is_some() {
        sync(db);
    }
}

/// Makes every earlier non-durable commit durable (an empty durable commit). `false` on failure,
/// which is logged.
fn sync(db: &redb::Database) -> bool {
    let result = db
        .begin_write()
        .map_err(redb::Error::from)
        .and_then(|txn| txn.commit().map_err(redb::Error::from));
    if let Err(e) = &result {
        tracing::error!(error = %e, "job store sync failed");
    }
    result.is_ok()
}

/// Each write's own answer, or the error that failed the whole transaction.
type Answers = Result<Vec<Answer>, redb::Error>;

// Lives for one batch and is moved once: its size does not matter, a box per create would.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Created(Result<Created, StoreError>),
    Updated(Result<(), StoreError>),
    Removed(Result<bool, StoreError>),
}

fn commit_batch(db: &redb::Database, batch: &[Write], durable: bool) -> Answers {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    })?;
    let answers = {
        let mut tables = Tables::open(&txn)?;
        let mut answers = Vec::with_capacity(batch.len());
        for write in batch {
            answers.push(match write {
                Write::Create(job, _) => Answer::Created(tables.create(job)?),
                Write::Update { job, expected, .. } => {
                    Answer::Updated(tables.update(job, *expected)?)
                }
                Write::Remove(id, _) => Answer::Removed(tables.remove(*id)?),
            });
        }
        answers
    };
    txn.commit()?;
    Ok(answers)
}

fn answer_all(batch: &mut Vec<Write>, answers: Answers) {
    match answers {
        Ok(answers) => {
            for (write, answer) in batch.drain(..).zip(answers) {
                // A caller that stopped waiting (its future dropped) needs no answer.
                let _ = match (write, answer) {
                    (Write::Create(_, tx), Answer::Created(a)) => tx.send(a).is_ok(),
                    (Write::Update { reply: tx, .. }, Answer::Updated(a)) => tx.send(a).is_ok(),
                    (Write::Remove(_, tx), Answer::Removed(a)) => tx.send(a).is_ok(),
                    _ => false,
                };
            }
        }
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(), "job store commit failed");
            let message = format!("commit failed: {e}");
            for write in batch.drain(..) {
                let _ = match write {
                    Write::Create(_, tx) => tx.send(Err(backend("create", &message))).is_ok(),
                    Write::Update { reply: tx, .. } => {
                        tx.send(Err(backend("update", &message))).is_ok()
                    }
                    Write::Remove(_, tx) => tx.send(Err(backend("remove", &message))).is_ok(),
                };
            }
        }
    }
}

/// The tables of one write transaction. Each method checks before it writes, so a refused write
/// (conflict, not found) changes nothing and the others of the batch still commit; an `Err` of
/// the outer result is a storage failure that fails the whole transaction.
struct Tables<'t> {
    jobs: Table<'t, &'static Id, &'static [u8]>,
    idempotency: Table<'t, (&'static str, &'static str), &'static Id>,
    by_owner: Table<'t, (&'static str, &'static str, u64, &'static Id), ()>,
    by_expiry: Table<'t, (u64, &'static Id), ()>,
    unfinished: Table<'t, (u64, &'static Id), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            jobs: txn.open_table(JOBS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            by_owner: txn.open_table(BY_OWNER)?,
            by_expiry: txn.open_table(BY_EXPIRY)?,
            unfinished: txn.open_table(UNFINISHED)?,
        })
    }

    fn stored(
        &self,
        op: &'static str,
        id: &Id,
    ) -> Result<Option<Result<Job, StoreError>>, redb::Error> {
        Ok(self.jobs.get(id)?.map(|v| decode(op, v.value())))
    }

    fn create(&mut self, job: &Job) -> Result<Result<Created, StoreError>, redb::Error> {
        if let Some(idem) = &job.idempotency {
            let existing = self
                .idempotency
                .get((job.owner.as_str(), idem.key.as_str()))?
                .map(|id| *id.value());
            if let Some(id) = existing
                && let Some(stored) = self.stored("create", &id)?
            {
                return Ok(stored.map(Created::Existing));
            }
        }
        if self.jobs.get(job.id.as_bytes())?.is_some() {
            // 128 random bits do not collide; if they ever did, the first job is kept.
            return Ok(Err(StoreError::Conflict(job.id)));
        }
        let record = match encode("create", job) {
            Ok(record) => record,
            Err(e) => return Ok(Err(e)),
        };
        self.jobs.insert(job.id.as_bytes(), record.as_slice())?;
        self.index(job)?;
        Ok(Ok(Created::New))
    }

    fn update(&mut self, job: &Job, expected: u64) -> Result<Result<(), StoreError>, redb::Error> {
        let old = match self.stored("update", job.id.as_bytes())? {
            None => return Ok(Err(StoreError::NotFound(job.id))),
            Some(Err(e)) => return Ok(Err(e)),
            Some(Ok(old)) => old,
        };
        if old.version != expected {
            return Ok(Err(StoreError::Conflict(job.id)));
        }
        let record = match encode("update", job) {
            Ok(record) => record,
            Err(e) => return Ok(Err(e)),
        };
        self.unindex(&old)?;
        self.jobs.insert(job.id.as_bytes(), record.as_slice())?;
        self.index(job)?;
        Ok(Ok(()))
    }

    fn remove(&mut self, id: JobId) -> Result<Result<bool, StoreError>, redb::Error> {
        let old = match self.stored("remove", id.as_bytes())? {
            None => return Ok(Ok(false)),
            Some(old) => old,
        };
        self.jobs.remove(id.as_bytes())?;
        match old {
            Ok(old) => self.unindex(&old)?,
            // A record that does not decode does not say where its index entries are: look for
            // them (slow, and only for a record no sidecar could read anyway).
            Err(_) => {
                let id = id.as_bytes();
                self.idempotency.retain(|_, v| v != id)?;
                self.by_owner.retain(|k, ()| k.3 != id)?;
                self.by_expiry.retain(|k, ()| k.1 != id)?;
                self.unfinished.retain(|k, ()| k.1 != id)?;
            }
        }
        Ok(Ok(true))
    }

    fn index(&mut self, job: &Job) -> Result<(), redb::Error> {
        let id = job.id.as_bytes();
        if let Some(idem) = &job.idempotency {
            self.idempotency
                .insert((job.owner.as_str(), idem.key.as_str()), id)?;
        }
        self.by_owner.insert(
            (
                job.owner.as_str(),
                job.request.upstream.as_str(),
                job.created_ms,
                id,
            ),
            (),
        )?;
        self.by_expiry.insert((job.expires_ms, id), ())?;
        if !job.status.is_terminal() {
            self.unfinished.insert((job.created_ms, id), ())?;
        }
        Ok(())
    }

    fn unindex(&mut self, job: &Job) -> Result<(), redb::Error> {
        let id = job.id.as_bytes();
        if let Some(idem) = &job.idempotency {
            let key = (job.owner.as_str(), idem.key.as_str());
            // Only the key's own job releases it.
            if self.idempotency.get(key)?.is_some_and(|v| v.value() == id) {
                self.idempotency.remove(key)?;
            }
        }
        self.by_owner.remove((
            job.owner.as_str(),
            job.request.upstream.as_str(),
            job.created_ms,
            id,
        ))?;
        self.by_expiry.remove((job.expires_ms, id))?;
        self.unfinished.remove((job.created_ms, id))?;
        Ok(())
    }
}

fn encode(op: &'static str, job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(job).map_err(|e| backend(op, format!("job {} does not encode: {e}", job.id)))
}
