//! Configuration: the TOML file's shape, its defaults and its loading.
//!
//! Loading is three steps (`load`), each with errors that name the field's full path and its
//! file, line and column:
//! 1. parse the TOML text into a tree that keeps every position,
//! 2. resolve `${ENV_VAR}` references inside its string values ([`env`]),
//! 3. deserialize into the typed structs below (`deny_unknown_fields`, so a typo is an error,
//!    with the closest key suggested) and [`validate`](Config::validate) what types alone
//!    cannot express.

pub mod auth;
pub mod cors;
mod env;
pub mod jobs;
mod limits;
mod load;
pub mod redis;
pub mod resilience;
pub mod tasks;
mod traces;
mod validate;
mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Policy name of the per-principal stream cap in headers and metrics (reserved for rules).
pub const STREAMS_POLICY: &str = "streams-per-principal";

pub use auth::{
    ApiKeyConfig, AuthConfig, CredentialConfig, JwtIssuerConfig, RuleConfig, Secret,
    UpstreamAuthConfig,
};
pub use cors::{CorsConfig, DEFAULT_CORS_MAX_AGE};
pub use env::resolve_env;
pub use jobs::{JobsConfig, Offload, StoreKind};
pub use limits::{
    DEFAULT_LOCAL_BUDGET, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_KEYS, DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_STREAMS_PER_PRINCIPAL, DEFAULT_SHED_RETRY_AFTER, DEFAULT_SWEEP_INTERVAL, KeyPart,
    LimitsConfig, MAX_PERIOD, RateLimitRule, RedisFailure, Scope,
};
pub use load::Location;
pub use redis::RedisConfig;
pub use resilience::{
    BreakerConfig, BreakerOverride, HealthCheckConfig, HealthCheckKind, RetryConfig, ToolConfig,
};
pub use tasks::{TaskSupport, TasksMode, ToolTasks, UpstreamTasks};
pub use traces::{
    DEFAULT_TRACING_ENDPOINT, DEFAULT_TRACING_EXPORT_TIMEOUT, DEFAULT_TRACING_SAMPLING,
    DEFAULT_TRACING_SERVICE_NAME, MAX_TRACING_EXPORT_TIMEOUT, TracingConfig,
};
pub(crate) use validate::normalise_mount;
pub use view::{ConfigView, same};

