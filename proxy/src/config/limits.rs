//! Configuration of rate limiting and overload protection: `[limits]` (caps and shared settings),
//! `[[rate_limit]]` (rules across all upstreams) and `[[upstream.rate_limit]]` (rules for one
//! upstream). The behaviour is described in the README and in [`crate::limits`].

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};
use crate::cidr::Cidr;
use crate::glob::glob_match;

/// Requests in flight through the whole sidecar before it sheds load (503). Far above what one
/// backend serves concurrently, so it only bites when the sidecar itself is flooded: it bounds
/// the memory (each request may pin up to `listen.max_body_bytes` while it is read) and the file
/// descriptors in use, instead of letting them grow with the flood.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Standalone SSE streams (GET) open at once across the sidecar. Each holds two sockets for
/// hours; 1024 streams stay inside a default 4096 file-descriptor limit with room for requests.
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Standalone SSE streams per principal: off by default, because without authentication every
/// client behind one load balancer would share the cap. Set it once principals are meaningful.
pub const DEFAULT_MAX_STREAMS_PER_PRINCIPAL: usize = 0;
/// `Retry-After` on a shed (503) answer. Overload is short-lived by nature (it ends when the
/// in-flight requests finish); one second spreads retries without idling the client for long.
pub const DEFAULT_SHED_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often idle rate-limit keys are evicted. Keys are evictable once their bucket is full
/// again; sweeping every 10 s keeps the tables near the working set at a negligible cost (a
/// sweep of a full table is short next to the interval: BENCHMARKS.md, "Figures behind code
/// decisions").
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Keys one rule tracks at most. 100 000 keys cost at most ~2.2 MB per rule (see the README) and
/// exceed the distinct callers a sidecar sees between two sweeps in any sane deployment; beyond
/// it a key flood only fills the rule's shared overflow bucket.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Longest `per` accepted. Keeps every quota's arithmetic far from overflow and matches what a
/// proxy can promise: longer quotas (monthly plans) belong in a billing system.
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);
/// Requests a replica takes from a global rule's Redis bucket ahead of need. `0`: every check is
/// one round trip and the count is exact across replicas. Exactness is the default because a
/// rule is usually written as a promise ("10 per minute"), and a budget trades it for fewer
/// round trips, which only a key hot enough to be measured needs (README, "Global rules").
pub const DEFAULT_LOCAL_BUDGET: u32 = 0;

/// Where a rule's buckets live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// In this sidecar's memory: each replica counts on its own.
    #[default]
    Local,
    /// In Redis (`[redis]`), shared by every replica.
    Global,
}

/// What a global rule does while Redis cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Enforce the rule on this replica's own bucket (the local rule of the same rate): each
    /// replica still bounds its share, so N replicas admit at most N times the rate.
    #[default]
    FailOpen,
    /// Refuse the requests the rule applies to (503 `rate_limit_unavailable`).
    FailClosed,
}

