//! What only the durable store promises: jobs outlive the process (a clean close and a crash),
//! foreign files are refused and left alone, and concurrent writes grouped into one commit each
//! get their own answer.

use std::time::Instant;

use ::redb::{ReadableDatabase, ReadableTable, TableHandle};

use super::*;

#[tokio::test]
async fn jobs_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let store = redb_at(&path);
    let kept = stored(&store, with_key(job("api_key:a", "tools", 1_000), "k1")).await;
    let gone = stored(&store, job("api_key:a", "tools", 2_000)).await;
    let done = changed(&kept, |j| j.status = Status::Completed);
    store
        .update(done.clone(), 1, Durability::Sync)
        .await
        .unwrap();
    assert!(store.remove(gone.id).await.unwrap());
    drop(store);

    let store = redb_at(&path);
    assert_eq!(store.get(kept.id).await.unwrap(), Some(done.clone()));
    assert_eq!(store.get(gone.id).await.unwrap(), None);
    assert!(store.unfinished().await.unwrap().is_empty());
    let again = with_key(job("api_key:a", "tools", 3_000), "k1");
    assert_eq!(store.create(again).await.unwrap(), Created::Existing(done));
}

#[tokio::test]
async fn a_file_that_is_not_a_redb_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Open { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("jobs.redb"), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == garbage,
        "the file was changed"
    );
    // A file too short to hold redb's header is not taken for an empty one either.
    std::fs::write(&path, b"x").unwrap();
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Open { .. })
    ));
    assert!(
        std::fs::read(&path).unwrap() == b"x",
        "the file was changed"
    );
}

#[tokio::test]
async fn a_corrupt_store_is_refused_not_trusted_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    {
        let store = redb_at(&path);
        for i in 0..50 {
            stored(&store, job("api_key:a", "tools", i)).await;
        }
    }
    // Keep redb's header page, damage every page after it: a plain open would trust the file.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[4096..] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Open { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_redb_database_of_something_else_is_refused_and_its_data_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    let notes: ::redb::TableDefinition<&str, &str> = ::redb::TableDefinition::new("notes");
    {
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(notes).unwrap().insert("a", "b").unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a job store"), "{err}");
    // redb's own open writes its header, so the bytes may change; the data may not, and no job
    // table is added.
    let db = ::redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(tables, ["notes"]);
    let table = txn.open_table(notes).unwrap();
    assert_eq!(table.get("a").unwrap().unwrap().value(), "b");
}

#[tokio::test]
async fn a_store_already_open_is_refused_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let _store = redb_at(&path);
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn open_creates_private_directories_and_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/jobs/jobs.redb");
    let store = redb_at(&path);
    stored(&store, job("api_key:a", "tools", 1)).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/jobs")), 0o700);
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_all_land_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(redb_at(&dir.path().join("jobs.redb")));
    // One job that every task races to update from the same version: exactly one wins.
    let contested = stored(&*store, job("api_key:a", "tools", 0)).await;
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let store = Arc::clone(&store);
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut keyed = Vec::new();
            for i in 0..25u64 {
                let fresh = job("api_key:a", "tools", task * 100 + i);
                assert_eq!(store.create(fresh.clone()).await.unwrap(), Created::New);
                mine.push(fresh);
                // Every task submits under the same five keys: one job per key is stored.
                let keyed_job = with_key(job("api_key:k", "tools", task), &format!("k{}", i % 5));
                keyed.push((keyed_job.id, store.create(keyed_job).await.unwrap()));
            }
            let win = changed(&contested, |j| j.seq = task);
            let won = store.update(win, 1, Durability::Sync).await;
            assert!(
                matches!(won, Ok(()) | Err(StoreError::Conflict(_))),
                "{won:?}"
            );
            (mine, keyed, won.is_ok())
        }));
    }
    let mut created = Vec::new();
    let mut keyed = Vec::new();
    let mut winners = 0;
    for task in tasks {
        let (mine, k, won) = task.await.unwrap();
        created.extend(mine);
        keyed.extend(k);
        winners += usize::from(won);
    }
    assert_eq!(winners, 1);
    for job in &created {
        assert_eq!(store.get(job.id).await.unwrap().as_ref(), Some(job));
    }
    let new: Vec<JobId> = keyed
        .iter()
        .filter(|(_, c)| *c == Created::New)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(new.len(), 5, "one new job per key");
    for (id, answer) in &keyed {
        match answer {
            Created::New => assert!(store.get(*id).await.unwrap().is_some()),
            Created::Existing(first) => {
                assert!(new.contains(&first.id));
                assert_eq!(store.get(*id).await.unwrap(), None);
            }
        }
    }
    let listed = store
        .list(Owner::new("api_key:a"), "tools".to_owned(), None, 1_000)
        .await
        .unwrap();
    assert_eq!(listed.len(), created.len() + 1);
}

