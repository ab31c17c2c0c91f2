//! The sidecar's one connection to Redis (`[redis]`), shared by the features that span replicas:
//! the `redis` job store and `scope = "global"` rate limits.
//!
//! Redis must never hang a request, so every command goes through [`RedisConn::run`]:
//! - one multiplexed connection (redis-rs' `ConnectionManager`, which reconnects in the
//!   background), opened lazily: a sidecar starts, and serves with its fallbacks, while Redis is
//!   down;
//! - a deadline per command (`redis.command_timeout`), enforced here as well as by the client;
//! - a breaker of its own (the upstreams' [`Machine`], driven by consecutive failures only):
//!   after `redis.breaker_failures` failures in a row, commands fail at once with
//!   [`RedisError::Unavailable`] for `redis.breaker_open_duration` (doubling while probes fail),
//!   so an outage costs requests nothing once noticed; one probe at a time finds Redis back;
//! - metrics per operation and outcome, and a state for `/readyz`.
//!
//! What a feature does when a command fails is its own documented fallback; this module only
//! says that it failed and why.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::RedisConfig;
use crate::config::redis::MAX_BREAKER_OPEN;
use crate::resilience::{Machine, Outcome, Settings, State, Transition};

/// Why a command did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The connection's breaker is open: Redis failed recently and is not asked again yet.
    #[error("redis is unavailable (its breaker is open for another {retry_after:?})")]
    Unavailable {
        /// Time until the next probe.
        retry_after: Duration,
    },
    /// No answer within `redis.command_timeout`.
    #[error("redis did not answer {op} within {timeout:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// Redis answered with an error, or the connection failed.
    #[error("redis {op} failed: {source}")]
    Command {
        /// The operation.
        op: &'static str,
        /// The client's error.
        source: redis::RedisError,
    },
}

/// The `[redis]` connection could not be set up (a bad URL or CA file; nothing is dialled at
/// start).
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisStartError(String);

/// The connection, its breaker and its metrics.
pub struct RedisConn {
    manager: ConnectionManager,
    client: redis::Client,
    prefix: Arc<str>,
    command_timeout: Duration,
    connect_timeout: Duration,
    breaker: Mutex<Machine>,
    last_error: Mutex<Option<String>>,
    metrics: RedisMetrics,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// The connection `config` describes, with its metrics in `registry`. Nothing is dialled:
    /// the first command connects.
    pub fn new(config: &RedisConfig, registry: &Registry) -> Result<Arc<Self>, RedisStartError> {
        let client = client(config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            // Reconnecting is retried in the background; a command meanwhile fails at once and
            // counts towards the breaker, instead of waiting for the retries.
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| RedisStartError(e.to_string()))?;
        let settings = Settings {
            consecutive_failures: config.breaker_failures,
            failure_ratio: 0.0,
            window: Duration::from_secs(10),
            min_requests: u32::MAX,
            open_duration: config.breaker_open_duration,
            max_open_duration: MAX_BREAKER_OPEN.max(config.breaker_open_duration),
            backoff_multiplier: 2.0,
            half_open_probes: 1,
            half_open_successes: 1,
        };
        let metrics = RedisMetrics::new(registry).map_err(|e| RedisStartError(e.to_string()))?;
        Ok(Arc::new(Self {
            manager,
            client,
            prefix: config.key_prefix.as_str().into(),
            command_timeout: config.command_timeout,
            connect_timeout: config.connect_timeout,
            breaker: Mutex::new(Machine::new(settings, Instant::now())),
            last_error: Mutex::new(None),
            metrics,
        }))
    }

