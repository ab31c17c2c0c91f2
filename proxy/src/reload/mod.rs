//! Config reload without a restart (`SIGHUP`, `POST /config/reload` on the admin listener): the
//! file the sidecar was started with is read again and, when valid, replaces routes, upstreams,
//! rules, limits, breaker and auth settings for new requests.
//!
//! - **Per request, one snapshot.** Everything a request uses hangs off one [`Generation`],
//!   loaded once when the request starts ([`Live`]); requests, streams and jobs' calls already
//!   running finish on the generation they started with. Connections are never touched.
//! - **All or nothing.** The new file is loaded and validated as `mcp-sidecar check` does (the
//!   same errors, with file, line and column), compared with the running config
//!   ([`restart_fields`]: listener addresses, TLS on/off, the job engine need a restart), and
//!   the whole new generation is built before anything changes. Any failure leaves the running
//!   config serving, and is logged and counted.
//! - **State that must survive does**: breakers (and retry budgets) of unchanged upstreams,
//!   buckets of unchanged rate-limit rules, the in-flight counters, connection pools of
//!   unchanged upstreams, readiness of unchanged upstreams, and the job engine with its jobs.
//! - **Background tasks follow**: the new generation's limits sweeper and health checks start,
//!   the old generation's stop.
//!
//! Reloads are serialised: one at a time, in the order asked.

mod diff;
mod generation;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{Value, json};

pub use diff::{RestartField, changed_sections, restart_fields, warnings};
pub use generation::{Generation, Live, LiveRunner, Shared};

use crate::build_info::ConfigInfo;
use crate::config::{Config, ConfigError};

/// Where the running config came from, to read it again: the file, and the command-line
/// overrides applied over it (`--listen`, `--admin`), applied again on every reload.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The TOML file.
    pub path: PathBuf,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
}

impl ConfigSource {
    /// The file alone, without overrides.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            listen: None,
            admin: None,
        }
    }

    /// Reads, resolves (`${ENV}`) and validates the file, with the overrides applied.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(&self.path)?;
        if let Some(addr) = &self.listen {
            config.listen.addr = addr.clone();
        }
        if let Some(addr) = &self.admin {
            config.admin.addr = addr.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// Why a reload was refused. The running config stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not a valid config, or what it names cannot be loaded (a JWKS or CA file):
    /// the message is `mcp-sidecar check`'s.
    #[error("{0}")]
    Invalid(String),
    /// It changes what only a restart can; nothing was applied.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    NeedsRestart(Vec<RestartField>),
    /// The sidecar was started without a config file.
    #[error(
        "the sidecar was started without --config: there is no file to read again (restart \
         it with --config FILE to use reloads)"
    )]
    NoFile,
}

/// A reload that was applied.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// The new config's hash.
    pub hash: String,
    /// The hash of the config it replaced.
    pub previous_hash: String,
    /// Top-level sections whose (redacted) values changed.
    pub changed: Vec<String>,
    /// What applies only partly until a restart.
    pub warnings: Vec<String>,
}

impl ReloadReport {
    /// The `POST /config/reload` answer.
    pub fn to_json(&self) -> Value {
        json!({
            "result": "ok",
            "hash": self.hash,
            "previous_hash": self.previous_hash,
            "changed": self.changed,
            "warnings": self.warnings,
        })
    }
}

/// The reload metrics: outcomes counted, and when the config last changed for the better.
#[derive(Debug, Clone)]
struct ReloadMetrics {
    /// `mcp_sidecar_config_reloads_total{result}` (`ok`, `error`).
    reloads: IntCounterVec,
    /// `mcp_sidecar_config_last_reload_successful`: 0 after a refused reload, until one succeeds.
    last_successful: IntGauge,
    /// `mcp_sidecar_config_last_reload_success_timestamp_seconds`: the start, then each
    /// successful reload (Prometheus' and Envoy's pair of the same names).
    last_success: IntGauge,
}

