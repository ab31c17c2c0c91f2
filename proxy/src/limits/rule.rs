//! One rate-limit rule: which requests it applies to, how it keys them, and its GCRA limiter.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use prometheus::IntCounter;
use tokio::sync::Notify;

use super::clock::TokioClock;
use super::global::Global;
use super::store::{CappedStore, Probe, Receipt, StoreMetrics, take_receipt};
use crate::config::{KeyPart, RateLimitRule};
use crate::glob::Glob;
use crate::mcp::{Kind, Message};
use crate::principal::{Principal, Source};

/// Who sent a request, as far as rate-limit keys care. Built once per request.
#[derive(Debug, Clone, Copy)]
pub struct LimitKeyInput<'a> {
    /// The authenticated principal, if the request was authenticated.
    pub principal: Option<&'a Principal>,
    /// The client IP (already resolved through trusted proxies).
    pub client_ip: IpAddr,
}

impl LimitKeyInput<'_> {
    /// Feeds the principal into `h`: what vouched for it (an API key, or which JWT issuer) and
    /// its subject, so equal subjects from different issuers never share a bucket. An
    /// unauthenticated request is keyed by its client IP, tagged so that it never shares a
    /// bucket with a principal.
    pub fn hash_principal(&self, h: &mut impl Hasher) {
        match self.principal.map(|p| (&p.source, &p.subject)) {
            Some((Source::ApiKey(_), subject)) => {
                0u8.hash(h);
                subject.hash(h);
            }
            Some((Source::Jwt(issuer), subject)) => {
                1u8.hash(h);
                issuer.hash(h);
                subject.hash(h);
            }
            None => {
                2u8.hash(h);
                self.client_ip.hash(h);
            }
        }
    }

    /// The id of the API key the request authenticated with, if it used one.
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.principal?.source {
            Source::ApiKey(id) => Some(id),
            Source::Jwt(_) => None,
        }
    }
}

/// A rule's verdict on some requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more could be admitted at once.
    Admit {
        /// Remaining burst after this admission.
        remaining: u32,
    },
    /// Not now; conforming again after `wait`.
    Reject {
        /// Time until the requests would be admitted.
        wait: Duration,
    },
    /// More requests at once than the burst: never admitted (a batch too large for the rule).
    Never,
}

/// Metric handles of one rule.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    /// Requests the rule admitted.
    pub admitted: IntCounter,
    /// Requests the rule rejected (or would have, in shadow mode).
    pub rejected: IntCounter,
    /// Store metrics (tracked keys, overflow decisions).
    pub store: StoreMetrics,
}

type Limiter<C> = RateLimiter<Probe, CappedStore, C, StateInformationMiddleware>;

/// A configured rule, ready to decide.
pub struct Rule<C: Clock = TokioClock> {
    /// Name (policy name in headers, metric label).
    pub name: Arc<str>,
    /// Counted and logged, never enforced.
    pub shadow: bool,
    key: Vec<KeyPart>,
    methods: Vec<Glob>,
    tools: Vec<Glob>,
    burst: u32,
    interval: Duration,
    limiter: Limiter<C>,
    store: CappedStore,
    /// Position among all the sidecar's rules (global first, then per upstream, in config order).
    pub index: usize,
    /// `RateLimit-Policy` list item of this rule.
    pub policy: String,
    /// `"name";r=`: the start of this rule's `RateLimit` item.
    state_prefix: String,
    /// Metric handles.
    pub metrics: RuleMetrics,
    /// The Redis side of a global rule (`scope = "global"`); its local limiter above is then
    /// the `fail_open` fallback.
    pub global: Option<Global>,
}

impl<C: Clock> std::fmt::Debug for Rule<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("shadow", &self.shadow)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Rule<C> {
    /// Builds a rule from validated config on `clock`; `sweep_early` is notified when the rule
    /// meets its key cap.
    pub fn new(
        config: &RateLimitRule,
        index: usize,
        clock: C,
        metrics: RuleMetrics,
        sweep_early: Arc<Notify>,
    ) -> Self {
        let store = CappedStore::new(config.max_keys, metrics.store.clone(), sweep_early);
        Self::with_store(config, index, clock, metrics, store)
    }

