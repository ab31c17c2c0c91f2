//! `[jobs]`: the job engine (HTTP 202 offloading of long tool calls) and its store, and the
//! per-tool `offload` mode. On by default, durable by default: `Prefer: respond-async` works for
//! every `tools/call` with no configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where the job API is served on the client listener.
pub const DEFAULT_JOBS_PATH: &str = "/jobs";
/// Jobs running at once over all upstreams. A job holds an upstream connection for as long as
/// the call runs; 64 long calls is more than a backend written for a handful of clients takes,
/// and bounds what the sidecar holds open on its behalf.
pub const DEFAULT_MAX_RUNNING: usize = 64;
/// Jobs running at once against one upstream: a quarter of the global cap, so one slow backend
/// cannot take every slot from the others.
pub const DEFAULT_MAX_RUNNING_PER_UPSTREAM: usize = 16;
/// Jobs waiting to run before submissions are refused with 503. 10,000 records of a few KiB is
/// tens of MiB of store at worst, and at the default running cap far more work than a queue
/// should hold: past it, callers must be told to back off rather than wait for hours.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;
/// Largest job result kept. 16 MiB is four times the largest request body accepted by default:
/// tool results are bigger than calls (documents, reports), but a result is stored and served
/// again, so it must stay bounded.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
/// How long a finished job (and its result) stays fetchable. A day covers a batch pipeline that
/// submits at night and collects in the morning, and keeps the store from growing without end.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a replica's claim on a job lasts without renewal (`jobs.store = "redis"`). The
/// holder renews it every third of this, so two renewals may fail (a Redis fail-over, a long GC
/// pause) before another replica takes the job over; and a replica killed outright has its jobs
/// taken over within this plus one scan (a third of it). Ten seconds keeps both short.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The shortest `jobs.lease`: below it a renewal's round trip and a busy runtime eat most of
/// the margin, and jobs would be taken over from replicas that are alive.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// The store's file name inside `jobs.data_dir`.
pub const STORE_FILE: &str = "jobs.redb";

/// `[jobs]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Whether the job engine runs. Off: `Prefer: respond-async` is ignored (calls run live)
    /// and the job API is not served. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `redb` (durable, the default), `memory` (jobs are lost on restart) or `redis` (shared by
    /// several replicas; needs `[redis]`).
    #[serde(default)]
    pub store: StoreKind,
    /// Directory of the durable store (`jobs.redb` inside). Default: `$STATE_DIRECTORY` (set by
    /// systemd's `StateDirectory=`), else `$XDG_STATE_HOME/mcp-sidecar`, else
    /// `$HOME/.local/state/mcp-sidecar`, else `./mcp-sidecar-state`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Path prefix of the job API on the client listener. Default `/jobs`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Jobs running at once, over all upstreams. Default 64.
    #[serde(default = "default_max_running")]
    pub max_running: usize,
    /// Jobs running at once per upstream. Default 16.
    #[serde(default = "default_max_running_per_upstream")]
    pub max_running_per_upstream: usize,
    /// Jobs waiting to run; past it submissions get 503 and nothing is stored. Default 10,000.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Largest result kept; a larger answer fails the job (`result_too_large`). Default 16 MiB.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// How long a finished job stays fetchable before the sweeper removes it. Default 24 h.
    #[serde(default = "default_result_ttl", with = "humantime_serde")]
    pub result_ttl: Duration,
    /// With `store = "redis"`: how long a replica's claim on a job lasts unless renewed (every
    /// third of it); a dead replica's jobs are taken over after it. Default 10 s.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
}

/// `jobs.store`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded durable store in `jobs.data_dir`.
    #[default]
    Redb,
    /// In memory: fast, and every job is lost when the process ends.
    Memory,
    /// In Redis (`[redis]`): shared by every replica, which claim jobs with leases.
    Redis,
}

/// `[[upstream.tool]] offload`: whether a tool's calls may, or must, run as jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// Always live: `Prefer: respond-async` is ignored, `POST /jobs/...` is refused.
    Never,
    /// Live unless the caller asks for a job (the default).
    #[default]
    Allowed,
    /// Only as a job: a live call is refused with an error that points at the job API.
    Required,
}

fn default_true() -> bool {
    true
}
fn default_path() -> String {
    DEFAULT_JOBS_PATH.to_owned()
}
fn default_max_running() -> usize {
    DEFAULT_MAX_RUNNING
}
fn default_max_running_per_upstream() -> usize {
    DEFAULT_MAX_RUNNING_PER_UPSTREAM
}
fn default_max_queued() -> usize {
    DEFAULT_MAX_QUEUED
}
fn default_max_result_bytes() -> usize {
    DEFAULT_MAX_RESULT_BYTES
}
fn default_result_ttl() -> Duration {
    DEFAULT_RESULT_TTL
}
fn default_lease() -> Duration {
    DEFAULT_LEASE
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store: StoreKind::Redb,
            data_dir: None,
            path: default_path(),
            max_running: DEFAULT_MAX_RUNNING,
            max_running_per_upstream: DEFAULT_MAX_RUNNING_PER_UPSTREAM,
            max_queued: DEFAULT_MAX_QUEUED,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            result_ttl: DEFAULT_RESULT_TTL,
            lease: DEFAULT_LEASE,
        }
    }
}

impl JobsConfig {
    /// Jobs on, kept in memory (tests, and operators who do not want a file).
    pub fn in_memory() -> Self {
        Self {
            store: StoreKind::Memory,
            ..Self::default()
        }
    }