/// Listener address used when neither the file nor the command line names one.
/// Loopback, because a sidecar is reached by its neighbours, not by the world, until told otherwise.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";
/// Admin listener address: loopback so metrics and health never leak onto a public interface by default.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
/// Shortest `admin.token`: one shared credential guards every operator action (forcing circuits,
/// the config, the metrics), so it must be a random string, not a word; 32 characters is 128 bits
/// as `openssl rand -hex 16` writes them, the HMAC secret's minimum too.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
/// How long in-flight requests may run after SIGTERM. 30 s matches Kubernetes'
/// default `terminationGracePeriodSeconds`, so the pod is not killed before we are done.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long the listener keeps accepting after SIGTERM while `/readyz` already says 503. Whoever
/// routes to the sidecar learns of the shutdown late: Kubernetes endpoints propagate to kube-proxy
/// and ingress controllers in a second or two, and a load balancer stops sending after its next
/// failed readiness probe. 5 s covers both with a margin (the usual `preStop: sleep 5`) without
/// making every rollout noticeably slower.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Longest `shutdown.drain_delay` accepted: a longer one is almost surely a unit typo (`5m` for
/// `5s`) that would keep a terminating instance taking traffic; no endpoint controller or load
/// balancer needs more than a few probe intervals.
pub const MAX_DRAIN_DELAY: Duration = Duration::from_secs(300);
/// Time allowed to read a request's headers: stops slowloris clients from holding connections.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a request body (408 after): nginx's `client_body_timeout`,
/// halved. nginx's 60 s is sized for people uploading over any link; an MCP body is one JSON
/// message a program writes at once, and every second a stalled body holds an in-flight slot. 30 s
/// still covers a client paused by a GC or a congested link, and is 3x the header timeout.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Slowest average rate, bytes/s, a request body may arrive at beyond `body_read_timeout` (the body
/// gets that timeout plus one second per this many bytes; Apache mod_reqtimeout's `MinRate`, whose
/// example is 500). 8 KiB/s is 64 kbit/s, below any link a program calling tools runs on, so no real
/// client meets it; a trickle that keeps inside the idle timeout is cut within seconds of it, and
/// even a largest (4 MiB) body can hold a slot for at most ~9 minutes.
pub const DEFAULT_BODY_MIN_RATE: u64 = 8 * 1024;
/// TCP connect timeout to a backend. A sidecar's backend is next door; if it has not accepted a
/// connection in 5 s it is not going to, and the caller should get a 502 rather than wait.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to the backend's response headers. Long enough for slow tool calls answered as plain JSON;
/// tools that run longer should stream (SSE) or get their own timeout.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// An answer (a streamed one included) is cut when the backend sends nothing for this long. It is
/// an idle timeout, reset by every frame, never a total deadline: long tool calls that stream
/// live on. Standing streams (GET SSE, `subscriptions/listen`) get none: silence is normal there.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Interval of `: keepalive` comments on an idle SSE stream. Load balancers cut idle connections
/// after ~60 s (AWS ALB default) and nginx after 60 s; 15 s stays well inside both.
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Idle pooled connections to the backend are closed after this. Less than the 5 s keep-alive of
/// Node's http server and uvicorn, so we never reuse a connection the backend is about to close
/// (which fails with "connection closed before message completed").
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per backend: enough to absorb bursts without re-handshaking, small enough
/// not to pin file descriptors on a backend that was written for a handful of clients.
pub const DEFAULT_POOL_MAX_IDLE: usize = 32;
/// How often the background reachability check connects to each backend for `/readyz`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Largest POST body accepted (413 above). A POST body is one JSON-RPC message that must be read
/// whole to classify it (method, tool, id); 4 MiB holds any sane tool call, including modest
/// base64 payloads, while bounding the memory one request can pin.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing listener.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The admin listener (metrics, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Shutdown behaviour.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The backends and where they are mounted.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// Authentication, Host/Origin allow-lists, claim headers (`[auth]`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Concurrency caps and shared rate-limit settings (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Rate-limit rules over every upstream (`[[rate_limit]]`).
    #[serde(default)]
    pub rate_limit: Vec<RateLimitRule>,
    /// The CORS policy: preflights answered here, CORS headers on answers (`[cors]`).
    #[serde(default)]
    pub cors: CorsConfig,
    /// The job engine: 202 offloading of long calls, and its store (`[jobs]`).
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The Redis connection shared by the features that span replicas (`[redis]`): the job
    /// store `redis` and `scope = "global"` rate limits. Default: none.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// OpenTelemetry traces, exported over OTLP/HTTP (`[tracing]`; off by default).
    #[serde(default)]
    pub tracing: TracingConfig,
}

/// `[listen]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address to accept clients on. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen_addr")]
    pub addr: String,
    /// Serve TLS (HTTP/1.1 and HTTP/2 via ALPN). Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Time allowed for a client to send request headers. Default 10 s.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest POST body accepted; larger ones get 413. Default 4 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest wait for the next request body bytes (408 after). Default 30 s.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Slowest average request body rate in bytes/s beyond `body_read_timeout` (408 below);
    /// 0 turns the rule off. Default 8 KiB/s.
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: u64,
}

/// `[listen.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:9090`.
    #[serde(default = "default_admin_addr")]
    pub addr: String,
    /// Bearer token every admin request but `/healthz` and `/readyz` must carry; an environment
    /// reference (`"${ADMIN_TOKEN}"`), at least [`MIN_ADMIN_TOKEN_LEN`] characters. Default: none.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests and streams may run after SIGTERM/SIGINT. Default 30 s.
    #[serde(default = "default_grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
    /// How long, after SIGTERM/SIGINT, the listener keeps accepting while `/readyz` answers 503,
    /// before the grace period starts; `0s` goes straight to it. Default 5 s.
    #[serde(default = "default_drain_delay", with = "humantime_serde")]
    pub drain_delay: Duration,
}

