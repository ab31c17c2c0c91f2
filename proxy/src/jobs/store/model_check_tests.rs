//! Random operation sequences run against the redb store, and the Redis store, and the memory
//! store (the model): every answer, and every index read at the end, must agree.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Create {
        owner: u8,
        upstream: u8,
        created_ms: u64,
        expires_ms: u64,
        key: Option<u8>,
        terminal: bool,
    },
    Update {
        target: usize,
        stale: bool,
        expires_ms: u64,
        terminal: bool,
        lazy: bool,
    },
    Remove {
        target: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 0..2u8, 0..4u64, 0..6u64, proptest::option::of(0..3u8), any::<bool>())
            .prop_map(|(owner, upstream, created_ms, expires_ms, key, terminal)| Op::Create {
                owner, upstream, created_ms, expires_ms, key, terminal,
            }),
        2 => (any::<usize>(), any::<bool>(), 0..6u64, any::<bool>(), any::<bool>())
            .prop_map(|(target, stale, expires_ms, terminal, lazy)| Op::Update {
                target, stale, expires_ms, terminal, lazy,
            }),
        1 => any::<usize>().prop_map(|target| Op::Remove { target }),
    ]
}

const OWNERS: [&str; 3] = ["api_key:a", "api_key:b", "jwt:i:a"];
const UPSTREAMS: [&str; 2] = ["tools", "search"];

fn status(terminal: bool) -> Status {
    if terminal {
        Status::Completed
    } else {
        Status::Queued
    }
}

/// How a store under test keeps expiry.
#[derive(Clone, Copy)]
enum Expiry {
    /// In an index `expired` reads (memory, redb): compared with the model.
    Indexed,
    /// Redis's own key expiry: every expiry is moved an hour ahead (Redis would drop a record
    /// of the small timestamps here at once) and `expired`, always empty, is not compared.
    Redis,
}

impl Expiry {
    fn shift(self, expires_ms: u64) -> u64 {
        match self {
            Expiry::Indexed => expires_ms,
            Expiry::Redis => expires_ms + 3_600_000,
        }
    }
}

async fn run(ops: Vec<Op>, model: &MemoryStore, store: &dyn JobStore, expiry: Expiry) {
    // Every job ever submitted (stored or not), so updates and removes also hit unknown ids.
    let mut submitted: Vec<Job> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Create {
                owner,
                upstream,
                created_ms,
                expires_ms,
                key,
                terminal,
            } => {
                let mut j = job(
                    OWNERS[usize::from(owner)],
                    UPSTREAMS[usize::from(upstream)],
                    created_ms,
                );
                // Ids in submission order, but not in creation-time order.
                j.id = JobId::from_bytes([u8::try_from(n).unwrap_or(u8::MAX); 16]);
                j.expires_ms = expiry.shift(expires_ms);
                j.status = status(terminal);
                if let Some(k) = key {
                    j = with_key(j, &format!("k{k}"));
                }
                let want = model.create(j.clone()).await.unwrap();
                assert_eq!(store.create(j.clone()).await.unwrap(), want);
                submitted.push(j);
            }
            Op::Update {
                target,
                stale,
                expires_ms,
                terminal,
                lazy,
            } => {
                let Some(base) = submitted.get(target % submitted.len().max(1)) else {
                    continue;
                };
                let current = model.get(base.id).await.unwrap();
                let current = current.unwrap_or_else(|| base.clone());
                let next = changed(&current, |j| {
                    j.expires_ms = expiry.shift(expires_ms);
                    j.status = status(terminal);
                });
                let expected = current.version + u64::from(stale);
                let durability = if lazy {
                    Durability::Lazy
                } else {
                    Durability::Sync
                };
                let want = model.update(next.clone(), expected, durability).await;
                let got = store.update(next, expected, durability).await;
                assert_eq!(format!("{got:?}"), format!("{want:?}"));
            }
            Op::Remove { target } => {
                let Some(base) = submitted.get(target % submitted.len().max(1)) else {
                    continue;
                };
                let want = model.remove(base.id).await.unwrap();
                assert_eq!(store.remove(base.id).await.unwrap(), want);
            }
        }
    }
    for owner in OWNERS {
        for upstream in UPSTREAMS {
            let mut after = None;
            loop {
                let page = |s: &'static str| (Owner::new(owner), s.to_owned(), after, 2);
                let (o, u, a, l) = page(upstream);
                let want = model.list(o, u, a, l).await.unwrap();
                let (o, u, a, l) = page(upstream);
                assert_eq!(store.list(o, u, a, l).await.unwrap(), want);
                let Some(last) = want.last() else { break };
                after = Some(Cursor {
                    created_ms: last.created_ms,
                    id: last.id,
                });
            }
        }
    }
    for now_ms in (0..7).filter(|_| matches!(expiry, Expiry::Indexed)) {
        for limit in [1, 3, 100] {
            let want = model.expired(now_ms, limit).await.unwrap();
            assert_eq!(store.expired(now_ms, limit).await.unwrap(), want);
        }
    }
    assert_eq!(
        store.unfinished().await.unwrap(),
        model.unfinished().await.unwrap()
    );
    for j in &submitted {
        assert_eq!(
            store.get(j.id).await.unwrap(),
            model.get(j.id).await.unwrap()
        );
    }
}

proptest! {
    // Each case opens a file and commits every write: few cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn redb_store_agrees_with_the_memory_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = redb_at(&dir.path().join("jobs.redb"));
            run(ops, &MemoryStore::new(), &store, Expiry::Indexed).await;
        });
    }

    #[test]
    fn redis_store_agrees_with_the_memory_model(ops in proptest::collection::vec(op(), 1..40)) {
        let Some(server) = super::redis_tests::TestRedis::start() else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            run(ops, &MemoryStore::new(), &server.store("a"), Expiry::Redis).await;
        });
    }
}
