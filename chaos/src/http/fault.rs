//! HTTP/MCP faults: what a fault matches (path prefix, HTTP method, JSON-RPC method, tool name),
//! how often it fires (a percentage drawn from the run's seeded [`Dice`]), and what it does.
//!
//! A fault's decisions are counted (matched, fired) so a test or a report can tell what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use http::request::Parts;
use mcp_sidecar::mcp::Message;

use crate::rng::Dice;

/// One per-request fault.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFault {
    /// Names the fault (unique in a proxy); also seeds its dice, so its decisions replay.
    pub name: String,
    /// Which requests it applies to.
    pub matcher: Match,
    /// Chance of firing on a matching request, 0 to 100.
    pub percent: f64,
    /// What it does when it fires.
    pub action: Action,
}

impl HttpFault {
    /// A fault that fires on every request (`percent` 100) with no match condition.
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Self {
            name: name.into(),
            matcher: Match::default(),
            percent: 100.0,
            action,
        }
    }

    /// The same fault, firing at `percent`.
    #[must_use]
    pub fn percent(mut self, percent: f64) -> Self {
        self.percent = percent;
        self
    }

    /// The same fault, applying only to requests `matcher` accepts.
    #[must_use]
    pub fn matching(mut self, matcher: Match) -> Self {
        self.matcher = matcher;
        self
    }
}

/// Conditions on a request; all the given ones must hold (none given: every request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// The request path starts with this.
    pub path: Option<String>,
    /// The HTTP method.
    pub http_method: Option<Method>,
    /// The JSON-RPC method of the (single) message in the body.
    pub rpc_method: Option<String>,
    /// The tool name of a `tools/call`.
    pub tool: Option<String>,
}

/// What a fault does to a request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer this HTTP status (empty body); the backend is not asked.
    Status(u16),
    /// Answer a JSON-RPC error to the request's id; the backend is not asked.
    RpcError {
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// Answer a tool result with `isError: true` and this text; the backend is not asked.
    ToolError(String),
    /// Wait this long, then forward (the response headers come at least this late).
    Delay(Duration),
    /// Forward; the headers come at once, the first body byte after this long.
    SlowFirstByte(Duration),
    /// Forward exactly this many SSE events of the backend's stream, then end it cleanly.
    CutSseAfter(u64),
    /// Forward each SSE event of the backend's stream after this long.
    DripSse(Duration),
    /// Forward this many bytes of the body, then close the connection.
    DropMidBody(u64),
    /// Answer 200 `application/json` with a body that is not JSON; the backend is not asked.
    MalformedBody,
}

impl Action {
    /// Whether answering needs the request's JSON-RPC id.
    fn needs_message(&self) -> bool {
        matches!(self, Self::RpcError { .. } | Self::ToolError(_))
    }
}

/// Why a fault was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The name is empty.
    #[error("a fault needs a name")]
    NoName,
    /// Another fault has this name.
    #[error("a fault named `{0}` exists already")]
    Duplicate(String),
    /// `percent` is not a number in 0..=100.
    #[error("fault `{name}`: percent must be between 0 and 100, not {percent}")]
    Percent {
        /// The fault.
        name: String,
        /// The value given.
        percent: String,
    },
    /// The status is not a final HTTP status (200-599).
    #[error("fault `{name}`: status {status} is not a final HTTP status (200-599)")]
    Status {
        /// The fault.
        name: String,
        /// The value given.
        status: u16,
    },
}

/// How often a fault matched a request and how often it fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests it matched (and so drew for).
    pub matched: u64,
    /// Of those, the ones it fired on.
    pub fired: u64,
}

/// A fault in a running proxy: its settings, dice and counters.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub(crate) fault: HttpFault,
    /// The fault's chance as 0..=1, computed once.
    chance: f64,
    dice: Dice,
    matched: AtomicU64,
    fired: AtomicU64,
}

impl ActiveFault {
    /// Checks `fault` and makes its dice from the run's `seed`.
    pub(crate) fn new(fault: HttpFault, seed: u64) -> Result<Self, FaultError> {
        if fault.name.is_empty() {
            return Err(FaultError::NoName);
        }
        if !(0.0..=100.0).contains(&fault.percent) {
            return Err(FaultError::Percent {
                name: fault.name,
                percent: fault.percent.to_string(),
            });
        }
        // A 1xx is not a final answer: the client would wait for the real one.
        if let Action::Status(status) = fault.action
            && !(200..=599).contains(&status)
        {
            return Err(FaultError::Status {
                name: fault.name,
                status,
            });
        }
        Ok(Self {
            chance: fault.percent / 100.0,
            dice: Dice::new(seed, &fault.name),
            fault,
            matched: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        })
    }

    /// Whether deciding needs the request body's JSON-RPC message.
    pub(crate) fn needs_message(&self) -> bool {
        let m = &self.fault.matcher;
        m.rpc_method.is_some() || m.tool.is_some() || self.fault.action.needs_message()
    }

    /// Whether the request line matches (path prefix, HTTP method).
    pub(crate) fn matches_head(&self, head: &Parts) -> bool {
        let m = &self.fault.matcher;
        m.path
            .as_deref()
            .is_none_or(|p| head.uri.path().starts_with(p))
            && m.http_method.as_ref().is_none_or(|x| *x == head.method)
    }

    /// Whether the body's message matches (JSON-RPC method, tool name).
    pub(crate) fn matches_message(&self, message: Option<&Message>) -> bool {
        let m = &self.fault.matcher;
        let method = message.and_then(|x| x.method.as_deref());
        let rpc_ok = m
            .rpc_method
            .as_deref()
            .is_none_or(|want| method == Some(want));
        let tool_ok = m.tool.as_deref().is_none_or(|want| {
            method == Some("tools/call") && message.and_then(|x| x.tool.as_deref()) == Some(want)
        });
        rpc_ok && tool_ok
    }

    /// Counts a match and draws whether the fault fires.
    pub(crate) fn decide(&self) -> bool {
        self.matched.fetch_add(1, Ordering::Relaxed);
        let fire = self.dice.chance(self.chance);
        if fire {
            self.fired.fetch_add(1, Ordering::Relaxed);
        }
        fire
    }

    pub(crate) fn counts(&self) -> FaultCounts {
        FaultCounts {
            matched: self.matched.load(Ordering::Relaxed),
            fired: self.fired.load(Ordering::Relaxed),
        }
    }
}