impl RedisFailure {
    /// The config spelling (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// `[limits]`: caps on concurrency and settings shared by the rate-limit rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests in flight across the sidecar (standing streams, GET and `subscriptions/listen`,
    /// excluded); `0` = no cap.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Standing streams (GET, `subscriptions/listen`) open across the sidecar; `0` = no cap.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Standing streams (GET, `subscriptions/listen`) open per principal; `0` = no cap.
    #[serde(default = "default_max_streams_per_principal")]
    pub max_streams_per_principal: usize,
    /// `Retry-After` of shed answers (whole seconds, rounded up).
    #[serde(default = "default_shed_retry_after", with = "humantime_serde")]
    pub shed_retry_after: Duration,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` is believed when finding the client IP.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How often idle rate-limit keys are evicted.
    #[serde(default = "default_sweep_interval", with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_streams: DEFAULT_MAX_STREAMS,
            max_streams_per_principal: DEFAULT_MAX_STREAMS_PER_PRINCIPAL,
            shed_retry_after: DEFAULT_SHED_RETRY_AFTER,
            trusted_proxies: Vec::new(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

/// What a rate-limit key is made of. Several parts combine (principal + tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The authenticated principal; the client IP when the request is unauthenticated.
    Principal,
    /// The id of the API key the request authenticated with (absent: one shared value).
    ApiKey,
    /// The client IP (from `X-Forwarded-For` when the peer is a trusted proxy).
    ClientIp,
    /// The tool of a `tools/call` (absent for other methods: one shared value).
    Tool,
    /// The JSON-RPC method.
    Method,
}

/// One `[[rate_limit]]` / `[[upstream.rate_limit]]` rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Policy name: in `RateLimit-Policy`, in metrics and logs. `[A-Za-z0-9_-]`, unique.
    pub name: String,
    /// Parts of the key; each distinct key gets its own bucket. `[]`: one bucket for all.
    pub key: Vec<KeyPart>,
    /// Requests admitted per `per`, sustained.
    pub rate: u32,
    /// The period of `rate`, a whole number of seconds (it is the policy's window `w`).
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Requests admitted at once after a quiet period. Default: `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// JSON-RPC method globs the rule applies to (`*`, `?`). Default: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tool-name globs; when set the rule applies only to `tools/call` of matching tools.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Count and log rejections without enforcing them.
    #[serde(default)]
    pub shadow: bool,
    /// Keys tracked at most; beyond, new keys share one overflow bucket until a sweep frees room.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// `local` (this replica's memory) or `global` (Redis, shared by the replicas).
    #[serde(default)]
    pub scope: Scope,
    /// A global rule while Redis cannot answer: `fail_open` (this replica's own bucket) or
    /// `fail_closed` (refuse). Only for `scope = "global"`.
    #[serde(default)]
    pub redis_failure: Option<RedisFailure>,
    /// Requests a replica reserves from a global bucket at once and admits without asking Redis
    /// (for a key it saw in the last `LOCAL_BUDGET_MAX_AGE`). Only for `scope = "global"`.
    #[serde(default)]
    pub local_budget: Option<u32>,
}

impl RateLimitRule {
    /// The burst, defaulted.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// `redis_failure`, defaulted.
    pub fn redis_failure(&self) -> RedisFailure {
        self.redis_failure.unwrap_or_default()
    }

    /// `local_budget`, defaulted.
    pub fn local_budget(&self) -> u32 {
        self.local_budget.unwrap_or(DEFAULT_LOCAL_BUDGET)
    }
}

fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}
fn default_max_streams_per_principal() -> usize {
    DEFAULT_MAX_STREAMS_PER_PRINCIPAL
}
fn default_shed_retry_after() -> Duration {
    DEFAULT_SHED_RETRY_AFTER
}
fn default_sweep_interval() -> Duration {
    DEFAULT_SWEEP_INTERVAL
}
fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

/// Validates `[limits]`, every rule and the per-upstream caps; errors name the field.
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    let limits = &config.limits;
    if limits.shed_retry_after.is_zero() {
        return Err(ConfigError::invalid(
            "limits.shed_retry_after",
            "must be greater than zero (it is sent as Retry-After)",
        ));
    }
    if limits.sweep_interval.is_zero() {
        return Err(ConfigError::invalid(
            "limits.sweep_interval",
            "must be greater than zero",
        ));
    }
    for (i, proxy) in limits.trusted_proxies.iter().enumerate() {
        Cidr::parse(proxy).map_err(|e| {
            ConfigError::invalid(format!("limits.trusted_proxies[{i}]"), e.to_string())
        })?;
    }
    let mut names: HashMap<&str, String> = HashMap::new();
    let rules = config
        .rate_limit
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("rate_limit[{i}]"), r));
    let upstream_rules = config.upstream.iter().enumerate().flat_map(|(u, up)| {
        up.rate_limit
            .iter()
            .enumerate()
            .map(move |(i, r)| (format!("upstream[{u}].rate_limit[{i}]"), r))
    });
    for (field, rule) in rules.chain(upstream_rules) {
        validate_rule(rule, &field, config.redis.is_some())?;
        if let Some(prev) = names.insert(rule.name.as_str(), field.clone()) {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                format!(
                    "`{}` is already the name of {prev}; rule names must be unique (they name \
                     the policy in headers and metrics)",
                    rule.name
                ),
            ));
        }
    }
    Ok(())
}

