//! [`RedbStore`]: the durable job store, an embedded `redb` file.
//!
//! One table holds the records (id -> JSON of the [`Job`]); four index tables hold the
//! idempotency keys, each owner's jobs by creation time, expiry times and the unfinished jobs.
//! Every write changes the record and its index entries in one transaction, so the indexes never
//! disagree with the records, not even after a crash.
//!
//! Writes go through one writer thread that commits them in groups: an fsync costs milliseconds
//! whatever it carries, so every write waiting when a commit starts shares the next one (group
//! commit). A write is acknowledged after the commit that carries it, durable (fsync'd) when any
//! write of the group asked for [`Durability::Sync`]. Reads run on tokio's blocking pool, each in
//! its own read transaction (a consistent snapshot that never waits for the writer).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use tokio::sync::oneshot;

use self::writer::{Write, write_loop};
use super::{Created, Cursor, Durability, JobStore, StoreError, backend, decode};
use crate::jobs::model::{Job, JobId, Owner};

mod writer;

type Id = [u8; 16];

/// id -> the job as JSON.
const JOBS: TableDefinition<&Id, &[u8]> = TableDefinition::new("jobs");
/// (owner, `Idempotency-Key`) -> id.
const IDEMPOTENCY: TableDefinition<(&str, &str), &Id> = TableDefinition::new("idempotency");
/// (owner, upstream, created_ms, id): read backwards for newest first.
const BY_OWNER: TableDefinition<(&str, &str, u64, &Id), ()> = TableDefinition::new("by_owner");
/// (expires_ms, id): soonest first.
const BY_EXPIRY: TableDefinition<(u64, &Id), ()> = TableDefinition::new("by_expiry");
/// (created_ms, id) of every queued or working job: oldest first.
const UNFINISHED: TableDefinition<(u64, &Id), ()> = TableDefinition::new("unfinished");
/// "format" -> [`FORMAT`]: marks the file as a job store, and which layout it has.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The layout of the tables above. A file with another number is refused, not rewritten.
const FORMAT: u64 = 1;

/// How many writes one commit carries at most. An fsync costs about the same for 1 or 256
/// small records, so a large group is nearly free; the bound keeps one transaction's dirty pages
/// (and the wait of the first write in it) small.
const MAX_BATCH: usize = 256;

/// The longest run of non-durable commits (only [`Durability::Lazy`] writes): a progress update
/// is then lost at most this long after it was acknowledged, and redb can reclaim the pages that
/// non-durable commits freed (it only does so after a durable one).
const MAX_LAZY_SPAN: Duration = Duration::from_secs(1);

/// redb's page cache. Its default (1 GiB) is far more than a job store needs: the hot pages are
/// the indexes and the recent records.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Jobs in a `redb` file. Dropping it stops the writer thread after the writes already sent and
/// closes the file (blocking for at most one commit).
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<redb::Database>,
    path: PathBuf,
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
}

impl RedbStore {
    /// Opens the store at `path`, creating the file (and its directories, mode 0700) if missing.
    /// After an unclean shutdown redb repairs the file here. A file redb cannot open (not redb,
    /// corrupt, another format version, locked by another process, unreadable) is an error naming
    /// it, and is never replaced, truncated or written; a redb database that is not a job store is
    /// refused with its tables unchanged (redb's open itself updates the file's header).
    /// Blocking (it reads the whole file to check its integrity): call it at start-up or on the
    /// blocking pool.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        create_file(path).map_err(fail)?;
        let db = redb::Database::builder()
            // A plain open trusts the file and may panic on one altered outside redb; the check
            // turns that into an error (it reads the whole file, once, at start-up).
            .set_check_integrity_on_open(true)
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| fail(e.to_string()))?;
        init_tables(&db).map_err(fail)?;
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("job-store-writer".to_owned())
            .spawn({
                let db = Arc::clone(&db);
                move || write_loop(&db, &queue)
            })
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db,
            path: path.to_owned(),
            writes: Some(writes),
            writer: Some(writer),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a write to the writer thread and waits for its answer.
    fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .writes
            .as_ref()
            .is_some_and(|w| w.send(make(reply)).is_ok());
        async move {
            if !sent {
                return Err(backend(op, "the writer thread has stopped"));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(backend(op, "the writer thread has stopped")))
        }
        .boxed()
    }

    /// Runs `read` in a read transaction on the blocking pool.
    fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let db = Arc::clone(&self.db);
        async move {
            tokio::task::spawn_blocking(move || {
                let txn = db.begin_read().map_err(|e| backend(op, e))?;
                read(&txn)
            })
            .await
            .unwrap_or_else(|e| Err(backend(op, e)))
        }
        .boxed()
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop once it has answered what was sent; joining
        // it means the file is closed (and its lock released) when the drop returns.
        self.writes = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "job store writer thread panicked");
        }
    }
}