    /// The store directory: `data_dir`, else the documented default from the environment.
    pub fn resolved_data_dir(&self, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        // systemd may list several directories, separated by colons; the first is ours.
        if let Some(dirs) = set("STATE_DIRECTORY")
            && let Some(first) = dirs.split(':').next()
        {
            return PathBuf::from(first);
        }
        if let Some(state) = set("XDG_STATE_HOME") {
            return PathBuf::from(state).join("mcp-sidecar");
        }
        if let Some(home) = set("HOME") {
            return PathBuf::from(home).join(".local/state/mcp-sidecar");
        }
        PathBuf::from("mcp-sidecar-state")
    }

    /// Checks the section; errors name the field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.ends_with('/') {
            return Err(ConfigError::invalid(
                "jobs.path",
                format!(
                    "`{}` must be an absolute path without a trailing slash, such as /jobs",
                    self.path
                ),
            ));
        }
        for (field, value) in [
            ("jobs.max_running", self.max_running),
            (
                "jobs.max_running_per_upstream",
                self.max_running_per_upstream,
            ),
            ("jobs.max_queued", self.max_queued),
            ("jobs.max_result_bytes", self.max_result_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        if self.result_ttl < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "jobs.result_ttl",
                "must be at least 1s: a result that expires at once can never be fetched",
            ));
        }
        if self.lease < MIN_LEASE {
            return Err(ConfigError::invalid(
                "jobs.lease",
                format!(
                    "must be at least {}: a shorter lease is taken over from replicas that are alive",
                    humantime::format_duration(MIN_LEASE)
                ),
            ));
        }
        if let Some(dir) = &self.data_dir
            && dir.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "jobs.data_dir",
                "is empty; name a directory or leave the key out for the default",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn data_dir_defaults_follow_systemd_then_xdg_then_home() {
        let c = JobsConfig::default();
        assert_eq!(
            c.resolved_data_dir(&env(&[
                ("STATE_DIRECTORY", "/var/lib/a:/var/lib/b"),
                ("HOME", "/h")
            ])),
            PathBuf::from("/var/lib/a")
        );
        assert_eq!(
            c.resolved_data_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/mcp-sidecar")
        );
        assert_eq!(
            c.resolved_data_dir(&env(&[("HOME", "/h")])),
            PathBuf::from("/h/.local/state/mcp-sidecar")
        );
        assert_eq!(
            c.resolved_data_dir(&env(&[])),
            PathBuf::from("mcp-sidecar-state")
        );
        let explicit = JobsConfig {
            data_dir: Some("/srv/jobs".into()),
            ..JobsConfig::default()
        };
        assert_eq!(
            explicit.resolved_data_dir(&env(&[("HOME", "/h")])),
            PathBuf::from("/srv/jobs")
        );
    }

    fn load(toml: &str) -> Result<super::super::Config, ConfigError> {
        super::super::Config::from_toml_with_env(toml, &|_| None)
    }

    #[test]
    fn a_mount_under_the_job_api_is_refused_unless_jobs_are_off() {
        let upstream =
            "[[upstream]]\nname = \"u\"\nurl = \"http://b:1/mcp\"\npath = \"/jobs/mcp\"\n";
        let err = load(upstream).unwrap_err().to_string();
        assert!(
            err.starts_with("upstream[0].path") && err.contains("jobs.path"),
            "{err}"
        );
        assert!(load(&format!("[jobs]\nenabled = false\n{upstream}")).is_ok());
        assert!(load(&format!("[jobs]\npath = \"/tasks\"\n{upstream}")).is_ok());
    }

    #[test]
    fn a_zero_job_deadline_is_refused_with_the_tool() {
        let toml = "[[upstream]]\nname = \"u\"\nurl = \"http://b:1/mcp\"\n\
                    [[upstream.tool]]\nname = \"crawl\"\njob_deadline = \"0s\"\n";
        let err = load(toml).unwrap_err().to_string();
        assert!(err.starts_with("upstream[0].tool[0].job_deadline"), "{err}");
    }

    #[test]
    fn an_unknown_offload_mode_or_store_is_refused() {
        let tool = "[[upstream]]\nname = \"u\"\nurl = \"http://b:1/mcp\"\n\
                    [[upstream.tool]]\nname = \"t\"\noffload = \"sometimes\"\n";
        assert!(load(tool).unwrap_err().to_string().contains("sometimes"));
        let store =
            "[jobs]\nstore = \"sqlite\"\n[[upstream]]\nname = \"u\"\nurl = \"http://b:1/mcp\"\n";
        assert!(load(store).unwrap_err().to_string().contains("sqlite"));
    }

    #[test]
    fn zero_caps_and_bad_paths_are_refused_with_the_field() {
        let cases = [
            (
                JobsConfig {
                    max_running: 0,
                    ..JobsConfig::default()
                },
                "jobs.max_running",
            ),
            (
                JobsConfig {
                    max_queued: 0,
                    ..JobsConfig::default()
                },
                "jobs.max_queued",
            ),
            (
                JobsConfig {
                    path: "jobs".into(),
                    ..JobsConfig::default()
                },
                "jobs.path",
            ),
            (
                JobsConfig {
                    path: "/jobs/".into(),
                    ..JobsConfig::default()
                },
                "jobs.path",
            ),
            (
                JobsConfig {
                    result_ttl: Duration::ZERO,
                    ..JobsConfig::default()
                },
                "jobs.result_ttl",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
