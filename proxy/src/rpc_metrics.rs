//! Per-JSON-RPC-method and per-tool request metrics:
//! `mcp_sidecar_rpc_requests_total{upstream,rpc_method,tool,outcome}` and
//! `mcp_sidecar_rpc_request_duration_seconds{upstream,rpc_method,tool}`.
//!
//! They sit beside the HTTP-level `mcp_sidecar_requests_total{upstream,method,status}`, which
//! keeps its labels (`method` is the HTTP method) so that dashboards and alerts written against
//! it still hold. Every JSON-RPC message of a POST body the sidecar read counts once (each message
//! of a batch), with the HTTP answer's outcome and time to response headers.
//!
//! Every label value comes from a set a client cannot grow:
//! - `rpc_method`: the MCP specification's methods ([`KNOWN_METHODS`]); `response` for a
//!   client's answer to a server request; anything else `other`.
//! - `tool` (`tools/call` only, `""` for other methods): the upstream's `[[upstream.tool]]` glob
//!   that matches the name (the glob is the label), else the name itself if the backend listed it
//!   in a `tools/list` answer that passed through the sidecar (learned, at most
//!   [`MAX_TOOL_LABELS`] per upstream), else `other`. A client may name any tool in a call; only
//!   the configuration and the backend's own answers add labels.
//! - `outcome`: `ok` (status below 400), `client_error` (4xx), `server_error` (5xx): the HTTP
//!   answer's. A JSON-RPC error inside a 200 answer is the backend's business and counts as `ok`.
//!
//! Series are resolved once and kept: per method in an array indexed like [`KNOWN_METHODS`], per
//! tool in the [`Series`] its label owns, so a request hashes no label values.

use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use serde_json::Value;

use crate::glob::Glob;
use crate::mcp::{Classified, Kind};

/// Learned names by name (the fast hasher of the sidecar's other name maps).
type ByName<V> = std::collections::HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Distinct tool labels (configured globs and learned names together) per upstream. Each label
/// costs up to 3 counter series and one 18-bucket histogram (about 23 series); 100 labels keep an
/// upstream within about 2,300 series, what a Prometheus target is usually budgeted, while real
/// MCP servers list a few to a few dozen tools. Names past the cap count as `other` and in
/// `mcp_sidecar_tool_labels_dropped_total`.
pub const MAX_TOOL_LABELS: usize = 100;

/// Longest tool name learned as a label; the MCP specification asks for names of 1 to 128
/// characters. A longer or odd name (control characters) stays `other`.
pub const MAX_TOOL_NAME_BYTES: usize = 128;

/// The JSON-RPC methods a client sends to a server, from the MCP specification's revisions
/// 2024-11-05 to 2026-07-28 (requests and notifications); the `rpc_method` label takes one of
/// these, `response` or `other`.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "tasks/update",
    "server/discover",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// `rpc_method` of a client's answer to a server request (sampling, elicitation, roots).
pub const RESPONSE: &str = "response";
/// The label of any method outside [`KNOWN_METHODS`] and of any tool without its own label.
pub const OTHER: &str = "other";
/// `tool` of the methods other than `tools/call`.
pub const NO_TOOL: &str = "";
const TOOLS_CALL: &str = "tools/call";

/// `outcome` values, indexed by [`outcome_index`].
const OUTCOMES: [&str; 3] = ["ok", "client_error", "server_error"];

/// Slots of the per-method array after [`KNOWN_METHODS`].
const RESPONSE_SLOT: usize = KNOWN_METHODS.len();
const OTHER_SLOT: usize = KNOWN_METHODS.len() + 1;

fn outcome_index(status: http::StatusCode) -> usize {
    match status.as_u16() {
        0..400 => 0,
        400..500 => 1,
        _ => 2,
    }
}

/// The slot of a method's series: its index in [`KNOWN_METHODS`], else `other`'s.
fn method_slot(method: &str) -> usize {
    KNOWN_METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(OTHER_SLOT)
}

