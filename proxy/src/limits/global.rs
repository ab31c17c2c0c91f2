//! Global rules (`scope = "global"`): the bucket of a key lives in Redis and every replica counts
//! against it, so "10 per minute" means 10 across the Service, not 10 per replica.
//!
//! - **Algorithm**: governor's GCRA, the local rules' own, run by one Lua script (`gcra.lua`) on
//!   the server's clock. One call per request decides every global rule it matches, atomically
//!   and all-or-nothing; the answer (admitted, remaining, wait) becomes the same `Retry-After` and
//!   `RateLimit` fields as a local rule's decision.
//! - **Keys**: `redis.key_prefix` + `rl:` + rule name + `:` + a SHA-256 digest of the key parts
//!   (the same parts as the local rule's, in a fixed encoding, so every replica and every version
//!   computes the same key and no principal or IP is stored in clear). A key expires when its
//!   bucket is full again.
//! - **Fallback** (`redis_failure`), while Redis cannot answer (the connection's deadline and
//!   breaker bound the wait; see [`crate::redis_conn`]): `fail_open` decides on the rule's local
//!   bucket (the same rate, per replica), `fail_closed` refuses with 503. Counted in
//!   `mcp_sidecar_rate_limit_fallback_total{rule,mode}` and logged (one line per
//!   [`FLOOD_LOG_INTERVAL`](crate::rate_limited_log::FLOOD_LOG_INTERVAL)).
//! - **Local budget** (`local_budget = B`): for a key this replica asked about within
//!   [`LOCAL_BUDGET_MAX_AGE`], the script also reserves up to B further requests, which the
//!   replica then admits without a round trip until they are spent or the lease is
//!   [`LOCAL_BUDGET_MAX_AGE`] old. Reserved requests are counted in Redis when reserved, so the
//!   replicas together never exceed the bucket; an admission happens at most
//!   [`LOCAL_BUDGET_MAX_AGE`] after its reservation, so in any window the rule admits at most
//!   `rate x LOCAL_BUDGET_MAX_AGE` more than its exact bound, whatever the number of replicas.
//!   Reservations left unspent when a lease ends are lost, never returned (returning them safely
//!   would need to know nobody counted since): a key that goes quiet can be under-admitted by up
//!   to B per replica.

use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hashbrown::HashMap;
use prometheus::IntCounter;
use ring::digest;
use tokio::time::Instant;

use super::store::IdentityHasher;
use super::{Decision, LimitKeyInput};
use crate::config::{KeyPart, RateLimitRule, RedisFailure};
use crate::mcp::Message;
use crate::principal::Source;
use crate::redis_conn::{RedisConn, RedisError};

/// How long a replica may spend the requests it reserved for a key (`local_budget`), and how
/// recently it must have asked about a key to reserve any. Half a second: a key hot enough for
/// the budget to matter (several requests a second on one replica) spends it well within that,
/// and the overshoot it allows is half a second's worth of the rule's rate.
pub const LOCAL_BUDGET_MAX_AGE: Duration = Duration::from_millis(500);

/// Hex digits of the key digest in a Redis key: 128 bits, beyond any chance of two keys meeting.
const DIGEST_HEX: usize = 32;

/// The script, compiled once (its SHA-1 is what `EVALSHA` sends; redis-rs loads it on `NOSCRIPT`).
pub(super) fn gcra_script() -> redis::Script {
    redis::Script::new(include_str!("gcra.lua"))
}

/// The Redis side of one global rule.
pub struct Global {
    /// `redis.key_prefix` + `rl:` + rule name + `:`.
    key_prefix: String,
    /// Emission interval in microseconds (the script's unit: Redis `TIME` is in microseconds and
    /// Lua's numbers are exact up to 2^53), rounded up so the rule is never looser than asked.
    t_us: u64,
    /// Burst tolerance: `t_us * (burst - 1)`.
    tau_us: u64,
    burst: u32,
    budget: u32,
    max_keys: usize,
    /// `redis_failure`.
    pub failure: RedisFailure,
    /// `mcp_sidecar_rate_limit_fallback_total{rule,mode}` of this rule.
    pub fallback: IntCounter,
    leases: Mutex<HashMap<u64, Lease, BuildHasherDefault<IdentityHasher>>>,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global")
            .field("key_prefix", &self.key_prefix)
            .field("budget", &self.budget)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// Requests a replica reserved for one key.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Reserved and not spent yet.
    tokens: u32,
    /// What Redis said remained for everyone else when they were reserved.
    shared: u32,
    /// When the reservation was made (it is spent until `LOCAL_BUDGET_MAX_AGE` later).
    at: Instant,
}

