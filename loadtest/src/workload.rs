//! What each request is: `--call 'TOOL JSON-ARGS'` (a `tools/call`), or `--method` for
//! `tools/list`, `ping` and other parameterless methods. In the arguments, `{{seq}}` becomes the
//! request's sequence number (a string where it stands in a string, a number where it stands
//! alone).

use bytes::Bytes;
use serde_json::{Value, json};

/// The request every virtual client sends.
#[derive(Debug, Clone)]
pub struct Workload {
    method: String,
    params: String,
    templated: bool,
}

/// Why a workload flag was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--call `{text}`: {why}")]
pub struct WorkloadError {
    text: String,
    why: String,
}

impl Workload {
    /// `tools/call` of `spec`: the tool's name, then its arguments as a JSON object (`{}` when
    /// left out).
    pub fn call(spec: &str) -> Result<Self, WorkloadError> {
        let err = |why: &str| WorkloadError {
            text: spec.to_owned(),
            why: why.to_owned(),
        };
        let spec = spec.trim();
        let (name, args) = match spec.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (spec, "{}"),
        };
        if name.is_empty() {
            return Err(err("name a tool: --call 'echo {\"text\":\"hi\"}'"));
        }
        // Checked with the sequence number in place: the result must be a JSON object.
        let probe = args.replace("{{seq}}", "0");
        match serde_json::from_str::<Value>(&probe) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err(err("the arguments must be a JSON object")),
            Err(e) => return Err(err(&format!("the arguments are not JSON: {e}"))),
        }
        let params = format!(
            "{{\"name\":{},\"arguments\":{args}}}",
            Value::String(name.to_owned())
        );
        Ok(Self {
            method: "tools/call".into(),
            templated: params.contains("{{seq}}"),
            params,
        })
    }

    /// A request of `method` with no params (`tools/list`, `ping`, `prompts/list`).
    pub fn method(method: &str) -> Self {
        Self {
            method: method.to_owned(),
            params: "{}".into(),
            templated: false,
        }
    }

    /// Request `n`: its JSON-RPC id and body.
    pub fn request(&self, n: u64) -> (Value, Bytes) {
        let id = json!(n + 1);
        let params = if self.templated {
            self.params.replace("{{seq}}", &n.to_string())
        } else {
            self.params.clone()
        };
        let body = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":{},\"params\":{params}}}",
            Value::String(self.method.clone())
        );
        (id, Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_flag_is_a_tools_call_with_its_arguments_and_sequence_numbers() {
        let w = Workload::call(r#"echo {"text":"n{{seq}}","n":{{seq}}}"#).unwrap();
        let (id, body) = w.request(6);
        assert_eq!(id, json!(7));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"], json!({"text": "n6", "n": 6}));
        let bare: Value =
            serde_json::from_slice(&Workload::call("ping_tool").unwrap().request(0).1).unwrap();
        assert_eq!(bare["params"]["arguments"], json!({}));
    }

    #[test]
    fn bad_call_flags_are_refused_naming_the_problem() {
        for (spec, why) in [
            ("", "name a tool"),
            ("t [1]", "JSON object"),
            ("t {nope", "not JSON"),
        ] {
            let err = Workload::call(spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }
}
