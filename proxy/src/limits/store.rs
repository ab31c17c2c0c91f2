//! The keyed state behind one rule: governor's GCRA runs over this store, which adds what
//! governor's own stores lack: a cap on tracked keys and dry-run checks.
//!
//! - **Cap**: at `max_keys` tracked keys, a request with a new key is decided on one shared
//!   *overflow* state instead of getting its own. Memory stays bounded under a key flood, and the
//!   flood cannot slip past the limit either: all its keys together get one key's quota. Keys
//!   already tracked keep their own state. The next sweep evicts idle keys and frees room (a
//!   request that finds the cap reached asks for an early sweep). Evictions that fragment a table
//!   of the largest size the cap needs are compacted at once, so the table never outgrows what
//!   `max_keys` keys need.
//! - **Dry run**: a [`Probe`] with `commit: false` computes the decision without storing it.
//! - **Give back**: a committed decision leaves a [`Receipt`] (the state before and after), so a
//!   request that a later rule refuses can return what the rules before it counted.
//!
//! Keys are 64-bit SipHash digests of the key parts under a per-process random key (computed by
//! the caller), so the table needs no re-hashing and an attacker can neither predict bucket
//! positions nor craft collisions.

use std::cell::Cell;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use hashbrown::HashMap;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

/// The key a rule's limiter is asked about: the key digest, and whether to store the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Digest of the key parts.
    pub hash: u64,
    /// `false`: decide without changing any state (dry run).
    pub commit: bool,
}

/// Where a committed decision was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Key(u64),
    Overflow,
}

/// A committed decision: the state it replaced and the state it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    slot: Slot,
    before: u64,
    after: u64,
}

thread_local! {
    /// The receipt of the last commit on this thread. governor's check calls the store exactly
    /// once, synchronously, so the caller reads it right after the check returns.
    static LAST_COMMIT: Cell<Option<Receipt>> = const { Cell::new(None) };
}

/// Takes the receipt of the last commit made on this thread.
pub(super) fn take_receipt() -> Option<Receipt> {
    LAST_COMMIT.with(Cell::take)
}

/// Passes an already uniformly distributed `u64` through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; mix anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, InMemoryState, BuildHasherDefault<IdentityHasher>>;

/// Bytes of one table slot: the `(u64, InMemoryState)` pair plus hashbrown's control byte.
pub const SLOT_BYTES: usize = std::mem::size_of::<(u64, InMemoryState)>() + 1;

/// Metric handles a store updates.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Keys tracked now.
    pub tracked: IntGauge,
    /// Decisions made on the overflow state because the cap was reached.
    pub overflow: IntCounter,
}

/// A capped, dry-run-capable keyed state store for governor. Clones share the same state (the
/// limiter owns one handle, the sweeper and metrics read through another).
#[derive(Clone)]
pub struct CappedStore {
    inner: Arc<Inner>,
}