/// One `[[upstream]]`: a backend MCP server and the path it is mounted on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name used in metrics and logs: letters, digits, `_` and `-`.
    pub name: String,
    /// The backend's MCP endpoint, `http://` or `https://`.
    pub url: String,
    /// Where clients reach it on the sidecar. Default: the path of `url`.
    #[serde(default)]
    pub path: Option<String>,
    /// TCP connect timeout. Default 5 s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time to the backend's response headers. Default 120 s.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// An answer's body is cut when the backend sends nothing for this long (standing streams,
    /// GET SSE and `subscriptions/listen`, have no idle timeout). Default 300 s.
    #[serde(default = "default_stream_idle_timeout", with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Interval of `: keepalive` comments on idle SSE streams; `0s` turns them off. Default 15 s.
    #[serde(default = "default_sse_keepalive", with = "humantime_serde")]
    pub sse_keepalive: Duration,
    /// Idle pooled connections are closed after this. Default 4 s.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept. Default 32.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Extra PEM CA bundle trusted for an `https://` backend (in addition to the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Interval of the background reachability check that feeds `/readyz`. Default 5 s.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
    /// Public or protected, backend credential, authorization rules (`[upstream.auth]`).
    #[serde(default)]
    pub auth: UpstreamAuthConfig,
    /// Circuit breaker (`[upstream.breaker]`).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Per-tool timeouts, idempotence and breakers (`[[upstream.tool]]`).
    #[serde(default)]
    pub tool: Vec<ToolConfig>,
    /// Retries and their budget (`[upstream.retry]`).
    #[serde(default)]
    pub retry: RetryConfig,
    /// The background check behind `/readyz` (`[upstream.health_check]`).
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Requests in flight to this upstream before the sidecar sheds load (503); `0` = no cap.
    #[serde(default)]
    pub max_in_flight: usize,
    /// Rate-limit rules for this upstream only (`[[upstream.rate_limit]]`).
    #[serde(default)]
    pub rate_limit: Vec<RateLimitRule>,
    /// `off`, `facade` or `passthrough`: how MCP Tasks meet this upstream ([`tasks`]). Default:
    /// automatic (facade for tools that set `offload`, passthrough when the backend advertises
    /// Tasks itself).
    #[serde(default)]
    pub tasks: Option<TasksMode>,
}

fn default_listen_addr() -> String {
    DEFAULT_LISTEN_ADDR.to_owned()
}
fn default_admin_addr() -> String {
    DEFAULT_ADMIN_ADDR.to_owned()
}
fn default_grace_period() -> Duration {
    DEFAULT_GRACE_PERIOD
}
fn default_drain_delay() -> Duration {
    DEFAULT_DRAIN_DELAY
}
fn default_header_read_timeout() -> Duration {
    DEFAULT_HEADER_READ_TIMEOUT
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_body_read_timeout() -> Duration {
    DEFAULT_BODY_READ_TIMEOUT
}
fn default_body_min_rate() -> u64 {
    DEFAULT_BODY_MIN_RATE
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_response_timeout() -> Duration {
    DEFAULT_RESPONSE_TIMEOUT
}
fn default_stream_idle_timeout() -> Duration {
    DEFAULT_STREAM_IDLE_TIMEOUT
}
fn default_sse_keepalive() -> Duration {
    DEFAULT_SSE_KEEPALIVE
}
fn default_pool_idle_timeout() -> Duration {
    DEFAULT_POOL_IDLE_TIMEOUT
}
fn default_pool_max_idle() -> usize {
    DEFAULT_POOL_MAX_IDLE
}
fn default_health_interval() -> Duration {
    DEFAULT_HEALTH_INTERVAL
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            addr: default_listen_addr(),
            tls: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
        }
    }
}
impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: default_admin_addr(),
            token: None,
        }
    }
}
impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period: DEFAULT_GRACE_PERIOD,
            drain_delay: DEFAULT_DRAIN_DELAY,
        }
    }
}

