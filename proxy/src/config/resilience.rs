//! Configuration of the resilience layer: circuit breakers, per-tool timeouts, retries and active
//! health checks (`[upstream.breaker]`, `[[upstream.tool]]`, `[upstream.retry]`,
//! `[upstream.health_check]`). The behaviour lives in [`crate::resilience`] and [`crate::health`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, UpstreamConfig};

/// Consecutive failures that open a breaker. Five in a row is rarely bad luck, and small enough
/// that callers stop piling onto a dead backend within a handful of requests.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Failure ratio over the rolling window that opens a breaker: when half the calls fail the backend
/// is sick even if successes interleave (which resets the consecutive count).
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;
/// The rolling window for the failure ratio: long enough to hold a meaningful sample at modest
/// rates, short enough to forget an incident that is over.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Requests the window must hold before the ratio can trip, so two failures out of three at night
/// do not open the circuit.
pub const DEFAULT_MIN_REQUESTS: u32 = 20;
/// First open period. A minute lets a crashed backend restart (or a pod be replaced) before it is
/// probed, without leaving callers locked out for long after it is back.
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(60);
/// Cap of the open period as it grows on repeated trips: a long outage is still probed every
/// five minutes.
pub const DEFAULT_MAX_OPEN_DURATION: Duration = Duration::from_secs(300);
/// Growth of the open period per consecutive trip (60 s, 120 s, 240 s, then the cap).
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
/// Probe requests let through at once while half-open: one, so a still-broken backend costs one
/// failed call, not a burst.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
/// Probe successes that close the breaker: two, so one lucky answer from a flapping backend does
/// not release the whole load onto it.
pub const DEFAULT_HALF_OPEN_SUCCESSES: u32 = 2;
/// Statuses counted as failures: the ones that mean "the backend (or its gateway) cannot serve",
/// not "this call was wrong". A 500 is often one input tripping a bug, so it is not in the list.
pub const DEFAULT_FAILURE_STATUSES: &[u16] = &[502, 503, 504];

/// Retries of one request after its first attempt. Two covers a blip without tripling the time a
/// caller waits on a real outage.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// First backoff before a retry (full jitter: a random wait up to this, doubling per retry).
/// Short, because a sidecar's backend is next door and a blip is usually over in milliseconds.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);
/// Largest backoff between two retries.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Retries may add at most this fraction of live requests (linkerd's and Finagle's default), so
/// retries cannot multiply load during an outage.
pub const DEFAULT_BUDGET_RATIO: f64 = 0.2;
/// Retries always allowed per second on top of the ratio, so a quiet upstream can still retry.
pub const DEFAULT_BUDGET_MIN_PER_SECOND: f64 = 10.0;
/// How long a request's deposit into the budget counts (linkerd's and Finagle's default).
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);
/// Statuses after which an idempotent request is retried: a gateway or an overloaded backend
/// that may answer the next attempt.
pub const DEFAULT_RETRY_STATUSES: &[u16] = &[502, 503];
/// MCP methods that only read, so repeating them cannot change the server's state. `tools/call`
/// is never here: a tool is retried only when its `[[upstream.tool]]` entry says `idempotent`.
pub const DEFAULT_IDEMPOTENT_METHODS: &[&str] = &[
    "ping",
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Time one active health check may take. Shorter than the default 5 s interval, so checks never
/// overlap.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `[upstream.breaker]`: when the circuit opens, for how long, and how it closes again.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Whether the upstream has a breaker at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive failures that open the circuit; 0 turns this trigger off. Default 5.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// Failure ratio (0-1] over `window` that opens the circuit; 0 turns it off. Default 0.5.
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    /// Rolling window of the failure ratio. Default 30 s.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Requests in the window before the ratio can trip. Default 20.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// First open period. Default 60 s.
    #[serde(default = "default_open_duration", with = "humantime_serde")]
    pub open_duration: Duration,
    /// Cap of the open period. Default 5 min.
    #[serde(default = "default_max_open_duration", with = "humantime_serde")]
    pub max_open_duration: Duration,
    /// Open period growth per consecutive trip (>= 1). Default 2.
    #[serde(default = "default_backoff_multiplier")]
    pub backoff_multiplier: f64,
    /// Probes admitted at once while half-open. Default 1.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
    /// Probe successes that close the circuit. Default 2.
    #[serde(default = "default_half_open_successes")]
    pub half_open_successes: u32,
    /// HTTP statuses counted as failures (400-599). Default `[502, 503, 504]`.
    #[serde(default = "default_failure_statuses")]
    pub failure_statuses: Vec<u16>,
}