/// The families the series live in (shared by every upstream, registered by
/// [`crate::metrics::Metrics`]).
#[derive(Debug, Clone)]
pub struct RpcFamilies {
    /// `mcp_sidecar_rpc_requests_total{upstream,rpc_method,tool,outcome}`
    pub requests: IntCounterVec,
    /// `mcp_sidecar_rpc_request_duration_seconds{upstream,rpc_method,tool}`
    pub duration: HistogramVec,
    /// `mcp_sidecar_tool_labels_dropped_total{upstream}`
    pub tool_labels_dropped: IntCounterVec,
}

/// One (`rpc_method`, `tool`) pair's series, created on first use so `/metrics` shows no series
/// for what never happened.
#[derive(Debug)]
pub struct Series {
    rpc_method: &'static str,
    tool: Arc<str>,
    counters: [OnceLock<IntCounter>; OUTCOMES.len()],
    duration: OnceLock<Histogram>,
}

impl Series {
    fn new(rpc_method: &'static str, tool: Arc<str>) -> Self {
        Self {
            rpc_method,
            tool,
            counters: Default::default(),
            duration: OnceLock::new(),
        }
    }

    fn record(&self, families: &RpcFamilies, upstream: &str, outcome: usize, seconds: f64) {
        let Some(slot) = self.counters.get(outcome) else {
            return;
        };
        slot.get_or_init(|| {
            families.requests.with_label_values(&[
                upstream,
                self.rpc_method,
                &self.tool,
                OUTCOMES[outcome],
            ])
        })
        .inc();
        self.duration
            .get_or_init(|| {
                families
                    .duration
                    .with_label_values(&[upstream, self.rpc_method, &self.tool])
            })
            .observe(seconds);
    }
}

/// One upstream's JSON-RPC series and its tool labels.
#[derive(Debug)]
pub struct RpcMetrics {
    upstream: Arc<str>,
    families: RpcFamilies,
    /// Indexed like [`KNOWN_METHODS`], then `response`, then `other`.
    by_method: Box<[Series]>,
    tools: Arc<ToolLabels>,
}

impl RpcMetrics {
    /// The series of `upstream`, whose `[[upstream.tool]]` globs are `tool_globs` (in config
    /// order: the first matching glob names a call, as it picks the call's settings).
    pub fn new(families: RpcFamilies, upstream: Arc<str>, tool_globs: &[&str]) -> Self {
        let no_tool: Arc<str> = Arc::from(NO_TOOL);
        let by_method = KNOWN_METHODS
            .iter()
            .copied()
            .chain([RESPONSE, OTHER])
            .map(|m| Series::new(m, no_tool.clone()))
            .collect();
        let dropped = families
            .tool_labels_dropped
            .with_label_values(&[&*upstream]);
        Self {
            tools: Arc::new(ToolLabels::new(tool_globs, dropped)),
            upstream,
            families,
            by_method,
        }
    }

    /// Counts every message of `classified` (a POST body the sidecar read) with the answer's
    /// `status` and time to response headers.
    pub fn record(&self, classified: &Classified, status: http::StatusCode, seconds: f64) {
        let outcome = outcome_index(status);
        for message in &classified.messages {
            let slot = match (message.kind, message.method.as_deref()) {
                (Kind::Response, _) => RESPONSE_SLOT,
                (_, Some(TOOLS_CALL)) => {
                    self.tools.with_series(message.tool.as_deref(), |series| {
                        series.record(&self.families, &self.upstream, outcome, seconds);
                    });
                    continue;
                }
                (_, Some(method)) => method_slot(method),
                (_, None) => OTHER_SLOT,
            };
            if let Some(series) = self.by_method.get(slot) {
                series.record(&self.families, &self.upstream, outcome, seconds);
            }
        }
    }

