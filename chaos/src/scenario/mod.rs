//! Scenario files: what a chaos scenario is (the system under test, the traffic, the steady
//! state checked before anything breaks, the faults on a timeline and the assertions), read from
//! TOML by [`Scenario::from_toml`] with errors naming the file, the line and the key.
//!
//! This module holds the format and its checks only; the runner that executes a scenario is
//! separate (it reads these types, never the TOML). `spec`: the file's tables and the timeline
//! checks; `checks`: the `[[assert]]` kinds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::HttpFault;
use crate::tcp::toxic::Toxic;

mod checks;
mod spec;

/// A checked scenario: every key known, every value usable, the timeline consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name, for reports.
    pub name: String,
    /// The one-paragraph promise the scenario checks.
    pub description: String,
    /// Seed of every fault decision (none: the runner picks one and prints it).
    pub seed: Option<u64>,
    /// What is under test.
    pub system: System,
    /// The traffic sent throughout the run.
    pub traffic: Traffic,
    /// What must hold before any fault.
    pub steady_state: SteadyState,
    /// The faults, in file order.
    pub faults: Vec<Fault>,
    /// The assertions, in file order.
    pub asserts: Vec<Assert>,
}

/// The system under test.
#[derive(Debug, Clone, PartialEq)]
pub enum System {
    /// The runner starts the fixture backend and the real `mcp-sidecar` with this config.
    Managed {
        /// The sidecar config, relative to the scenario file's directory unless absolute.
        sidecar_config: PathBuf,
        /// How the fixture backend runs.
        fixture: FixtureOptions,
        /// The runner serves a JWKS of the shipped test keys (`CHAOS_JWKS_URL`, behind a fault
        /// link of its own) and signs the traffic's requests with one of them.
        jwks: bool,
    },
    /// A system already running.
    External {
        /// Where traffic goes (the sidecar's MCP URL).
        target_url: String,
        /// The sidecar's admin address (`/breakers`, `/metrics`), when reachable.
        admin_url: Option<String>,
        /// The backend's request counters (the fixture's `/stats`), when reachable.
        backend_stats_url: Option<String>,
    },
}

impl System {
    /// Whether the runner starts the sidecar itself (so it can kill it, read its RSS).
    pub fn is_managed(&self) -> bool {
        matches!(self, Self::Managed { .. })
    }
}

/// The fixture backend's options (the `mcp-fixture` flags of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureOptions {
    /// Answers as SSE streams rather than JSON (`--mode sse`).
    pub sse: bool,
    /// No sessions (`--stateless`).
    pub stateless: bool,
    /// The conformance suite's task tools (`--conformance-tools`).
    pub conformance_tools: bool,
}

/// The traffic mcp-load sends during the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Open loop (rate) or closed loop (concurrency).
    pub load: Load,
    /// What each request is.
    pub request: Request,
    /// Virtual sessions the requests are spread over.
    pub sessions: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long the run lasts; every fault ends within it.
    pub duration: Duration,
    /// Sidecar jobs (`Prefer: respond-async`) submitted evenly over the first half of the run
    /// (0: none); each is followed to its end after the run.
    pub jobs: u32,
    /// The jobs' `tools/call`, in mcp-load's `--call` form (default: the traffic's call).
    pub job_call: Option<String>,
}

/// How hard the traffic pushes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Requests per second, whatever the answers' latency.
    Rate(f64),
    /// Requests in flight at once.
    Concurrency(u32),
}

/// What each request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `tools/call` in mcp-load's `--call` form (`"echo {\"text\":\"hi\"}"`).
    Call(String),
    /// A JSON-RPC method without params (`tools/list`, `ping`).
    Method(String),
}

/// The steady-state hypothesis, checked over `duration` before the first fault.
#[derive(Debug, Clone, PartialEq)]
pub struct SteadyState {
    /// How long it is measured.
    pub duration: Duration,
    /// Share of successful requests at least this (0 to 1).
    pub min_success_rate: Option<f64>,
    /// p99 latency below this.
    pub max_p99: Option<Duration>,
}

/// One fault on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Unique in the scenario (default `fault-N`); seeds the fault's dice.
    pub name: String,
    /// When it starts, from the start of the run.
    pub at: Duration,
    /// When it is removed (for `kill_sidecar`: when the sidecar is restarted).
    pub until: Duration,
    /// What breaks.
    pub action: FaultAction,
    /// The link a TCP fault (`toxic`, `proxy_down`) acts on.
    pub link: Link,
    /// The line of its `[[fault]]` table, for reports.
    pub line: usize,
}

/// A link the runner can break at the TCP level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Link {
    /// Between the sidecar and the backend.
    #[default]
    Backend,
    /// Between the sidecar and the JWKS endpoint (`system.jwks`).
    Jwks,
}

impl Link {
    /// Its name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Jwks => "jwks",
        }
    }
}