/// A tool's `breaker = { ... }`: the upstream's settings with these fields replaced; the tool
/// then has a circuit of its own.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BreakerOverride {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub failure_ratio: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    pub min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub open_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_open_duration: Option<Duration>,
    pub backoff_multiplier: Option<f64>,
    pub half_open_probes: Option<u32>,
    pub half_open_successes: Option<u32>,
    pub failure_statuses: Option<Vec<u16>>,
}

/// One `[[upstream.tool]]`: settings for the `tools/call`s whose tool name matches `name`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Tool name glob: `*` matches any run of characters, `?` one character. The first matching
    /// entry (in file order) applies.
    pub name: String,
    /// Time to the backend's response headers for this tool. Default: the upstream's
    /// `response_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Stream idle timeout for this tool's streamed answers. Default: the upstream's.
    #[serde(default, with = "humantime_serde")]
    pub stream_idle_timeout: Option<Duration>,
    /// The tool may be called twice for one request (retries). Default false.
    #[serde(default)]
    pub idempotent: bool,
    /// A circuit of the tool's own (the upstream's settings with these replaced).
    #[serde(default)]
    pub breaker: Option<BreakerOverride>,
    /// Whether the tool's calls may (`allowed`, the default), must (`required`) or may never
    /// (`never`) run as jobs. Setting it also makes the tool a Tasks facade tool by default
    /// ([`super::tasks`]).
    #[serde(default)]
    pub offload: Option<super::Offload>,
    /// How long a job calling this tool may take in all (waiting included) before it fails
    /// with `deadline_exceeded`. Default: the tool's `timeout`, else the upstream's
    /// `response_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub job_deadline: Option<Duration>,
    /// `off`, `facade` or `passthrough`: how MCP Tasks meet this tool ([`super::tasks`]).
    /// Default: the upstream's, else automatic.
    #[serde(default)]
    pub tasks: Option<super::TasksMode>,
    /// How long a task-capable call on the 2026-07-28 protocol waits for its answer before the
    /// sidecar answers with the task (an answer within it is sent as is; a 2025-11-25 task
    /// request always gets its task). Default 0: the task at once.
    #[serde(default, with = "humantime_serde")]
    pub task_wait: Option<Duration>,
}

impl ToolConfig {
    /// The tool's `offload`, default `allowed`.
    pub fn offload(&self) -> super::Offload {
        self.offload.unwrap_or_default()
    }
}

/// `[upstream.retry]`: which requests are retried, how often, and the budget that bounds them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 turns the sidecar's retries off. Default 2.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff (full jitter, doubling per retry). Default 25 ms.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Largest backoff. Default 1 s.
    #[serde(default = "default_retry_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retries allowed as a fraction of requests over `budget_ttl`. Default 0.2.
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// Retries per second always allowed on top of the ratio. Default 10.
    #[serde(default = "default_budget_min_per_second")]
    pub budget_min_per_second: f64,
    /// How long a request counts towards the budget. Default 10 s.
    #[serde(default = "default_budget_ttl", with = "humantime_serde")]
    pub budget_ttl: Duration,
    /// JSON-RPC methods safe to send twice. Default: the read-only MCP methods.
    #[serde(default = "default_idempotent_methods")]
    pub idempotent_methods: Vec<String>,
    /// Statuses after which an idempotent request is retried. Default `[502, 503]`.
    #[serde(default = "default_retry_statuses")]
    pub statuses: Vec<u16>,
}

/// What an active health check sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// Open a TCP connection (the default; proves only that something listens).
    #[default]
    Tcp,
    /// POST a JSON-RPC `ping` to the MCP endpoint; any answer below 500 passes.
    McpPing,
    /// GET `path` on the backend; a 2xx passes.
    Http,
}

/// `[upstream.health_check]`: the background check behind `/readyz` (every `health_interval`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `tcp`, `mcp_ping` or `http`. Default `tcp`.
    #[serde(default)]
    pub kind: HealthCheckKind,
    /// Path for `http` checks, on the backend's origin (e.g. `/healthz`).
    #[serde(default)]
    pub path: Option<String>,
    /// Time one check may take. Default 2 s.
    #[serde(default = "default_health_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A passing `mcp_ping`/`http` check counts as a probe success for a half-open breaker, so
    /// the circuit closes without waiting for client traffic. Default true.
    #[serde(default = "yes")]
    pub closes_breaker: bool,
}