/// One global rule's question to the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ask {
    pub key: String,
    pub t_us: u64,
    pub tau_us: u64,
    pub n: u32,
    pub extra: u32,
    pub shadow: bool,
}

/// The script's answer about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    /// Admitted (remaining excludes what was reserved), refused (wait), or never.
    pub decision: Decision,
    /// Requests reserved for the local budget.
    pub reserved: u32,
}

impl Global {
    /// The Redis side of `config` (a global rule), keyed under `redis`'s prefix.
    pub fn new(config: &RateLimitRule, redis: &RedisConn, fallback: IntCounter) -> Self {
        let burst = config.burst().max(1);
        let interval = config.per / config.rate.max(1);
        let t_us = u64::try_from(interval.as_nanos().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            key_prefix: redis.key(&format!("rl:{}:", config.name)),
            t_us,
            tau_us: t_us.saturating_mul(u64::from(burst - 1)),
            burst,
            budget: config.local_budget(),
            max_keys: config.max_keys,
            failure: config.redis_failure(),
            fallback,
            leases: Mutex::new(HashMap::default()),
        }
    }

    /// The Redis key of `who`'s bucket for `msg` under the key parts `parts`.
    pub(super) fn bucket_key(
        &self,
        parts: &[KeyPart],
        who: &LimitKeyInput<'_>,
        msg: &Message,
    ) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            encode_part(&mut ctx, *part, who, msg);
        }
        let digest = ctx.finish();
        let mut key = String::with_capacity(self.key_prefix.len() + DIGEST_HEX);
        key.push_str(&self.key_prefix);
        for byte in &digest.as_ref()[..DIGEST_HEX / 2] {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }

    /// The question for `n` requests under `key` (a Redis key), reserving `extra` more.
    pub(super) fn ask(&self, key: String, n: u32, extra: u32, shadow: bool) -> Ask {
        Ask {
            key,
            t_us: self.t_us,
            tau_us: self.tau_us,
            n,
            extra,
            shadow,
        }
    }

    /// Spends `n` reserved requests of the digest `key`'s lease, if it holds them and is still
    /// young; returns the remaining burst to advertise (an estimate: what Redis said remained
    /// when the lease was taken, plus what the lease still holds).
    pub(super) fn spend(&self, key: u64, n: u32, now: Instant) -> Option<u32> {
        if self.budget == 0 {
            return None;
        }
        let mut leases = self.lock();
        let lease = leases.get_mut(&key)?;
        if lease.tokens < n || now.saturating_duration_since(lease.at) >= LOCAL_BUDGET_MAX_AGE {
            return None;
        }
        lease.tokens -= n;
        Some(lease.shared.saturating_add(lease.tokens).min(self.burst))
    }

    /// Gives back `n` requests [`Global::spend`] took from `key`'s lease (the request was refused
    /// by another rule).
    pub(super) fn unspend(&self, key: u64, n: u32) {
        if let Some(lease) = self.lock().get_mut(&key) {
            lease.tokens = lease.tokens.saturating_add(n);
        }
    }

    /// How many requests to reserve ahead for the digest `key`: the budget when this replica
    /// asked about the key within [`LOCAL_BUDGET_MAX_AGE`] (it is hot here), none otherwise (a
    /// key seen once would waste them).
    pub(super) fn extra_for(&self, key: u64, now: Instant) -> u32 {
        if self.budget == 0 {
            return 0;
        }
        let hot = self
            .lock()
            .get(&key)
            .is_some_and(|l| now.saturating_duration_since(l.at) < LOCAL_BUDGET_MAX_AGE);
        if hot { self.budget } else { 0 }
    }

    /// Records the answer to a question about `key`: a new lease of `reserved` requests (what an
    /// older one still held is lost). At `max_keys` leases, a new key gets none.
    pub(super) fn lease(&self, key: u64, reserved: u32, shared: u32, now: Instant) {
        if self.budget == 0 {
            return;
        }
        let mut leases = self.lock();
        if leases.len() >= self.max_keys && !leases.contains_key(&key) {
            return;
        }
        leases.insert(
            key,
            Lease {
                tokens: reserved,
                shared,
                at: now,
            },
        );
    }

    /// Drops the leases past their age (their unspent requests are lost).
    pub(super) fn sweep(&self, now: Instant) {
        let mut leases = self.lock();
        leases.retain(|_, l| now.saturating_duration_since(l.at) < LOCAL_BUDGET_MAX_AGE);
        if leases.capacity() > 64 && leases.capacity() > 4 * leases.len() {
            leases.shrink_to_fit();
        }
    }

    /// The burst.
    pub(super) fn burst(&self) -> u32 {
        self.burst
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, Lease, BuildHasherDefault<IdentityHasher>>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Feeds one key part into the digest: a tag per part and per variant, and every string with its
/// length, so no two different keys encode alike.
fn encode_part(ctx: &mut digest::Context, part: KeyPart, who: &LimitKeyInput<'_>, msg: &Message) {
    match part {
        KeyPart::Principal => match who.principal.map(|p| (&p.source, &p.subject)) {
            Some((Source::ApiKey(_), subject)) => {
                ctx.update(b"P0");
                field(ctx, Some(subject));
            }
            Some((Source::Jwt(issuer), subject)) => {
                ctx.update(b"P1");
                field(ctx, Some(issuer));
                field(ctx, Some(subject));
            }
            None => {
                ctx.update(b"P2");
                ip(ctx, who.client_ip);
            }
        },
        KeyPart::ApiKey => {
            ctx.update(b"K");
            field(ctx, who.api_key_id());
        }
        KeyPart::ClientIp => {
            ctx.update(b"I");
            ip(ctx, who.client_ip);
        }
        KeyPart::Tool => {
            ctx.update(b"T");
            field(ctx, msg.tool.as_deref());
        }
        KeyPart::Method => {
            ctx.update(b"M");
            field(ctx, msg.method.as_deref());
        }
    }
}

/// An optional string: absent, or its length and bytes.
fn field(ctx: &mut digest::Context, value: Option<&str>) {
    match value {
        None => ctx.update(&[0]),
        Some(v) => {
            ctx.update(&[1]);
            ctx.update(&u64::try_from(v.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(v.as_bytes());
        }
    }
}

fn ip(ctx: &mut digest::Context, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            ctx.update(&[4]);
            ctx.update(&v4.octets());
        }
        IpAddr::V6(v6) => {
            ctx.update(&[6]);
            ctx.update(&v6.octets());
        }
    }
}

/// Reads the script's answer: four integers per key asked.
pub(super) fn parse_answers(values: &[i64], asked: usize) -> Option<Vec<Answer>> {
    if values.len() != asked * 4 {
        return None;
    }
    values
        .chunks_exact(4)
        .map(|a| {
            let (status, remaining, wait_us, reserved) = (a[0], a[1], a[2], a[3]);
            let decision = match status {
                1 => Decision::Admit {
                    remaining: u32::try_from(remaining).ok()?,
                },
                0 => Decision::Reject {
                    wait: Duration::from_micros(u64::try_from(wait_us).ok()?),
                },
                -1 => Decision::Never,
                _ => return None,
            };
            Some(Answer {
                decision,
                reserved: u32::try_from(reserved).ok()?,
            })
        })
        .collect()
}

/// Asks the script `asks` on `redis`: one round trip, under the connection's deadline and
/// breaker.
pub(super) async fn run_script(
    redis: &RedisConn,
    script: &redis::Script,
    asks: &[Ask],
) -> Result<Vec<Answer>, RedisError> {
    redis
        .run("rate_limit", |mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for ask in asks {
                invocation
                    .key(&ask.key)
                    .arg(ask.t_us)
                    .arg(ask.tau_us)
                    .arg(ask.n)
                    .arg(ask.extra)
                    .arg(u8::from(ask.shadow));
            }
            let values: Vec<i64> = invocation.invoke_async(&mut conn).await?;
            parse_answers(&values, asks.len()).ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "the rate-limit script answered in an unexpected shape",
                ))
            })
        })
        .await
}

/// `Retry-After` of a fail-closed refusal: when the breaker lets Redis be asked again, at least
/// one second.
pub(super) fn unavailable_retry_after(error: &RedisError) -> Duration {
    match error {
        RedisError::Unavailable { retry_after } => (*retry_after).max(Duration::from_secs(1)),
        _ => Duration::from_secs(1),
    }
}