    /// [`Rule::new`] over an existing key table: a config reload keeps an unchanged rule's
    /// buckets (what each key has spent) by handing its store to the rule that replaces it.
    pub fn with_store(
        config: &RateLimitRule,
        index: usize,
        clock: C,
        metrics: RuleMetrics,
        store: CappedStore,
    ) -> Self {
        let burst = config.burst().max(1);
        let rate = config.rate.max(1);
        let interval = (config.per / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let limiter: Limiter<C> = RateLimiter::new(quota, store.clone(), clock);
        let mut policy = format!(
            "\"{}\";q={};w={}",
            config.name,
            rate,
            config.per.as_secs().max(1)
        );
        if burst != rate {
            policy.push_str(&format!(";mcp-burst={burst}"));
        }
        Self {
            name: Arc::from(config.name.as_str()),
            shadow: config.shadow,
            key: config.key.clone(),
            methods: config.methods.iter().map(|m| Glob::new(m)).collect(),
            tools: config.tools.iter().map(|t| Glob::new(t)).collect(),
            burst,
            interval,
            limiter,
            store,
            index,
            policy,
            state_prefix: format!("\"{}\";r=", config.name),
            metrics,
            global: None,
        }
    }

    /// Makes the rule global: decided in Redis, its local limiter kept as the fallback.
    pub fn with_global(mut self, global: Global) -> Self {
        self.global = Some(global);
        self
    }

    /// The parts its keys are made of.
    pub fn key_parts(&self) -> &[KeyPart] {
        &self.key
    }

    /// Whether the rule applies to this message (only requests are ever limited).
    pub fn applies(&self, msg: &Message) -> bool {
        if msg.kind != Kind::Request {
            return false;
        }
        let method = msg.method.as_deref().unwrap_or_default();
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.matches(method)) {
            return false;
        }
        if self.tools.is_empty() {
            return true;
        }
        msg.tool
            .as_deref()
            .is_some_and(|tool| self.tools.iter().any(|t| t.matches(tool)))
    }

    /// The digest of this message's key under this rule.
    pub fn key(&self, hasher: &impl BuildHasher, who: &LimitKeyInput<'_>, msg: &Message) -> u64 {
        let mut h = hasher.build_hasher();
        for part in &self.key {
            match part {
                KeyPart::Principal => who.hash_principal(&mut h),
                KeyPart::ApiKey => who.api_key_id().hash(&mut h),
                KeyPart::ClientIp => who.client_ip.hash(&mut h),
                KeyPart::Tool => msg.tool.as_deref().hash(&mut h),
                KeyPart::Method => msg.method.as_deref().hash(&mut h),
            }
        }
        h.finish()
    }

    /// Decides `n` requests under `key`; stores the outcome only when `commit`.
    pub fn check(&self, key: u64, n: NonZeroU32, commit: bool) -> Decision {
        let probe = Probe { hash: key, commit };
        let outcome = if n.get() == 1 {
            Ok(self.limiter.check_key(&probe))
        } else {
            self.limiter.check_key_n(&probe, n)
        };
        match outcome {
            Ok(Ok(state)) => Decision::Admit {
                remaining: state.remaining_burst_capacity(),
            },
            Ok(Err(not_until)) => Decision::Reject {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
            },
            Err(_) => Decision::Never,
        }
    }

    /// Counts `n` requests under `key` if the rule admits them, returning what remains of the
    /// burst and the receipt that gives them back; the refusing decision otherwise.
    pub fn take(&self, key: u64, n: NonZeroU32) -> Result<(u32, Option<Receipt>), Decision> {
        match self.check(key, n, true) {
            Decision::Admit { remaining } => Ok((remaining, take_receipt())),
            refused => Err(refused),
        }
    }

    /// Gives back what [`Rule::take`] counted, if the bucket has not changed since.
    pub fn give_back(&self, receipt: Option<Receipt>) {
        if let Some(receipt) = receipt {
            self.store.give_back(receipt);
        }
    }

    /// The `RateLimit` item: `"name";r=REMAINING;t=RESET`.
    pub fn state(&self, remaining: u32, reset: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.state_prefix.len() + 24);
        out.extend_from_slice(self.state_prefix.as_bytes());
        push_decimal(&mut out, u64::from(remaining));
        out.extend_from_slice(b";t=");
        push_decimal(&mut out, reset);
        out
    }

    /// Seconds until the whole burst is available again when `remaining` is left now: the
    /// `t` of an admitted request's `RateLimit` field (an upper bound, never early).
    pub fn reset_after(&self, remaining: u32) -> Duration {
        self.interval * self.burst.saturating_sub(remaining)
    }

    /// The time a full burst takes to refill (what a batch larger than the burst is told).
    pub fn refill_time(&self) -> Duration {
        self.interval * self.burst
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Evicts keys whose bucket is full again (they are indistinguishable from new keys) and
    /// gives memory back when the table is mostly empty.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Some(global) = &self.global {
            global.sweep(tokio::time::Instant::now());
        }
    }

    /// Whether a new key met the cap since the last call.
    pub fn take_full(&self) -> bool {
        self.store.take_full()
    }

    /// The key table (its buckets), for a reload to keep.
    pub(super) fn store(&self) -> &CappedStore {
        &self.store
    }

    /// Keys tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.store.keys()
    }

    /// Heap bytes of the key table.
    pub fn table_bytes(&self) -> usize {
        self.store.table_bytes()
    }
}

/// Appends `n` in decimal (without the formatting machinery: this runs on every admitted request).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