impl ReloadMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_config_reloads_total",
                "Config reloads asked for (SIGHUP, POST /config/reload), by result (ok, error).",
            ),
            &["result"],
        )?;
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        let last_successful = IntGauge::new(
            "mcp_sidecar_config_last_reload_successful",
            "1 unless the last reload was refused (the running config is then older than the \
             file).",
        )?;
        last_successful.set(1);
        let last_success = IntGauge::new(
            "mcp_sidecar_config_last_reload_success_timestamp_seconds",
            "Unix time the running config was loaded (at start, then by each successful reload).",
        )?;
        last_success.set(unix_now());
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_successful.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(Self {
            reloads,
            last_successful,
            last_success,
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What else follows the running generation (the admin listener's view of it).
pub type OnCommit = Box<dyn Fn(&Generation) + Send + Sync>;

/// Reloads the config: shared by the signal handler and the admin listener.
#[derive(Debug, Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    live: Arc<Live>,
    shared: Arc<Shared>,
    source: Option<ConfigSource>,
    /// Called with each generation put to work (the admin listener's view follows it).
    on_commit: OnCommit,
    config_info: ConfigInfo,
    metrics: ReloadMetrics,
    /// Whether serving began: from then on each generation runs its background tasks.
    serving: AtomicBool,
    /// One reload at a time.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("source", &self.source)
            .field("running", &self.live.current().view.hash)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// The reloader of a sidecar serving `live`, started from `source` (`None`: no file, no
    /// reloads); `on_commit` is told of each new generation. Registers the reload metrics.
    pub fn new(
        live: Arc<Live>,
        shared: Arc<Shared>,
        source: Option<ConfigSource>,
        on_commit: OnCommit,
        config_info: ConfigInfo,
    ) -> Result<Self, prometheus::Error> {
        let metrics = ReloadMetrics::register(shared.metrics.registry())?;
        Ok(Self {
            inner: Arc::new(Inner {
                live,
                shared,
                source,
                on_commit,
                config_info,
                metrics,
                serving: AtomicBool::new(false),
                lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Serving begins: the running generation's background tasks start (and every later
    /// generation's as it is swapped in).
    pub async fn begin_serving(&self) {
        let _one = self.inner.lock.lock().await;
        self.inner.serving.store(true, Ordering::SeqCst);
        self.inner.live.current().start(&self.inner.shared);
    }

    /// Reads the file again and applies it (see the module docs); `trigger` (`SIGHUP`,
    /// `admin`) is logged. The outcome is logged and counted here. The reload runs in a task
    /// of its own: one whose caller goes away (an admin client that hung up) still ends, and
    /// is still logged and counted.
    pub async fn reload(&self, trigger: &'static str) -> Result<ReloadReport, ReloadError> {
        let this = self.clone();
        tokio::spawn(async move { this.reload_here(trigger).await })
            .await
            .unwrap_or_else(|e| Err(ReloadError::Invalid(format!("the reload failed: {e}"))))
    }

    async fn reload_here(&self, trigger: &'static str) -> Result<ReloadReport, ReloadError> {
        let _one = self.inner.lock.lock().await;
        let result = self.try_reload().await;
        let m = &self.inner.metrics;
        match &result {
            Ok(report) => {
                m.reloads.with_label_values(&["ok"]).inc();
                m.last_successful.set(1);
                m.last_success.set(unix_now());
                for warning in &report.warnings {
                    tracing::warn!(trigger, "config reload: {warning}");
                }
                tracing::info!(
                    trigger,
                    hash = %report.hash,
                    previous_hash = %report.previous_hash,
                    changed = %report.changed.join(","),
                    "config reloaded"
                );
            }
            Err(e) => {
                m.reloads.with_label_values(&["error"]).inc();
                m.last_successful.set(0);
                tracing::error!(
                    trigger,
                    error = %e,
                    "config reload refused; the running config stays"
                );
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let inner = &self.inner;
        let source = inner.source.clone().ok_or(ReloadError::NoFile)?;
        // The file is read off the runtime's threads, as at start.
        let config = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|e| ReloadError::Invalid(format!("reading the config: {e}")))?
            .map_err(|e| ReloadError::Invalid(placed(&e, &inner.source)))?;
        let old = inner.live.current();
        let refused = restart_fields(&old.config, &config);
        if !refused.is_empty() {
            return Err(ReloadError::NeedsRestart(refused));
        }
        let warnings = warnings(&old.config, &config);
        let next = Generation::build(config, &inner.shared, Some(&old))
            .await
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let report = ReloadReport {
            hash: next.view.hash.clone(),
            previous_hash: old.view.hash.clone(),
            changed: changed_sections(&old.view.config, &next.view.config),
            warnings,
        };
        self.commit(next);
        Ok(report)
    }

    /// Puts a built generation to work. Nothing here can fail: the reload is decided.
    fn commit(&self, next: Generation) {
        let inner = &self.inner;
        let shared = &inner.shared;
        next.limits.apply_caps(&next.config);
        shared.readiness.replace(&next.upstreams);
        let next = Arc::new(next);
        if inner.serving.load(Ordering::SeqCst) {
            next.start(shared);
        }
        (inner.on_commit)(&next);
        let old = inner.live.swap(next.clone());
        old.stop();
        old.resilience.retire(&next.resilience);
        for gone in old
            .upstreams
            .iter()
            .filter(|u| next.upstream(&u.name).is_none())
        {
            let _ = shared
                .metrics
                .upstream_up
                .remove_label_values(&[&gone.name]);
        }
        inner.config_info.replace(&old.view.hash, &next.view.hash);
    }
}

/// A config error as `mcp-sidecar check` prints it: a placed error names the file in its
/// `-->` line already; any other is prefixed with the file.
fn placed(error: &ConfigError, source: &Option<ConfigSource>) -> String {
    match source {
        Some(s) if error.location().is_none() => format!("{}: {error}", s.path.display()),
        _ => error.to_string(),
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
