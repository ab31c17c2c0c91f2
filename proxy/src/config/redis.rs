//! `[redis]`: the one Redis connection that the features shared between replicas use (the job
//! store `jobs.store = "redis"` and the rate-limit rules with `scope = "global"`).
//!
//! The sidecar keeps one multiplexed connection per process (Redis pipelines requests on it), so
//! there is no pool to size. Every command has a deadline, and a breaker of the connection's own
//! fails commands at once while Redis is down, so a Redis outage costs each request at most
//! `command_timeout`, and after the breaker opens nothing at all: the features' documented
//! fallbacks take over.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// Longest wait to open a connection (TCP, TLS, `AUTH`). Redis beside the sidecars answers a
/// connect in a millisecond or two; a second covers a cross-zone hop and a TLS handshake on a
/// loaded host without letting a dead address hold requests.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one command's answer. A rate-limit check is on the request path: a healthy
/// Redis answers in well under a millisecond, so 250 ms only ever fires on a stalled server,
/// and then bounds what each request pays before the fallback decides.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// Consecutive failed commands that open the connection's breaker. Five in a row is an outage,
/// not one lost packet.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// How long the open breaker fails commands at once before one probe is let through. Two
/// seconds keeps a dead Redis from costing every request a timeout, and notices a restarted one
/// quickly (the period doubles while probes fail, up to [`MAX_BREAKER_OPEN`]).
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(2);
/// Cap of the breaker's open period while probes keep failing.
pub const MAX_BREAKER_OPEN: Duration = Duration::from_secs(30);
/// Prefix of every key the sidecar writes: one Redis can serve other applications, and several
/// sidecar deployments can share one Redis with prefixes of their own.
pub const DEFAULT_KEY_PREFIX: &str = "mcp-sidecar:";

/// `[redis]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS). Usually `"${REDIS_URL}"`. A
    /// password may be in the URL (it is redacted wherever the config is shown) or in
    /// `password`.
    pub url: String,
    /// ACL user name (Redis 6+); default: the URL's, else `default`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password (`"${REDIS_PASSWORD}"`); overrides one in the URL.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate (`rediss://` only); default:
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest wait to connect. Default 1 s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for a command's answer. Default 250 ms.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Consecutive failed commands that open the connection's breaker. Default 5.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the open breaker fails commands at once before a probe. Default 2 s.
    #[serde(default = "default_breaker_open", with = "humantime_serde")]
    pub breaker_open_duration: Duration,
    /// Prefix of every key. Default `mcp-sidecar:`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_command_timeout() -> Duration {
    DEFAULT_COMMAND_TIMEOUT
}
fn default_breaker_failures() -> u32 {
    DEFAULT_BREAKER_FAILURES
}
fn default_breaker_open() -> Duration {
    DEFAULT_BREAKER_OPEN
}
fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

impl RedisConfig {
    /// Checks the section; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            ConfigError::invalid(
                "redis.url",
                format!(
                    "`{}` is not a URL: {e} (expected redis://host:port/db or rediss://...)",
                    super::view::shown_url(&self.url)
                ),
            )
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(ConfigError::invalid(
                    "redis.url",
                    format!("scheme `{other}` is not supported; use redis:// or rediss:// (TLS)"),
                ));
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "redis.url",
                format!("`{}` has no host", super::view::shown_url(&self.url)),
            ));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(ConfigError::invalid(
                "redis.url",
                format!("the path `/{db}` must be a database number (`/0`)"),
            ));
        }
        if let Some(ca) = &self.ca_file {
            if !tls {
                return Err(ConfigError::invalid(
                    "redis.ca_file",
                    "only meaningful with a rediss:// url",
                ));
            }
            if !ca.is_file() {
                return Err(ConfigError::invalid(
                    "redis.ca_file",
                    format!("file `{}` does not exist or is not a file", ca.display()),
                ));
            }
        }
        for (field, value) in [
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.command_timeout", self.command_timeout),
            ("redis.breaker_open_duration", self.breaker_open_duration),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be longer than 0s"));
            }
        }
        if self.breaker_failures == 0 {
            return Err(ConfigError::invalid(
                "redis.breaker_failures",
                "must be at least 1",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "redis.key_prefix",
                "must be non-empty and without whitespace",
            ));
        }
        Ok(())
    }
}