    /// `redis.key_prefix` followed by `rest`: every key the sidecar writes.
    pub fn key(&self, rest: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + rest.len());
        key.push_str(&self.prefix);
        key.push_str(rest);
        key
    }

    /// `redis.key_prefix`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs one operation `op` (a fixed name: a metric label) on the shared connection, under
    /// the deadline and the breaker.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let ticket = {
            let mut transitions = Vec::new();
            let acquired = self
                .lock_breaker()
                .acquire(Instant::now(), &mut transitions);
            self.log_transitions(&transitions);
            match acquired {
                Ok(ticket) => ticket,
                Err(rejected) => {
                    self.metrics.observe(op, "unavailable", None);
                    return Err(RedisError::Unavailable {
                        retry_after: rejected.retry_after,
                    });
                }
            }
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.command_timeout, f(self.manager.clone())).await;
        let elapsed = started.elapsed();
        let (outcome, result) = match result {
            Ok(Ok(value)) => (Outcome::Success, Ok(value)),
            // An error Redis itself answered (a script's `error_reply`, WRONGTYPE) says the
            // server is up; only failures to get an answer count towards the breaker.
            Ok(Err(e)) if is_server_reply(&e) => {
                (Outcome::Success, Err(RedisError::Command { op, source: e }))
            }
            Ok(Err(e)) => (Outcome::Failure, Err(RedisError::Command { op, source: e })),
            Err(_) => (
                Outcome::Failure,
                Err(RedisError::Timeout {
                    op,
                    timeout: self.command_timeout,
                }),
            ),
        };
        let mut transitions = Vec::new();
        self.lock_breaker()
            .record(ticket, Some(outcome), Instant::now(), &mut transitions);
        self.log_transitions(&transitions);
        let label = match &result {
            Ok(_) => "ok",
            Err(RedisError::Timeout { .. }) => "timeout",
            Err(_) if outcome == Outcome::Success => "reply_error",
            Err(_) => "error",
        };
        self.metrics.observe(op, label, Some(elapsed));
        match &result {
            Err(e) if outcome == Outcome::Failure => self.set_last_error(Some(e.to_string())),
            _ if outcome == Outcome::Success => self.set_last_error(None),
            _ => {}
        }
        result
    }

    /// A dedicated connection for `SUBSCRIBE` (a subscribed connection can carry nothing else),
    /// within `redis.connect_timeout`. Refused at once while the breaker is open.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        let state = self.state();
        if state == State::Open {
            let retry_after = self
                .lock_breaker()
                .snapshot(Instant::now(), &mut Vec::new())
                .open_for
                .unwrap_or_default();
            return Err(RedisError::Unavailable { retry_after });
        }
        match tokio::time::timeout(self.connect_timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(source)) => Err(RedisError::Command {
                op: "subscribe",
                source,
            }),
            Err(_) => Err(RedisError::Timeout {
                op: "subscribe",
                timeout: self.connect_timeout,
            }),
        }
    }

    /// The breaker's phase now.
    pub fn state(&self) -> State {
        let mut transitions = Vec::new();
        let state = self
            .lock_breaker()
            .snapshot(Instant::now(), &mut transitions)
            .state;
        self.log_transitions(&transitions);
        state
    }

    /// The `redis` entry of `/readyz`: the breaker's phase and the last failure. Redis being
    /// down does not make the sidecar unready (every feature on it has a fallback, and failing
    /// readiness on every replica at once would take the whole Service out); it is shown so an
    /// operator sees it.
    pub fn report(&self) -> Value {
        let state = match self.state() {
            State::Closed => "up",
            State::HalfOpen => "probing",
            State::Open => "down",
        };
        let mut entry = json!({ "state": state });
        if let Ok(err) = self.last_error.lock()
            && let Some(err) = err.as_ref()
        {
            entry["error"] = Value::String(err.clone());
        }
        entry
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Machine> {
        // The machine's state stays consistent between calls (each call is a whole step), so
        // a panic elsewhere while holding the lock leaves nothing half-done.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }

    fn log_transitions(&self, transitions: &[Transition]) {
        for t in transitions {
            self.metrics.breaker_state.set(t.to.gauge());
            match t.to {
                State::Open => tracing::warn!(
                    from = t.from.as_str(),
                    "redis breaker opened: commands fail at once, features use their fallback"
                ),
                State::HalfOpen => tracing::info!("redis breaker half-open: probing"),
                State::Closed => tracing::info!("redis breaker closed: redis is back"),
            }
        }
    }
}

/// Replies that mean Redis cannot serve now (loading its data, a script stuck, a replica
/// without its primary, credentials refused): failures for the breaker, like no answer.
const UNAVAILABLE_REPLIES: &[&str] = &[
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "NOAUTH",
    "WRONGPASS",
    "READONLY",
];

/// Whether `e` is an answer of a working Redis (a script's error reply, WRONGTYPE), as opposed
/// to a failure to reach it or a server that cannot serve.
fn is_server_reply(e: &redis::RedisError) -> bool {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        return false;
    }
    e.code()
        .is_some_and(|code| !UNAVAILABLE_REPLIES.contains(&code))
}

/// The client for `config`: its URL, with the user, password and CA of the config applied.
fn client(config: &RedisConfig) -> Result<redis::Client, RedisStartError> {
    use redis::IntoConnectionInfo;
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| RedisStartError(format!("redis.url: {e}")))?;
    let mut redis_settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        redis_settings = redis_settings.set_username(user);
    }
    if let Some(password) = &config.password {
        redis_settings = redis_settings.set_password(password.expose());
    }
    info = info.set_redis_settings(redis_settings);
    // TCP_NODELAY (redis-rs leaves Nagle on): commands are small writes on a multiplexed
    // connection, and a command written while an earlier one is unacknowledged would otherwise
    // wait for that ACK, as any Redis client avoids.
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    info = info.set_tcp_settings(tcp);
    match &config.ca_file {
        None => redis::Client::open(info).map_err(|e| RedisStartError(e.to_string())),
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| {
                RedisStartError(format!(
                    "redis.ca_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .map_err(|e| RedisStartError(format!("redis.ca_file: {e}")))
        }
    }
}

/// `mcp_sidecar_redis_*`.
#[derive(Debug, Clone)]
struct RedisMetrics {
    commands: IntCounterVec,
    duration: HistogramVec,
    breaker_state: IntGauge,
}

impl RedisMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let commands = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_redis_commands_total",
                "Redis operations by operation and outcome (ok, reply_error, error, timeout, \
                 unavailable: refused by the open breaker without asking Redis).",
            ),
            &["op", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mcp_sidecar_redis_command_duration_seconds",
                "Time for a Redis operation to answer, by operation.",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["op"],
        )?;
        let breaker_state = IntGauge::new(
            "mcp_sidecar_redis_breaker_state",
            "The Redis connection's breaker: 0 closed, 1 half-open, 2 open (Redis unavailable).",
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        Ok(Self {
            commands,
            duration,
            breaker_state,
        })
    }

    fn observe(&self, op: &'static str, outcome: &'static str, elapsed: Option<Duration>) {
        self.commands.with_label_values(&[op, outcome]).inc();
        if let Some(elapsed) = elapsed {
            self.duration
                .with_label_values(&[op])
                .observe(elapsed.as_secs_f64());
        }
    }
}

#[cfg(test)]
#[path = "redis_conn_tests.rs"]
mod tests;