struct Inner {
    table: RwLock<Table>,
    overflow: InMemoryState,
    max_keys: usize,
    /// Heap bytes and capacity of a table sized for `max_keys` keys: the most it ever needs.
    full_size: (usize, usize),
    /// Set when a new key met the cap; cleared by the sweeper ([`CappedStore::take_full`]).
    full: AtomicBool,
    /// Woken when `full` gets set, so the sweeper frees room early.
    sweep_early: Arc<Notify>,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for CappedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CappedStore")
            .field("keys", &self.read().len())
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

impl CappedStore {
    /// Whether `other` is a handle on this very table (a reload kept it).
    #[cfg(test)]
    pub(crate) fn same_table(&self, other: &CappedStore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// An empty store tracking at most `max_keys` keys; `sweep_early` is notified when a new key
    /// meets the cap.
    pub fn new(max_keys: usize, metrics: StoreMetrics, sweep_early: Arc<Notify>) -> Self {
        metrics.tracked.set(0);
        let full = Table::with_capacity_and_hasher(max_keys, BuildHasherDefault::default());
        let full_size = (full.allocation_size(), full.capacity());
        drop(full);
        Self {
            inner: Arc::new(Inner {
                table: RwLock::new(Table::default()),
                overflow: InMemoryState::default(),
                max_keys,
                full_size,
                full: AtomicBool::new(false),
                sweep_early,
                metrics,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a new key met the cap since the last call (and clears the flag).
    pub fn take_full(&self) -> bool {
        self.inner.full.swap(false, Ordering::AcqRel)
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.read().len()
    }

    /// The heap bytes of the table (its slots and control bytes).
    pub fn table_bytes(&self) -> usize {
        self.read().allocation_size()
    }

    /// Gives back a committed decision: restores the state it replaced, unless the state changed
    /// since (another request counted in between; then the unit stays spent). Returns whether it
    /// was given back.
    pub fn give_back(&self, receipt: Receipt) -> bool {
        let restore = |current: Option<Nanos>| {
            if current.map_or(0, Nanos::as_u64) == receipt.after {
                Ok(((), Nanos::new(receipt.before)))
            } else {
                Err(())
            }
        };
        match receipt.slot {
            Slot::Overflow => self
                .inner
                .overflow
                .measure_and_replace(&NotKeyed::NonKey, restore)
                .is_ok(),
            Slot::Key(hash) => self.read().get(&hash).is_some_and(|state| {
                state
                    .measure_and_replace(&NotKeyed::NonKey, restore)
                    .is_ok()
            }),
        }
    }
}

/// The stored theoretical arrival time of a state, read without changing it.
fn tat(state: &InMemoryState) -> Option<Nanos> {
    state
        .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
        .err()
        .flatten()
}

/// Runs governor's decision `f` on `state`, storing the new state only when `commit` (and then
/// leaving its [`Receipt`] for [`take_receipt`]).
fn decide<T, F, E>(state: &InMemoryState, slot: Slot, commit: bool, f: F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    if !commit {
        return f(tat(state)).map(|(outcome, _)| outcome);
    }
    let seen = Cell::new(None);
    let outcome = state.measure_and_replace(&NotKeyed::NonKey, |before: Option<Nanos>| {
        let decided = f(before);
        if let Ok((_, after)) = &decided {
            seen.set(Some((before.map_or(0, Nanos::as_u64), after.as_u64())));
        }
        decided
    });
    if outcome.is_ok()
        && let Some((before, after)) = seen.get()
    {
        LAST_COMMIT.with(|last| {
            last.set(Some(Receipt {
                slot,
                before,
                after,
            }))
        });
    }
    outcome
}

impl StateStore for CappedStore {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        {
            let table = self.read();
            if let Some(state) = table.get(&key.hash) {
                return decide(state, Slot::Key(key.hash), key.commit, f);
            }
            if !key.commit {
                // What a commit would do: a fresh state, or the overflow state at the cap.
                return if table.len() < self.inner.max_keys {
                    f(None).map(|(outcome, _)| outcome)
                } else {
                    decide(&self.inner.overflow, Slot::Overflow, false, f)
                };
            }
        }
        let mut table = self.write();
        if let Some(state) = table.get(&key.hash) {
            return decide(state, Slot::Key(key.hash), true, f);
        }
        if table.len() < self.inner.max_keys {
            let state = table.entry(key.hash).or_default();
            self.inner.metrics.tracked.inc();
            return decide(state, Slot::Key(key.hash), true, f);
        }
        drop(table);
        if !self.inner.full.swap(true, Ordering::AcqRel) {
            self.inner.sweep_early.notify_one();
        }
        self.inner.metrics.overflow.inc();
        decide(&self.inner.overflow, Slot::Overflow, true, f)
    }
}

impl ShrinkableKeyedStateStore<Probe> for CappedStore {
    /// Evicts keys, then compacts a table of the largest size the cap needs if eviction left
    /// tombstones in it: with tombstones hashbrown would double the table on a later insert
    /// although it holds no more than `max_keys` keys. Only sweeps remove keys, so the table is
    /// free of tombstones at that size between sweeps. The compaction holds the old and the new
    /// table for a moment.
    fn retain_recent(&self, drop_below: Nanos) {
        let mut table = self.write();
        let before = table.len();
        table.retain(|_, state| tat(state).is_some_and(|t| t > drop_below));
        let (full_bytes, full_capacity) = self.inner.full_size;
        if table.len() < before
            && table.allocation_size() >= full_bytes
            && table.capacity() < full_capacity
        {
            let mut compact = Table::with_capacity_and_hasher(table.len(), Default::default());
            compact.extend(table.drain());
            *table = compact;
        }
        self.inner
            .metrics
            .tracked
            .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
    }

    /// Gives memory back once the table is mostly empty; not on every sweep, so a key count that
    /// oscillates does not reallocate the table each time.
    fn shrink_to_fit(&self) {
        let mut table = self.write();
        let slots = table.allocation_size() / SLOT_BYTES;
        if slots > 64 && slots > 4 * table.len() {
            table.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_keys: usize) -> CappedStore {
        CappedStore::new(
            max_keys,
            StoreMetrics {
                tracked: IntGauge::new("t", "t").unwrap(),
                overflow: IntCounter::new("o", "o").unwrap(),
            },
            Arc::new(Notify::new()),
        )
    }

    /// A decision function like governor's: admit while the stored value is below 3.
    fn count_to_three(prev: Option<Nanos>) -> Result<((), Nanos), ()> {
        let n = prev.map_or(0, Nanos::as_u64);
        if n < 3 {
            Ok(((), Nanos::new(n + 1)))
        } else {
            Err(())
        }
    }

    fn probe(hash: u64, commit: bool) -> Probe {
        Probe { hash, commit }
    }

    #[test]
    fn dry_runs_never_change_state() {
        let s = store(10);
        for _ in 0..10 {
            assert!(
                s.measure_and_replace(&probe(1, false), count_to_three)
                    .is_ok()
            );
        }
        assert_eq!(s.len(), 0, "a dry run must not insert a key");
        for _ in 0..3 {
            assert!(
                s.measure_and_replace(&probe(1, true), count_to_three)
                    .is_ok()
            );
        }
        assert!(
            s.measure_and_replace(&probe(1, false), count_to_three)
                .is_err()
        );
        assert!(
            s.measure_and_replace(&probe(1, true), count_to_three)
                .is_err()
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn keys_beyond_the_cap_share_the_overflow_state() {
        let s = store(2);
        for key in 0..2 {
            s.measure_and_replace(&probe(key, true), count_to_three)
                .unwrap();
        }
        assert!(!s.take_full());
        // Three new keys together get one key's quota.
        for key in 10..13 {
            s.measure_and_replace(&probe(key, true), count_to_three)
                .unwrap();
        }
        assert!(
            s.measure_and_replace(&probe(13, true), count_to_three)
                .is_err()
        );
        assert!(
            s.measure_and_replace(&probe(14, false), count_to_three)
                .is_err()
        );
        assert_eq!(s.len(), 2);
        assert!(s.take_full());
        assert!(!s.take_full());
        assert_eq!(s.inner.metrics.overflow.get(), 4);
        // Tracked keys keep their own state.
        assert!(
            s.measure_and_replace(&probe(0, true), count_to_three)
                .is_ok()
        );
    }

    /// Keys churning at the cap (evicted by sweeps, replaced by new ones) must not let the
    /// table outgrow what `max_keys` keys need: hashbrown's tombstones would otherwise make it
    /// double its allocation while holding no more keys.
    #[test]
    fn churn_at_the_cap_never_grows_the_table_beyond_the_bound() {
        // Caps at, near and well below a table size's load-factor limit (1792 = 2048 * 7/8).
        for max_keys in [1792, 1700, 1000] {
            churn(max_keys);
        }
    }

    fn churn(max_keys: usize) {
        let bound = Table::with_capacity_and_hasher(max_keys, Default::default()).allocation_size();
        let s = store(max_keys);
        let mut next_key = 0u64;
        for round in 1..300u64 {
            let stamp = |_: Option<Nanos>| Ok::<_, ()>(((), Nanos::new(round)));
            while s.len() < max_keys {
                // Spread the digests like SipHash would.
                let hash = next_key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                next_key += 1;
                s.measure_and_replace(&probe(hash, true), stamp).unwrap();
            }
            assert!(
                s.table_bytes() <= bound,
                "max_keys {max_keys}, round {round}: {} > {bound} bytes",
                s.table_bytes()
            );
            // Evict the keys of two rounds ago and earlier (a third to two thirds of the table).
            s.retain_recent(Nanos::new(round.saturating_sub(2)));
        }
    }

    #[test]
    fn retain_recent_drops_old_states_and_updates_the_gauge() {
        let s = store(1000);
        for key in 0..200 {
            s.measure_and_replace(&probe(key, true), count_to_three)
                .unwrap();
        }
        s.measure_and_replace(&probe(7, true), count_to_three)
            .unwrap();
        assert_eq!(s.inner.metrics.tracked.get(), 200);
        s.retain_recent(Nanos::new(1));
        assert_eq!(s.len(), 1, "only key 7 has a state above 1");
        assert_eq!(s.inner.metrics.tracked.get(), 1);
        let before = s.table_bytes();
        s.shrink_to_fit();
        assert!(s.table_bytes() < before, "{} !< {before}", s.table_bytes());
    }
}