const CRASH_DIR: &str = "MCP_SIDECAR_TEST_CRASH_DIR";
const CRASH_JOBS: u8 = 40;

/// The child of `jobs_acknowledged_as_durable_survive_a_crash`: writes, then dies without any
/// cleanup (abort, like `kill -9`: no destructors, no close).
#[tokio::test]
#[ignore = "run only as the child process of a crash test"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let store = redb_at(&Path::new(&dir).join("jobs.redb"));
    for i in 0..CRASH_JOBS {
        let mut j = job("api_key:a", "tools", u64::from(i));
        j.id = JobId::from_bytes([i; 16]);
        stored(&store, j.clone()).await;
        // Lazy writes in between leave non-durable commits for the repair to discard.
        let progressed = changed(&j, |j| j.seq = 1);
        store.update(progressed, 1, Durability::Lazy).await.unwrap();
    }
    println!("crash child wrote {CRASH_JOBS} jobs");
    std::process::abort();
}

#[test]
fn jobs_acknowledged_as_durable_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "jobs::store::tests::redb_tests::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("crash child wrote"),
        "child did not run: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the child was meant to abort");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = redb_at(&dir.path().join("jobs.redb"));
        let unfinished = store.unfinished().await.unwrap();
        assert_eq!(unfinished.len(), usize::from(CRASH_JOBS));
        for i in 0..CRASH_JOBS {
            let id = JobId::from_bytes([i; 16]);
            let job = store.get(id).await.unwrap().unwrap();
            // The creation was durable; its lazy update may or may not have been.
            assert!(job.version == 1 || job.version == 2, "{job:?}");
        }
        // And the repaired file takes writes.
        stored(&store, job("api_key:a", "tools", 99)).await;
    });
}

/// Throughput of `create` with `Durability::Sync`: `cargo test -p mcp-sidecar --release --lib
/// redb_sync_create_throughput -- --ignored --nocapture`. Prints figures; asserts nothing about
/// speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn redb_sync_create_throughput() {
    let dir = std::env::var_os("JOB_STORE_BENCH_DIR").map_or_else(
        || tempfile::tempdir().unwrap(),
        |d| tempfile::tempdir_in(d).unwrap(),
    );
    let store = Arc::new(redb_at(&dir.path().join("jobs.redb")));

    let single = 200;
    let start = Instant::now();
    for i in 0..single {
        stored(&*store, job("api_key:a", "tools", i)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "one at a time: {single} creates in {elapsed:?}: {:?} per commit, {:.0} creates/s",
        elapsed / u32::try_from(single).unwrap(),
        single as f64 / elapsed.as_secs_f64()
    );

    for (tasks, per_task) in [(4u64, 2_000u64), (64, 250), (256, 100)] {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let j = job(&format!("api_key:{t}"), "tools", i);
                        store.create(j).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let elapsed = start.elapsed();
        let total = tasks * per_task;
        println!(
            "{tasks} tasks x {per_task}: {total} creates in {elapsed:?}: {:.0} creates/s",
            total as f64 / elapsed.as_secs_f64()
        );
    }

    // A job's life: create, then two Sync updates (working, completed), 64 at a time.
    let start = Instant::now();
    let handles: Vec<_> = (0..64u64)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..100 {
                    let v1 = stored(&*store, job(&format!("api_key:{t}"), "tools", i)).await;
                    let v2 = changed(&v1, |j| j.status = Status::Working);
                    store.update(v2.clone(), 1, Durability::Sync).await.unwrap();
                    let v3 = changed(&v2, |j| j.status = Status::Completed);
                    store.update(v3, 2, Durability::Sync).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "64 tasks x 100 jobs (create + 2 updates, all Sync): {:.0} jobs/s",
        6_400.0 / elapsed.as_secs_f64()
    );
}
