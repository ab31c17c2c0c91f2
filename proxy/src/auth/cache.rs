//! Bounded cache of validated tokens, keyed by the token's SHA-256, so a hot token costs a hash
//! and a map lookup instead of a signature check. Entries never outlive the token's `exp` (plus
//! leeway) nor the configured TTL.
//!
//! Sharded by the digest's first byte so concurrent workers rarely contend on one lock. When a
//! shard is full, expired entries go first, then an arbitrary one: an attacker holding many valid
//! tokens can only make the cache less effective, never wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::apikey::CredentialDigest;
use super::principal::Principal;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    /// Unix seconds after which the entry is dead.
    expires_at: u64,
}

/// The cache.
#[derive(Debug)]
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<CredentialDigest, Entry>>>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` entries (rounded up to a multiple of the shard count);
    /// `0` disables it.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &CredentialDigest) -> &Mutex<HashMap<CredentialDigest, Entry>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The cached principal, if present and alive at `now` (unix seconds).
    pub fn get(&self, key: &CredentialDigest, now: u64) -> Option<Arc<Principal>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(e) if now < e.expires_at => Some(e.principal.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `principal` until `expires_at` (unix seconds).
    pub fn insert(
        &self,
        key: CredentialDigest,
        principal: Arc<Principal>,
        expires_at: u64,
        now: u64,
    ) {
        if self.per_shard == 0 || expires_at <= now {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.expires_at);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            key,
            Entry {
                principal,
                expires_at,
            },
        );
    }

    /// Entries held (expired ones included until they are touched).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::Source;

    fn principal(s: &str) -> Arc<Principal> {
        Arc::new(Principal {
            subject: s.into(),
            source: Source::Jwt("i".into()),
            scopes: vec![],
            audiences: vec![],
            audience_accepted_everywhere: false,
            claim_headers: vec![],
        })
    }

    fn key(i: u32) -> CredentialDigest {
        super::super::apikey::digest(&i.to_string())
    }

    #[test]
    fn entries_expire() {
        let c = TokenCache::new(100);
        c.insert(key(1), principal("a"), 1_000, 900);
        assert_eq!(c.get(&key(1), 999).unwrap().subject, "a");
        assert!(c.get(&key(1), 1_000).is_none());
        assert!(c.is_empty(), "expired entry removed on access");
        c.insert(key(2), principal("b"), 900, 900);
        assert!(c.get(&key(2), 800).is_none(), "already expired: not stored");
    }

    #[test]
    fn size_is_bounded() {
        let c = TokenCache::new(32);
        for i in 0..10_000 {
            c.insert(key(i), principal("x"), 2_000, 1_000);
        }
        assert!(c.len() <= 32, "{}", c.len());
        let hits = (0..10_000)
            .filter(|i| c.get(&key(*i), 1_000).is_some())
            .count();
        assert!(hits > 0 && hits <= 32);
    }

    #[test]
    fn zero_capacity_disables() {
        let c = TokenCache::new(0);
        c.insert(key(1), principal("a"), 2_000, 1_000);
        assert!(c.get(&key(1), 1_000).is_none());
    }
}