fn yes() -> bool {
    true
}
fn default_consecutive_failures() -> u32 {
    DEFAULT_CONSECUTIVE_FAILURES
}
fn default_failure_ratio() -> f64 {
    DEFAULT_FAILURE_RATIO
}
fn default_window() -> Duration {
    DEFAULT_WINDOW
}
fn default_min_requests() -> u32 {
    DEFAULT_MIN_REQUESTS
}
fn default_open_duration() -> Duration {
    DEFAULT_OPEN_DURATION
}
fn default_max_open_duration() -> Duration {
    DEFAULT_MAX_OPEN_DURATION
}
fn default_backoff_multiplier() -> f64 {
    DEFAULT_BACKOFF_MULTIPLIER
}
fn default_half_open_probes() -> u32 {
    DEFAULT_HALF_OPEN_PROBES
}
fn default_half_open_successes() -> u32 {
    DEFAULT_HALF_OPEN_SUCCESSES
}
fn default_failure_statuses() -> Vec<u16> {
    DEFAULT_FAILURE_STATUSES.to_vec()
}
fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}
fn default_retry_backoff() -> Duration {
    DEFAULT_RETRY_BACKOFF
}
fn default_retry_max_backoff() -> Duration {
    DEFAULT_RETRY_MAX_BACKOFF
}
fn default_budget_ratio() -> f64 {
    DEFAULT_BUDGET_RATIO
}
fn default_budget_min_per_second() -> f64 {
    DEFAULT_BUDGET_MIN_PER_SECOND
}
fn default_budget_ttl() -> Duration {
    DEFAULT_BUDGET_TTL
}
fn default_idempotent_methods() -> Vec<String> {
    DEFAULT_IDEMPOTENT_METHODS
        .iter()
        .map(|m| (*m).to_owned())
        .collect()
}
fn default_retry_statuses() -> Vec<u16> {
    DEFAULT_RETRY_STATUSES.to_vec()
}
fn default_health_check_timeout() -> Duration {
    DEFAULT_HEALTH_CHECK_TIMEOUT
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            failure_ratio: DEFAULT_FAILURE_RATIO,
            window: DEFAULT_WINDOW,
            min_requests: DEFAULT_MIN_REQUESTS,
            open_duration: DEFAULT_OPEN_DURATION,
            max_open_duration: DEFAULT_MAX_OPEN_DURATION,
            backoff_multiplier: DEFAULT_BACKOFF_MULTIPLIER,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            half_open_successes: DEFAULT_HALF_OPEN_SUCCESSES,
            failure_statuses: default_failure_statuses(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: DEFAULT_RETRY_BACKOFF,
            max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_min_per_second: DEFAULT_BUDGET_MIN_PER_SECOND,
            budget_ttl: DEFAULT_BUDGET_TTL,
            idempotent_methods: default_idempotent_methods(),
            statuses: default_retry_statuses(),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Tcp,
            path: None,
            timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            closes_breaker: true,
        }
    }
}

impl BreakerOverride {
    /// `base` with every field this override sets replaced.
    pub fn apply(&self, base: &BreakerConfig) -> BreakerConfig {
        BreakerConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            consecutive_failures: self
                .consecutive_failures
                .unwrap_or(base.consecutive_failures),
            failure_ratio: self.failure_ratio.unwrap_or(base.failure_ratio),
            window: self.window.unwrap_or(base.window),
            min_requests: self.min_requests.unwrap_or(base.min_requests),
            open_duration: self.open_duration.unwrap_or(base.open_duration),
            max_open_duration: self.max_open_duration.unwrap_or(base.max_open_duration),
            backoff_multiplier: self.backoff_multiplier.unwrap_or(base.backoff_multiplier),
            half_open_probes: self.half_open_probes.unwrap_or(base.half_open_probes),
            half_open_successes: self.half_open_successes.unwrap_or(base.half_open_successes),
            failure_statuses: self
                .failure_statuses
                .clone()
                .unwrap_or_else(|| base.failure_statuses.clone()),
        }
    }
}