/// What a fault breaks.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// A TCP toxic on the link between the sidecar and the backend.
    Toxic(Toxic),
    /// The TCP link is down: the backend refuses connections.
    ProxyDown,
    /// A per-request HTTP/MCP fault in front of the backend.
    Http(HttpFault),
    /// The sidecar process is killed with `signal`, and started again at the fault's end.
    KillSidecar {
        /// The signal.
        signal: Signal,
    },
}

/// A signal to kill the sidecar with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// No chance to clean up.
    Kill,
    /// A graceful stop.
    Term,
}

/// One assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Assert {
    /// Its name in reports (default: the kind).
    pub name: Option<String>,
    /// What is checked.
    pub check: Check,
    /// The line of its `[[assert]]` table.
    pub line: usize,
}

/// The assertion kinds, each with its parameters. `fault`: the fault it is about (default: each
/// fault that can open the breaker).
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The circuit opens within `requests` failed requests (admin `/breakers` and metrics).
    CircuitOpensWithin {
        requests: u64,
        fault: Option<String>,
    },
    /// While the circuit is open, p99 of the answers is below `p99`.
    FastFail {
        p99: Duration,
        fault: Option<String>,
    },
    /// While the circuit is open, the backend's counters do not move.
    NoBackendRequestsWhileOpen { fault: Option<String> },
    /// Success returns within this long after the fault ends.
    RecoversWithin {
        within: Recovery,
        fault: Option<String>,
    },
    /// Every submitted job reaches a terminal state; completed ones with the right result.
    JobsAllTerminal,
    /// No request takes longer than the traffic's timeout plus `margin`.
    NoHangPastTimeout { margin: Duration },
    /// The sidecar process is alive at the end (and was never found dead between faults).
    SidecarAlive,
    /// The sidecar's RSS never goes above this many bytes.
    RssBelow { bytes: u64 },
    /// At least one answer has this status (with `retry_after`: a valid `Retry-After` header).
    StatusSeen { status: u16, retry_after: bool },
    /// No answer has a status matching this.
    NoStatus { status: StatusPattern },
    /// While the fault is on, at least this share of the traffic succeeds (the others are
    /// still served).
    SuccessRateDuring { min: f64, fault: Option<String> },
    /// The breaker's open period grows from one trip to the next (backoff on a flapping
    /// backend).
    OpenPeriodGrows { fault: Option<String> },
    /// While the fault is on, requests signed with a key the JWKS does not have are refused
    /// with `status` (401), each within the traffic's timeout (`system.jwks`).
    UnknownKeyRefused { status: u16, fault: Option<String> },
}

impl Check {
    /// The kind's name as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CircuitOpensWithin { .. } => "circuit_opens_within",
            Self::FastFail { .. } => "fast_fail",
            Self::NoBackendRequestsWhileOpen { .. } => "no_backend_requests_while_open",
            Self::RecoversWithin { .. } => "recovers_within",
            Self::JobsAllTerminal => "jobs_all_terminal",
            Self::NoHangPastTimeout { .. } => "no_hang_past_timeout",
            Self::SidecarAlive => "sidecar_alive",
            Self::RssBelow { .. } => "rss_below",
            Self::StatusSeen { .. } => "status_seen",
            Self::NoStatus { .. } => "no_status",
            Self::SuccessRateDuring { .. } => "success_rate_during",
            Self::OpenPeriodGrows { .. } => "open_period_grows",
            Self::UnknownKeyRefused { .. } => "unknown_key_refused",
        }
    }
}

/// How long recovery may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// This long after the fault ends.
    Within(Duration),
    /// The breaker's open period (read from the sidecar) plus this margin.
    OpenPeriodPlus(Duration),
}

/// A status or a class of statuses (`503`, `"5xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this status.
    Exact(u16),
    /// Any status of this hundred (5 for 5xx).
    Class(u16),
}

impl StatusPattern {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Exact(s) => s == status,
            Self::Class(c) => status / 100 == c,
        }
    }
}

/// A scenario file that cannot be used: the file, the line (when known) and what is wrong,
/// naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ScenarioError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the problem.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl Scenario {
    /// Parses and checks a scenario; `path` names the file in errors (and anchors a relative
    /// `sidecar_config`).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        spec::parse(text, path)
    }

    /// Reads, parses and checks the scenario file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, path)
    }

    /// One line for `mcp-chaos check`: name, system, load, faults, asserts.
    pub fn summary(&self) -> String {
        let system = match &self.system {
            System::Managed { sidecar_config, .. } => {
                format!("sidecar {}", sidecar_config.display())
            }
            System::External { target_url, .. } => format!("target {target_url}"),
        };
        let load = match self.traffic.load {
            Load::Rate(r) => format!("{r}/s"),
            Load::Concurrency(c) => format!("concurrency {c}"),
        };
        format!(
            "{}: {system}, {load} for {}, {} fault(s), {} assert(s)",
            self.name,
            humantime::format_duration(self.traffic.duration),
            self.faults.len(),
            self.asserts.len()
        )
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
