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
//!
//! The control API takes the same keys as JSON ([`FaultSpec::from_json`]: converted to TOML and
//! read by this same code, so the two forms cannot drift) and answers with them
//! ([`match_json`], [`action_json`]).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};

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

impl FaultSpec {
    /// The fault a JSON object with the keys of a `[[fault]]` table describes (the control API's
    /// body). It is converted to TOML and read as a file's table is, so errors name the key the
    /// same way (e.g. `match.path`).
    pub fn from_json(json: &Json) -> Result<HttpFault, SpecError> {
        if !json.is_object() {
            return Err(custom(
                "body: expected a JSON object with the keys of a `[[fault]]` table",
            ));
        }
        let spec: Self = toml_value(json, "")?.try_into()?;
        spec.into_fault()
    }
}

/// `json` as a TOML value; `key` is its dotted path, for errors.
fn toml_value(json: &Json, key: &str) -> Result<toml::Value, SpecError> {
    let child = |k: &str| {
        if key.is_empty() {
            k.to_owned()
        } else {
            format!("{key}.{k}")
        }
    };
    Ok(match json {
        // TOML has no null: a key without a value is left out.
        Json::Null => {
            return Err(custom(format!(
                "{key}: null is not a value (leave the key out)"
            )));
        }
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            // A u64 past i64::MAX has no TOML integer to become.
            (None, Some(f)) if !n.is_u64() => toml::Value::Float(f),
            _ => return Err(custom(format!("{key}: {n} is too large"))),
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| toml_value(v, &child(&i.to_string())))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), toml_value(v, &child(k))?)))
                .collect::<Result<_, SpecError>>()?,
        ),
    })
}

fn custom(message: impl std::fmt::Display) -> SpecError {
    SpecError::Toml(<toml::de::Error as serde::de::Error>::custom(message))
}

/// The `match` table as written (only the conditions set).
pub fn match_json(m: &Match) -> Json {
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            out.insert(key.to_owned(), Json::String(v.to_owned()));
        }
    };
    put("path", m.path.as_deref());
    put(
        "http_method",
        m.http_method.as_ref().map(http::Method::as_str),
    );
    put("rpc_method", m.rpc_method.as_deref());
    put("tool", m.tool.as_deref());
    Json::Object(out)
}

/// The action as written: its one key and value (`{"status": 503}`, `{"delay": "200ms"}`).
pub fn action_json(action: &Action) -> Json {
    let duration = |d: &Duration| humantime::format_duration(*d).to_string();
    match action {
        Action::Status(status) => json!({"status": status}),
        Action::RpcError { code, message } => {
            json!({"rpc_error": {"code": code, "message": message}})
        }
        Action::ToolError(text) => json!({"tool_error": text}),
        Action::Delay(d) => json!({"delay": duration(d)}),
        Action::SlowFirstByte(d) => json!({"slow_first_byte": duration(d)}),
        Action::CutSseAfter(n) => json!({"cut_sse_after": n}),
        Action::DripSse(d) => json!({"drip_sse": duration(d)}),
        Action::DropMidBody(n) => json!({"drop_mid_body": n}),
        Action::MalformedBody => json!({"malformed_body": true}),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