/// Validates the resilience settings of `upstream[i]`; `field` names a field of it.
pub(crate) fn validate(
    up: &UpstreamConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    validate_breaker(&up.breaker, &|f| field(&format!("breaker.{f}")))?;
    let mut seen: Vec<&str> = Vec::new();
    for (t, tool) in up.tool.iter().enumerate() {
        let tf = |f: &str| field(&format!("tool[{t}].{f}"));
        if tool.name.is_empty()
            || tool.name.len() > 128
            || !tool.name.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ConfigError::invalid(
                tf("name"),
                format!(
                    "`{}` must be 1-128 visible ASCII characters (a tool name glob; it is a metric label)",
                    tool.name
                ),
            ));
        }
        if seen.contains(&tool.name.as_str()) {
            return Err(ConfigError::invalid(
                tf("name"),
                format!(
                    "`{}` is listed twice; the second entry would never apply",
                    tool.name
                ),
            ));
        }
        seen.push(&tool.name);
        if let Some(d) = tool.timeout {
            positive(&tf("timeout"), d)?;
        }
        if let Some(d) = tool.stream_idle_timeout {
            positive(&tf("stream_idle_timeout"), d)?;
        }
        if let Some(o) = &tool.breaker {
            validate_breaker(&o.apply(&up.breaker), &|f| tf(&format!("breaker.{f}")))?;
        }
    }
    let r = &up.retry;
    let rf = |f: &str| field(&format!("retry.{f}"));
    if r.max_retries > 10 {
        return Err(ConfigError::invalid(
            rf("max_retries"),
            "at most 10; more retries only multiply load on a failing backend",
        ));
    }
    positive(&rf("backoff"), r.backoff)?;
    if r.max_backoff < r.backoff {
        return Err(ConfigError::invalid(
            rf("max_backoff"),
            "must be at least retry.backoff",
        ));
    }
    if !(0.0..=10.0).contains(&r.budget_ratio) {
        return Err(ConfigError::invalid(
            rf("budget_ratio"),
            "must be between 0 and 10 (retries per request)",
        ));
    }
    if !(0.0..=1_000_000.0).contains(&r.budget_min_per_second) {
        return Err(ConfigError::invalid(
            rf("budget_min_per_second"),
            "must be between 0 and 1000000",
        ));
    }
    positive(&rf("budget_ttl"), r.budget_ttl)?;
    if r.budget_ttl > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(rf("budget_ttl"), "at most 1h"));
    }
    statuses(&rf("statuses"), &r.statuses)?;
    if let Some(m) = r.idempotent_methods.iter().find(|m| m.is_empty()) {
        return Err(ConfigError::invalid(
            rf("idempotent_methods"),
            format!("`{m}` is not a method name"),
        ));
    }
    let h = &up.health_check;
    let hf = |f: &str| field(&format!("health_check.{f}"));
    positive(&hf("timeout"), h.timeout)?;
    match (h.kind, &h.path) {
        (HealthCheckKind::Http, None) => {
            return Err(ConfigError::invalid(
                hf("path"),
                "required when kind = \"http\" (e.g. \"/healthz\")",
            ));
        }
        (HealthCheckKind::Http, Some(p)) if !p.starts_with('/') || p.contains('#') => {
            return Err(ConfigError::invalid(
                hf("path"),
                format!("`{p}` must start with `/` and have no fragment"),
            ));
        }
        (HealthCheckKind::Http, Some(_)) => {}
        (_, Some(_)) => {
            return Err(ConfigError::invalid(
                hf("path"),
                "only used with kind = \"http\"",
            ));
        }
        (_, None) => {}
    }
    Ok(())
}

fn validate_breaker(b: &BreakerConfig, field: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if !b.enabled {
        return Ok(());
    }
    if b.consecutive_failures == 0 && b.failure_ratio == 0.0 {
        return Err(ConfigError::invalid(
            field("consecutive_failures"),
            "and failure_ratio are both 0, so the breaker could never open; set enabled = false instead",
        ));
    }
    if !(0.0..=1.0).contains(&b.failure_ratio) {
        return Err(ConfigError::invalid(
            field("failure_ratio"),
            "must be between 0 (off) and 1",
        ));
    }
    if b.failure_ratio > 0.0 {
        positive(&field("window"), b.window)?;
        if b.min_requests == 0 {
            return Err(ConfigError::invalid(
                field("min_requests"),
                "must be at least 1 when failure_ratio is set",
            ));
        }
    }
    positive(&field("open_duration"), b.open_duration)?;
    if b.max_open_duration < b.open_duration {
        return Err(ConfigError::invalid(
            field("max_open_duration"),
            "must be at least open_duration",
        ));
    }
    if !(1.0..=100.0).contains(&b.backoff_multiplier) {
        return Err(ConfigError::invalid(
            field("backoff_multiplier"),
            "must be between 1 (no growth) and 100",
        ));
    }
    if b.half_open_probes == 0 {
        return Err(ConfigError::invalid(
            field("half_open_probes"),
            "must be at least 1, or the circuit could never close",
        ));
    }
    if b.half_open_successes == 0 {
        return Err(ConfigError::invalid(
            field("half_open_successes"),
            "must be at least 1",
        ));
    }
    statuses(&field("failure_statuses"), &b.failure_statuses)
}

fn positive(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

fn statuses(field: &str, list: &[u16]) -> Result<(), ConfigError> {
    if let Some(s) = list.iter().find(|s| !(400..=599).contains(*s)) {
        return Err(ConfigError::invalid(
            field,
            format!("{s} is not an error status; use 400-599"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "resilience_tests.rs"]
mod tests;
