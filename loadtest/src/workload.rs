//! What each request is: `--call 'TOOL JSON-ARGS'` (a `tools/call`), `--method` for
//! parameterless methods (`tools/list`, `ping`), or a scenario file: a weighted mix.
//!
//! ```toml
//! [[request]]
//! weight = 3                       # relative share (default 1)
//! call = "echo"                    # a tools/call of this tool...
//! arguments = { text = "n{{seq}}", city = "{{pick:Paris,Berlin,Tokyo}}" }
//!
//! [[request]]
//! method = "resources/read"        # ...or any method, with its params
//! params = { uri = "file:///readme" }
//! ```
//!
//! Templates in string values: `{{seq}}` is the request's sequence number; `{{pick:a,b,c}}` one
//! of the listed values, chosen from the sequence number (the same run picks the same ones). A
//! whole string that is `{{seq}}` becomes a number.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One kind of request of the mix.
#[derive(Debug, Clone)]
struct Kind {
    method: String,
    params: Value,
    templated: bool,
    weight: u32,
}

/// The requests the virtual clients send.
#[derive(Debug, Clone)]
pub struct Workload {
    kinds: Vec<Kind>,
    total_weight: u64,
}

/// Why a workload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct WorkloadError {
    what: String,
    why: String,
}

/// A scenario file's `[[request]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    call: Option<String>,
    #[serde(default)]
    arguments: Option<toml::Table>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<toml::Table>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSpec {
    request: Vec<RequestSpec>,
}

impl Workload {
    fn of(kinds: Vec<Kind>) -> Self {
        let total_weight = kinds.iter().map(|k| u64::from(k.weight)).sum();
        Self {
            kinds,
            total_weight,
        }
    }

    /// `tools/call` of `spec`: the tool's name, then its arguments as a JSON object (`{}` when
    /// left out).
    pub fn call(spec: &str) -> Result<Self, WorkloadError> {
        let err = |why: &str| WorkloadError {
            what: format!("--call `{spec}`"),
            why: why.to_owned(),
        };
        let trimmed = spec.trim();
        let (name, args) = match trimmed.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (trimmed, "{}"),
        };
        if name.is_empty() {
            return Err(err("name a tool: --call 'echo {\"text\":\"hi\"}'"));
        }
        // `{{seq}}` standing alone where a value goes is a number: parse with it in place.
        let probe = args.replace("{{seq}}", "0");
        let arguments = match serde_json::from_str::<Value>(&probe) {
            Ok(Value::Object(_)) => serde_json::from_str::<Value>(&quote_bare_seq(args))
                .map_err(|e| err(&format!("the arguments are not JSON: {e}")))?,
            Ok(_) => return Err(err("the arguments must be a JSON object")),
            Err(e) => return Err(err(&format!("the arguments are not JSON: {e}"))),
        };
        Ok(Self::of(vec![kind(
            "tools/call",
            json!({"name": name, "arguments": arguments}),
            1,
        )]))
    }

    /// A request of `method` with no params (`tools/list`, `ping`, `prompts/list`).
    pub fn method(method: &str) -> Self {
        Self::of(vec![kind(method, json!({}), 1)])
    }

    /// A scenario file's mix (`text` is its content, `name` what errors call it).
    pub fn scenario(text: &str, name: &str) -> Result<Self, WorkloadError> {
        let spec: ScenarioSpec = toml::from_str(text).map_err(|e| WorkloadError {
            what: name.to_owned(),
            why: e.to_string(),
        })?;
        if spec.request.is_empty() {
            return Err(WorkloadError {
                what: name.to_owned(),
                why: "no [[request]]".into(),
            });
        }
        let mut kinds = Vec::new();
        for (i, r) in spec.request.into_iter().enumerate() {
            let err = |why: &str| WorkloadError {
                what: format!("{name}: request[{i}]"),
                why: why.to_owned(),
            };
            if r.weight == 0 {
                return Err(err("`weight` must be at least 1"));
            }
            let table = |t: Option<toml::Table>| -> Result<Value, WorkloadError> {
                serde_json::to_value(t.unwrap_or_default()).map_err(|e| err(&e.to_string()))
            };
            let k = match (r.call, r.method) {
                (Some(tool), None) => {
                    if r.params.is_some() {
                        return Err(err(
                            "`params` goes with `method`; a `call` takes `arguments`",
                        ));
                    }
                    kind(
                        "tools/call",
                        json!({"name": tool, "arguments": table(r.arguments)?}),
                        r.weight,
                    )
                }
                (None, Some(method)) => {
                    if r.arguments.is_some() {
                        return Err(err(
                            "`arguments` goes with `call`; a `method` takes `params`",
                        ));
                    }
                    kind(&method, table(r.params)?, r.weight)
                }
                _ => return Err(err("give exactly one of `call` (a tool) or `method`")),
            };
            kinds.push(k);
        }
        Ok(Self::of(kinds))
    }

    /// Request `n`: its JSON-RPC id and body.
    pub fn request(&self, n: u64) -> (Value, Bytes) {
        let kind = self.pick(n);
        let id = json!(n + 1);
        let params = if kind.templated {
            fill(&kind.params, n)
        } else {
            kind.params.clone()
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "method": kind.method, "params": params});
        (id, Bytes::from(body.to_string()))
    }

    /// The kind of request `n`, spread by weight (a fixed mix: the same `n`, the same kind).
    fn pick(&self, n: u64) -> &Kind {
        if self.kinds.len() == 1 {
            return &self.kinds[0];
        }
        let mut slot = spread(n) % self.total_weight.max(1);
        for k in &self.kinds {
            let w = u64::from(k.weight);
            if slot < w {
                return k;
            }
            slot -= w;
        }
        &self.kinds[0]
    }
}

fn kind(method: &str, params: Value, weight: u32) -> Kind {
    Kind {
        method: method.to_owned(),
        templated: params.to_string().contains("{{"),
        params,
        weight,
    }
}

/// `{{seq}}` that stands where a JSON value goes (outside a string), quoted so the text parses;
/// it becomes a number again when filled.
fn quote_bare_seq(args: &str) -> String {
    const TAG: &str = "{{seq}}";
    let mut out = String::with_capacity(args.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < args.len() {
        let rest = &args[i..];
        if !in_string && rest.starts_with(TAG) {
            out.push('"');
            out.push_str(TAG);
            out.push('"');
            i += TAG.len();
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A well-mixed number from `n` (splitmix64's finaliser), so consecutive requests do not march
/// through the mix in blocks.
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `value` with its templates filled for request `n`.
fn fill(value: &Value, n: u64) -> Value {
    match value {
        Value::String(s) if s == "{{seq}}" => json!(n),
        Value::String(s) => Value::String(fill_text(s, n)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, n)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, n)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

fn fill_text(s: &str, n: u64) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let tag = &after[..close];
        if tag == "seq" {
            out.push_str(&n.to_string());
        } else if let Some(list) = tag.strip_prefix("pick:") {
            let choices: Vec<&str> = list.split(',').collect();
            let i = usize::try_from(spread(n.wrapping_mul(31)) % choices.len() as u64).unwrap_or(0);
            out.push_str(choices[i].trim());
        } else {
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