    /// What learns tool names from the `tools/list` answers passing by, or `None` once the
    /// upstream has no label left to give (so its answers need not be read).
    pub fn learner(&self) -> Option<ToolLearner> {
        (!self.tools.is_full()).then(|| ToolLearner(self.tools.clone()))
    }

    /// The `tool` label a `tools/call` of `name` counts under (for tests and diagnostics: it
    /// copies the label).
    pub fn tool_label(&self, name: Option<&str>) -> Arc<str> {
        let mut label = Arc::from(OTHER);
        self.tools
            .with_series(name, |series| label = series.tool.clone());
        label
    }
}

/// An upstream's tool labels: configured globs, learned names, `other`.
#[derive(Debug)]
struct ToolLabels {
    configured: Box<[(Glob, Series)]>,
    /// Names from the backend's `tools/list` answers that no configured glob covers. Only grows
    /// (a counter's series must not vanish), up to the cap.
    learned: RwLock<ByName<Series>>,
    /// How many learned names fit: [`MAX_TOOL_LABELS`] less the configured globs.
    room: usize,
    other: Series,
    dropped: IntCounter,
}

impl ToolLabels {
    fn new(globs: &[&str], dropped: IntCounter) -> Self {
        Self {
            configured: globs
                .iter()
                .map(|g| (Glob::new(g), Series::new(TOOLS_CALL, Arc::from(*g))))
                .collect(),
            learned: RwLock::new(ByName::default()),
            room: MAX_TOOL_LABELS.saturating_sub(globs.len()),
            other: Series::new(TOOLS_CALL, Arc::from(OTHER)),
            dropped,
        }
    }

    /// Runs `f` on the series of a call to tool `name`.
    fn with_series(&self, name: Option<&str>, f: impl FnOnce(&Series)) {
        let Some(name) = name else {
            return f(&self.other);
        };
        if let Some((_, series)) = self.configured.iter().find(|(g, _)| g.matches(name)) {
            return f(series);
        }
        if let Ok(learned) = self.learned.read()
            && let Some(series) = learned.get(name)
        {
            return f(series);
        }
        f(&self.other)
    }

    fn is_full(&self) -> bool {
        self.learned.read().map_or(true, |l| l.len() >= self.room)
    }

    /// Gives each new name its own label while there is room; the others stay `other`.
    fn learn<'a>(&self, names: impl Iterator<Item = &'a str>) {
        for name in names {
            if self.configured.iter().any(|(g, _)| g.matches(name))
                || self.learned.read().is_ok_and(|l| l.contains_key(name))
            {
                continue;
            }
            if !acceptable_name(name) {
                self.dropped.inc();
                continue;
            }
            let Ok(mut learned) = self.learned.write() else {
                return;
            };
            if learned.contains_key(name) {
                continue;
            }
            if learned.len() >= self.room {
                self.dropped.inc();
                continue;
            }
            learned.insert(Box::from(name), Series::new(TOOLS_CALL, Arc::from(name)));
        }
    }
}

/// A name worth a label: 1 to [`MAX_TOOL_NAME_BYTES`] bytes, no control characters, and not
/// one of the labels with a meaning of their own.
fn acceptable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_BYTES
        && !name.chars().any(char::is_control)
        && name != OTHER
}

/// Learns tool names from the `tools/list` responses passing by (the request path applies it
/// as an answer rewrite that changes nothing, before any filtering rewrite, so it sees the
/// backend's whole list).
#[derive(Debug, Clone)]
pub struct ToolLearner(Arc<ToolLabels>);

impl ToolLearner {
    /// Learns the tool names of `message` if it is a `tools/list` result.
    pub fn learn_from(&self, message: &Value) {
        if let Some(tools) = message
            .get("result")
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
        {
            self.0.learn(
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str)),
            );
        }
    }
}

#[cfg(test)]
#[path = "rpc_metrics_tests.rs"]
mod tests;