/// `scope` and the keys that only a global rule has.
fn validate_scope(rule: &RateLimitRule, field: &str, redis: bool) -> Result<(), ConfigError> {
    match rule.scope {
        Scope::Global if !redis => Err(ConfigError::invalid(
            format!("{field}.scope"),
            "`global` keeps the rule's buckets in Redis: add a [redis] section",
        )),
        Scope::Global => match rule.local_budget {
            Some(budget) if budget >= rule.burst() => Err(ConfigError::invalid(
                format!("{field}.local_budget"),
                format!(
                    "{budget} must be less than the burst ({}): a replica would take the \
                     whole bucket ahead of need",
                    rule.burst()
                ),
            )),
            _ => Ok(()),
        },
        Scope::Local => {
            let only_global = if rule.redis_failure.is_some() {
                Some("redis_failure")
            } else if rule.local_budget.is_some() {
                Some("local_budget")
            } else {
                None
            };
            match only_global {
                Some(key) => Err(ConfigError::invalid(
                    format!("{field}.{key}"),
                    "applies only to a rule with scope = \"global\"",
                )),
                None => Ok(()),
            }
        }
    }
}

fn validate_rule(rule: &RateLimitRule, field: &str, redis: bool) -> Result<(), ConfigError> {
    let name_ok = !rule.name.is_empty()
        && rule.name.len() <= 64
        && rule
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(ConfigError::invalid(
            format!("{field}.name"),
            format!(
                "`{}` must be 1-64 characters of letters, digits, `_` or `-` (it is a metric \
                 label and a header value)",
                rule.name
            ),
        ));
    }
    if rule.name == super::STREAMS_POLICY {
        return Err(ConfigError::invalid(
            format!("{field}.name"),
            format!(
                "`{}` is reserved for limits.max_streams_per_principal",
                rule.name
            ),
        ));
    }
    for (i, part) in rule.key.iter().enumerate() {
        if rule.key[..i].contains(part) {
            return Err(ConfigError::invalid(
                format!("{field}.key"),
                format!("`{part:?}` is listed twice"),
            ));
        }
    }
    if rule.rate == 0 {
        return Err(ConfigError::invalid(
            format!("{field}.rate"),
            "must be at least 1 (to block a method, use authorization, not a rate limit)",
        ));
    }
    if rule.burst == Some(0) {
        return Err(ConfigError::invalid(
            format!("{field}.burst"),
            "must be at least 1",
        ));
    }
    if rule.per.is_zero() || rule.per.subsec_nanos() != 0 || rule.per > MAX_PERIOD {
        return Err(ConfigError::invalid(
            format!("{field}.per"),
            format!(
                "`{}` must be a whole number of seconds between 1s and 7d (it is the policy \
                 window, which RateLimit-Policy states in seconds)",
                humantime::format_duration(rule.per)
            ),
        ));
    }
    if rule.max_keys == 0 {
        return Err(ConfigError::invalid(
            format!("{field}.max_keys"),
            "must be at least 1",
        ));
    }
    validate_scope(rule, field, redis)?;
    for (list, what) in [(&rule.methods, "methods"), (&rule.tools, "tools")] {
        if let Some(i) = list.iter().position(|p| p.is_empty()) {
            return Err(ConfigError::invalid(
                format!("{field}.{what}[{i}]"),
                "must not be empty",
            ));
        }
    }
    if !rule.tools.is_empty()
        && !rule.methods.is_empty()
        && !rule.methods.iter().any(|m| glob_match(m, "tools/call"))
    {
        return Err(ConfigError::invalid(
            format!("{field}.tools"),
            "tools only match `tools/call` requests, which `methods` excludes: the rule could \
             never apply",
        ));
    }
    Ok(())
}