impl UpstreamConfig {
    /// An upstream with every tunable at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>, path: Option<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            path,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            sse_keepalive: DEFAULT_SSE_KEEPALIVE,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
            ca_file: None,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            auth: UpstreamAuthConfig::default(),
            breaker: BreakerConfig::default(),
            tool: Vec::new(),
            retry: RetryConfig::default(),
            health_check: HealthCheckConfig::default(),
            max_in_flight: 0,
            rate_limit: Vec::new(),
            tasks: None,
        }
    }
}

/// Why a configuration was rejected. Every message names the field and what to do, and, for a
/// config read from text, where in it the problem is: the message, then `  --> FILE:LINE:COL`
/// (rustc's layout, so editors and terminals link to it).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, or a field of the wrong type or an unknown field (the message names the field).
    #[error("{0}")]
    Parse(ParseError),
    /// `${VAR}` names a variable that is not set.
    #[error(
        "{field}: environment variable `{var}` is not set (referenced as `${{{var}}}`){}",
        at(location)
    )]
    MissingEnv {
        /// Dotted path of the field.
        field: String,
        /// The variable.
        var: String,
        /// Where the reference is.
        location: Option<Location>,
    },
    /// Malformed `${...}` reference.
    #[error("{field}: {message}{}", at(location))]
    BadEnvReference {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
        /// Where the reference is.
        location: Option<Location>,
    },
    /// A value that parses but makes no sense.
    #[error("{field}: {message}{}", at(location))]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
        /// Where the value (or, for a key left at its default, its table) is.
        location: Option<Location>,
    },
}

/// A TOML syntax or deserialization error: the message (starting with the field's path when
/// it is known) and where.
#[derive(Debug)]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub location: Option<Location>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.message, at(&self.location))
    }
}

/// The `  --> FILE:LINE:COL` line that follows a located message.
fn at(location: &Option<Location>) -> String {
    location
        .as_ref()
        .map(|l| format!("\n  --> {l}"))
        .unwrap_or_default()
}

impl ConfigError {
    /// The dotted path of the field the error is about, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingEnv { field, .. }
            | Self::BadEnvReference { field, .. }
            | Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } | Self::Parse(_) => None,
        }
    }

    /// Where in the file the error is, when known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::MissingEnv { location, .. }
            | Self::BadEnvReference { location, .. }
            | Self::Invalid { location, .. }
            | Self::Parse(ParseError { location, .. }) => location.as_ref(),
            Self::Read { .. } => None,
        }
    }

    /// This error, placed at `location`.
    pub(crate) fn at(mut self, place: Location) -> Self {
        match &mut self {
            Self::MissingEnv { location, .. }
            | Self::BadEnvReference { location, .. }
            | Self::Invalid { location, .. }
            | Self::Parse(ParseError { location, .. }) => *location = Some(place),
            Self::Read { .. } => {}
        }
        self
    }

    pub(crate) fn parse(message: impl Into<String>) -> Self {
        Self::Parse(ParseError {
            message: message.into(),
            location: None,
        })
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
            location: None,
        }
    }
}

impl Config {
    /// Reads, resolves and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        load::parse(&text, Some(path), &|name| std::env::var(name).ok())
    }

    /// Parses TOML text, resolving `${VAR}` with `lookup`, and validates the result.
    pub fn from_toml_with_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        load::parse(text, None, lookup)
    }

    /// A config with one upstream and everything else at defaults (`run --upstream URL`).
    pub fn quick_start(upstream_url: &str) -> Result<Config, ConfigError> {
        let config = Config {
            listen: ListenConfig::default(),
            admin: AdminConfig::default(),
            shutdown: ShutdownConfig::default(),
            upstream: vec![UpstreamConfig::new("default", upstream_url, None)],
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            rate_limit: Vec::new(),
            cors: CorsConfig::default(),
            jobs: JobsConfig::default(),
            redis: None,
            tracing: TracingConfig::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The listener address, parsed (validated at load).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        validate::parse_addr("listen.addr", &self.listen.addr)
    }

    /// The admin address, parsed (validated at load).
    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        validate::parse_addr("admin.addr", &self.admin.addr)
    }
}
