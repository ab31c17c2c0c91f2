//! What only the Redis store promises: keys that expire with their job, leases that exactly one
//! replica can claim once they run out, released leases, cancel flags seen at renewal, and a
//! Redis that is down answered as unavailable, at once. Each test runs its own `redis-server`
//! (skipped without one outside CI, failed under CI: the same rule as the e2e tests').

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;
use crate::config::RedisConfig;
use crate::jobs::clock::Clock;
use crate::redis_conn::RedisConn;

/// How long a starting server has to answer (bounded: a broken install fails the test).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` of the test's own, killed on drop.
pub(crate) struct TestRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    pub(crate) fn start() -> Option<Self> {
        let binary = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let spawned = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server not found ({e}): run scripts/test-deps.sh (or set REDIS_SERVER)"
                );
                eprintln!("skipped: redis-server not found (scripts/test-deps.sh installs it)");
                return None;
            }
        };
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(server)
    }

    pub(crate) fn conn(&self) -> Arc<RedisConn> {
        conn(&format!("redis://127.0.0.1:{}", self.port))
    }

    /// A store as replica `replica`, leases of an hour, on a clock that reads 0 now (the suite's
    /// timestamps are small numbers; expiries are relative to it).
    pub(crate) fn store(&self, replica: &str) -> RedisStore {
        self.store_with_lease(replica, Duration::from_secs(3600))
    }

    pub(crate) fn store_with_lease(&self, replica: &str, lease: Duration) -> RedisStore {
        RedisStore::with_clock(self.conn(), replica.to_owned(), lease, Clock::at(0))
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conn(url: &str) -> Arc<RedisConn> {
    let config: RedisConfig =
        toml::from_str(&format!("url = \"{url}\"\ncommand_timeout = \"2s\"")).unwrap();
    RedisConn::new(&config, &prometheus::Registry::new()).unwrap()
}

async fn pttl(conn: &RedisConn, key: &str) -> i64 {
    let key = key.to_owned();
    conn.run("pttl", |mut c| async move {
        ::redis::cmd("PTTL")
            .arg(&key)
            .query_async::<i64>(&mut c)
            .await
    })
    .await
    .unwrap()
}

fn job_at(owner: &str, expires_ms: u64) -> Job {
    let mut job = super::job(owner, "tools", 0);
    job.expires_ms = expires_ms;
    job
}

#[tokio::test]
async fn every_key_of_a_job_expires_with_it_in_redis_not_by_a_sweep() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let store = server.store("a");
    let conn = server.conn();
    let job = super::with_key(job_at("api_key:a", 60_000), "k1");
    stored(&store, job.clone()).await;
    for key in [
        format!("mcp-sidecar:job:{}", job.id),
        "mcp-sidecar:idem:9:api_key:ak1".to_owned(),
        "mcp-sidecar:owner:9:api_key:atools".to_owned(),
    ] {
        let ttl = pttl(&conn, &key).await;
        assert!((1..=60_000).contains(&ttl), "{key}: {ttl}");
    }
    // A longer life moves every expiry.
    let longer = changed(&job, |j| j.expires_ms = 600_000);
    store.update(longer, 1, Durability::Sync).await.unwrap();
    let ttl = pttl(&conn, &format!("mcp-sidecar:job:{}", job.id)).await;
    assert!(ttl > 60_000, "{ttl}");
    assert!(store.expired(u64::MAX, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_listing_skips_and_drops_entries_of_jobs_redis_expired() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let store = server.store("a");
    let kept = stored(&store, super::job("api_key:a", "tools", 1)).await;
    let gone = stored(&store, super::job("api_key:a", "tools", 2)).await;
    let key = format!("mcp-sidecar:job:{}", gone.id);
    server
        .conn()
        .run("del", |mut c| async move {
            ::redis::cmd("DEL")
                .arg(&key)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .unwrap();
    let page = store
        .list(Owner::new("api_key:a"), "tools".to_owned(), None, 1)
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        [kept.id],
        "a full page despite the expired entry"
    );
}

#[tokio::test]
async fn exactly_one_replica_claims_a_job_whose_lease_ran_out() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    // A lease of zero has run out as soon as it is taken.
    let a = server.store_with_lease("a", Duration::ZERO);
    let b = server.store("b");
    let c = server.store("c");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    let (by_b, by_c) = tokio::join!(b.claim_expired(10), c.claim_expired(10));
    let mut claims = by_b.unwrap();
    claims.extend(by_c.unwrap());
    assert_eq!(claims, [job.id]);
    // The first holder learns it lost the job; the new one renews it.
    assert_eq!(a.renew(&[job.id]).await.unwrap().lost, [job.id]);
    let winner = if b.renew(&[job.id]).await.unwrap().lost.is_empty() {
        &b
    } else {
        &c
    };
    assert!(winner.renew(&[job.id]).await.unwrap().lost.is_empty());
    assert!(winner.claim_expired(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_live_lease_is_not_claimed_and_a_released_one_is_at_once() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let a = server.store("a");
    let b = server.store("b");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    assert!(b.claim_expired(10).await.unwrap().is_empty());
    // Only the holder releases.
    assert_eq!(b.release(&[job.id]).await.unwrap(), 0);
    assert_eq!(a.release(&[job.id]).await.unwrap(), 1);
    assert_eq!(b.claim_expired(10).await.unwrap(), [job.id]);
}

#[tokio::test]
async fn a_finished_job_holds_no_lease() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let a = server.store_with_lease("a", Duration::ZERO);
    let b = server.store("b");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    let done = changed(&job, |j| j.status = Status::Completed);
    a.update(done, 1, Durability::Sync).await.unwrap();
    assert!(b.claim_expired(10).await.unwrap().is_empty());
    assert!(a.unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cancel_asked_through_another_replica_is_seen_at_the_holders_renewal() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let a = server.store("a");
    let b = server.store("b");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    assert!(a.renew(&[job.id]).await.unwrap().cancel.is_empty());
    let mut heard = a.cancellations().await.unwrap();
    b.request_cancel(&job).await.unwrap();
    assert_eq!(
        tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut heard)
        )
        .await
        .unwrap(),
        Some(job.id)
    );
    assert_eq!(a.renew(&[job.id]).await.unwrap().cancel, [job.id]);
}

#[tokio::test]
async fn a_published_state_reaches_a_subscriber_on_another_replica() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let a = server.store("a");
    let b = server.store("b");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    let mut first = b.job_events(job.id).await.unwrap();
    let mut second = b.job_events(job.id).await.unwrap();
    let mut state = job.state();
    state.seq = 9;
    a.publish(&state).await.unwrap();
    for watch in [&mut first, &mut second] {
        let got = tokio::time::timeout(Duration::from_secs(5), watch.states.recv())
            .await
            .unwrap();
        assert_eq!(got.unwrap(), state);
    }
    // One subscription connection for every follower on a replica, and the job's channel is
    // left once the last follower leaves.
    let clients = |conn: Arc<RedisConn>| async move {
        conn.run("numsub", |mut c| async move {
            ::redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(format!("mcp-sidecar:job-events:{}", job.id))
                .query_async::<(String, i64)>(&mut c)
                .await
        })
        .await
        .unwrap()
        .1
    };
    assert_eq!(clients(server.conn()).await, 1);
    drop(first);
    assert_eq!(clients(server.conn()).await, 1);
    drop(second);
    for _ in 0..200 {
        if clients(server.conn()).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the channel is still subscribed after its last follower left");
}

#[tokio::test]
async fn a_redis_that_is_down_is_unavailable_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::with_clock(
        conn(&format!("redis://127.0.0.1:{port}")),
        "a".to_owned(),
        Duration::from_secs(10),
        Clock::at(0),
    );
    let started = std::time::Instant::now();
    let err = store
        .create(super::job("api_key:a", "tools", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    let err = store.get(JobId::random().unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The cost of a submission's store write with each store, in one run (BENCHMARKS.md, "Job
/// store on Redis"): `cargo test --release -p mcp-sidecar --lib redis_create_cost -- --ignored
/// --nocapture`. Redis runs with AOF and `appendfsync always`, as redb fsyncs every commit.
/// Prints figures; asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn redis_create_cost() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let conn = server.conn();
    conn.run("config", |mut c| async move {
        ::redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("yes")
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg("always")
            .ignore()
            .query_async::<()>(&mut c)
            .await
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<(&str, Arc<dyn JobStore>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "redb",
            Arc::new(super::redb_at(&dir.path().join("jobs.redb"))),
        ),
        ("redis", Arc::new(server.store("a"))),
    ];
    for (name, store) in &stores {
        let single = 500u32;
        let start = std::time::Instant::now();
        for i in 0..single {
            stored(&**store, super::job("api_key:a", "tools", u64::from(i))).await;
        }
        let one = start.elapsed() / single;
        let (tasks, per_task) = (64u64, 100u64);
        let start = std::time::Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let j = super::job(&format!("api_key:{t}"), "tools", i);
                        store.create(j).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let rate = (tasks * per_task) as f64 / start.elapsed().as_secs_f64();
        println!(
            "{name}: {one:?} per create one at a time; {rate:.0} creates/s from {tasks} tasks"
        );
    }
}

#[tokio::test]
async fn a_renewal_after_a_release_does_not_take_the_job_back() {
    let Some(server) = TestRedis::start() else {
        return;
    };
    let a = server.store("a");
    let b = server.store("b");
    let job = stored(&a, super::job("api_key:a", "tools", 0)).await;
    assert_eq!(a.release(&[job.id]).await.unwrap(), 1);
    assert_eq!(a.renew(&[job.id]).await.unwrap().lost, [job.id]);
    assert_eq!(b.claim_expired(10).await.unwrap(), [job.id]);
}