/// Creates the directories (0700: job records hold the callers' requests) and an empty file
/// (0600) when missing, which redb then initializes. An existing file is not touched here.
fn create_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the file: {e}")),
    }
}

/// Checks that the file is a job store of this format (or a new, empty database) and creates
/// the tables. A database with other tables and no marker is someone else's: refused.
fn init_tables(db: &redb::Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(|e| e.to_string())?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.iter().any(|t| t == META.name()) {
        let meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let format = meta
            .get("format")
            .map_err(|e| e.to_string())?
            .map(|v| v.value());
        if format != Some(FORMAT) {
            return Err(format!(
                "job store format {format:?}, this sidecar reads format {FORMAT}"
            ));
        }
    } else if !tables.is_empty() {
        return Err(format!(
            "not a job store (a redb file with the tables {tables:?})"
        ));
    } else {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert("format", FORMAT).map_err(|e| e.to_string())?;
    }
    let opened = txn
        .open_table(JOBS)
        .map(drop)
        .and_then(|()| txn.open_table(IDEMPOTENCY).map(drop))
        .and_then(|()| txn.open_table(BY_OWNER).map(drop))
        .and_then(|()| txn.open_table(BY_EXPIRY).map(drop))
        .and_then(|()| txn.open_table(UNFINISHED).map(drop));
    opened.map_err(|e| format!("not a job store of format {FORMAT}: {e}"))?;
    txn.commit().map_err(|e| e.to_string())
}

/// Reads the job with this id in a read transaction.
fn read_job(
    op: &'static str,
    jobs: &impl ReadableTable<&'static Id, &'static [u8]>,
    id: &Id,
) -> Result<Option<Job>, StoreError> {
    match jobs.get(id).map_err(|e| backend(op, e))? {
        Some(record) => decode(op, record.value()).map(Some),
        None => Ok(None),
    }
}

impl JobStore for RedbStore {
    fn create(&self, job: Job) -> BoxFuture<'_, Result<Created, StoreError>> {
        self.write("create", |tx| Write::Create(job, tx))
    }

    fn get(&self, id: JobId) -> BoxFuture<'_, Result<Option<Job>, StoreError>> {
        self.read("get", move |txn| {
            let jobs = txn.open_table(JOBS).map_err(|e| backend("get", e))?;
            read_job("get", &jobs, id.as_bytes())
        })
    }

    fn update(
        &self,
        job: Job,
        expected: u64,
        durability: Durability,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write("update", |tx| Write::Update {
            job,
            expected,
            durability,
            reply: tx,
        })
    }

    fn remove(&self, id: JobId) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.write("remove", |tx| Write::Remove(id, tx))
    }

    fn list(
        &self,
        owner: Owner,
        upstream: String,
        after: Option<Cursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        const OP: &str = "list";
        self.read(OP, move |txn| {
            let jobs = txn.open_table(JOBS).map_err(|e| backend(OP, e))?;
            let by_owner = txn.open_table(BY_OWNER).map_err(|e| backend(OP, e))?;
            let (owner, upstream) = (owner.as_str(), upstream.as_str());
            let low = (owner, upstream, 0, &[0; 16]);
            let cursor_id;
            let range = match after {
                Some(c) => {
                    cursor_id = *c.id.as_bytes();
                    by_owner.range(low..(owner, upstream, c.created_ms, &cursor_id))
                }
                None => by_owner.range(low..=(owner, upstream, u64::MAX, &[0xff; 16])),
            };
            let mut out = Vec::new();
            for entry in range.map_err(|e| backend(OP, e))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(|e| backend(OP, e))?;
                if let Some(job) = read_job(OP, &jobs, key.value().3)? {
                    out.push(job);
                }
            }
            Ok(out)
        })
    }

    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        const OP: &str = "expired";
        self.read(OP, move |txn| {
            let by_expiry = txn.open_table(BY_EXPIRY).map_err(|e| backend(OP, e))?;
            let range = by_expiry
                .range(..=(now_ms, &[0xff; 16]))
                .map_err(|e| backend(OP, e))?;
            range
                .take(limit)
                .map(|entry| {
                    let (key, _) = entry.map_err(|e| backend(OP, e))?;
                    Ok(JobId::from_bytes(*key.value().1))
                })
                .collect()
        })
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        const OP: &str = "unfinished";
        self.read(OP, move |txn| {
            let jobs = txn.open_table(JOBS).map_err(|e| backend(OP, e))?;
            let unfinished = txn.open_table(UNFINISHED).map_err(|e| backend(OP, e))?;
            let mut out = Vec::new();
            for entry in unfinished.iter().map_err(|e| backend(OP, e))? {
                let (key, _) = entry.map_err(|e| backend(OP, e))?;
                if let Some(job) = read_job(OP, &jobs, key.value().1)? {
                    out.push(job);
                }
            }
            Ok(out)
        })
    }
}
