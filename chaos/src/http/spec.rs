//! Faults written down: the TOML form of [`HttpFault`]s that `mcp-chaos http-proxy --faults`
//! reads (and a scenario file can embed), checked with errors naming the fault and the key.
//!
//! ```toml
//! [[fault]]
//! name = "storm"              # unique; seeds the fault's dice
//! percent = 50                # 0-100, default 100
//! match = { path = "/mcp", http_method = "POST", rpc_method = "tools/call", tool = "echo" }
//! status = 503                # exactly one action, see below
//! ```
//!
//! Actions: `status = 503`, `rpc_error = { code = -32001, message = "..." }`,
//! `tool_error = "text"`, `delay = "200ms"`, `slow_first_byte = "1s"`, `cut_sse_after = 3`,
//! `drip_sse = "100ms"`, `drop_mid_body = 100`, `malformed_body = true`.

use std::time::Duration;

use serde::Deserialize;

use super::fault::{Action, HttpFault, Match};

/// A file of faults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// The faults, in the order they are checked.
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
}

/// One fault as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    name: String,
    percent: Option<f64>,
    #[serde(default, rename = "match")]
    matcher: MatchSpec,
    status: Option<u16>,
    rpc_error: Option<RpcErrorSpec>,
    tool_error: Option<String>,
    delay: Option<String>,
    slow_first_byte: Option<String>,
    cut_sse_after: Option<u64>,
    drip_sse: Option<String>,
    drop_mid_body: Option<u64>,
    malformed_body: Option<bool>,
}

/// The `match` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    path: Option<String>,
    http_method: Option<String>,
    rpc_method: Option<String>,
    tool: Option<String>,
}

/// The `rpc_error` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcErrorSpec {
    code: i64,
    message: String,
}

/// A fault file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not TOML of the expected shape (the message names the key and line).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A fault whose keys do not make sense together.
    #[error("fault `{name}`: {problem}")]
    Fault {
        /// The fault.
        name: String,
        /// What is wrong, naming the key.
        problem: String,
    },
}

impl FaultFile {
    /// Parses a fault file and checks each fault.
    pub fn parse(text: &str) -> Result<Vec<HttpFault>, SpecError> {
        let file: Self = toml::from_str(text)?;
        file.fault.into_iter().map(FaultSpec::into_fault).collect()
    }
}

/// The default `percent`: a fault written down without one always fires.
const DEFAULT_PERCENT: f64 = 100.0;

impl FaultSpec {
    /// The fault this spec describes.
    pub fn into_fault(self) -> Result<HttpFault, SpecError> {
        let name = self.name.clone();
        let problem = |problem: String| SpecError::Fault {
            name: name.clone(),
            problem,
        };
        let duration = |key: &str, value: &str| -> Result<Duration, SpecError> {
            humantime::parse_duration(value)
                .map_err(|e| problem(format!("`{key}` = \"{value}\": {e} (e.g. \"250ms\")")))
        };
        let mut actions = Vec::new();
        if let Some(status) = self.status {
            actions.push(Action::Status(status));
        }
        if let Some(e) = self.rpc_error {
            actions.push(Action::RpcError {
                code: e.code,
                message: e.message,
            });
        }
        if let Some(text) = self.tool_error {
            actions.push(Action::ToolError(text));
        }
        if let Some(d) = &self.delay {
            actions.push(Action::Delay(duration("delay", d)?));
        }
        if let Some(d) = &self.slow_first_byte {
            actions.push(Action::SlowFirstByte(duration("slow_first_byte", d)?));
        }
        if let Some(n) = self.cut_sse_after {
            actions.push(Action::CutSseAfter(n));
        }
        if let Some(d) = &self.drip_sse {
            actions.push(Action::DripSse(duration("drip_sse", d)?));
        }
        if let Some(n) = self.drop_mid_body {
            actions.push(Action::DropMidBody(n));
        }
        match self.malformed_body {
            Some(true) => actions.push(Action::MalformedBody),
            Some(false) => {
                return Err(problem(
                    "`malformed_body` = false is not an action (leave it out)".into(),
                ));
            }
            None => {}
        }
        if actions.len() != 1 {
            return Err(problem(format!(
                "give exactly one action (status, rpc_error, tool_error, delay, slow_first_byte, \
                 cut_sse_after, drip_sse, drop_mid_body, malformed_body), not {}",
                actions.len()
            )));
        }
        let http_method = match self.matcher.http_method {
            Some(m) => Some(
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    problem(format!("`match.http_method` = \"{m}\" is not a method"))
                })?,
            ),
            None => None,
        };
        let matcher = Match {
            path: self.matcher.path,
            http_method,
            rpc_method: self.matcher.rpc_method,
            tool: self.matcher.tool,
        };
        let action = actions.remove(0);
        Ok(HttpFault::new(self.name, action)
            .percent(self.percent.unwrap_or(DEFAULT_PERCENT))
            .matching(matcher))
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
