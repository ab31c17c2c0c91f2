//! JSON-RPC classification: what a POSTed body is, read once so that whoever handles it (in the
//! sidecar: error bodies, authorization, rate limiting, circuit breaking, per-tool timeouts) can
//! decide by kind, method and tool without parsing it again.
//!
//! The body is not changed; this module only looks at it.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// What one JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects an answer.
    Request,
    /// Has `method`, no `id`: fire and forget (`notifications/*`).
    Notification,
    /// Has `id` and `result` or `error`: a client's answer to a server request.
    Response,
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Request, notification or response.
    pub kind: Kind,
    /// The JSON-RPC method (requests and notifications).
    pub method: Option<String>,
    /// The JSON-RPC id (requests and responses).
    pub id: Option<Value>,
    /// `params.name` of a `tools/call`.
    pub tool: Option<String>,
    /// `params._meta.progressToken`, if the request asked for progress.
    pub progress_token: Option<Value>,
}

/// A classified POST body: one message, or a batch (protocol 2025-03-26 only).
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The messages, in body order.
    pub messages: Vec<Message>,
    /// Whether the body was a JSON array.
    pub batch: bool,
}

impl Classified {
    /// The single message, when the body was not a batch.
    pub fn single(&self) -> Option<&Message> {
        if self.batch {
            None
        } else {
            self.messages.first()
        }
    }

    /// The id to put in an error answer: that of a single request.
    pub fn request_id(&self) -> Option<&Value> {
        self.single()
            .filter(|m| m.kind == Kind::Request)
            .and_then(|m| m.id.as_ref())
    }

    /// Whether any message is a request (so the body expects an answer).
    pub fn has_request(&self) -> bool {
        self.messages.iter().any(|m| m.kind == Kind::Request)
    }

    /// Whether the body is a single `subscriptions/listen` request (2026-07-28), whose answer is
    /// a standing stream of notifications rather than an answer the client waits for.
    pub fn opens_subscription(&self) -> bool {
        self.single().is_some_and(|m| {
            m.kind == Kind::Request && m.method.as_deref() == Some(SUBSCRIPTIONS_LISTEN)
        })
    }
}

/// The 2026-07-28 request that opens a long-lived notification stream (it replaced the
/// standalone GET stream of earlier revisions).
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";

/// Why a body is not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// Not JSON at all (JSON-RPC -32700).
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message (JSON-RPC -32600).
    #[error("invalid request: {0}")]
    Invalid(String),
}

// `deserialize_with = "present"` makes an explicit `null` count as present (`Some(Value::Null)`):
// plain `Option` would read `"id": null` as absent and turn a request into a notification, which
// later phases let through unlimited.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    // Borrowed: the text is copied once into the message, without a `Value` in between.
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "progressToken")]
    progress_token: Option<Value>,
}

/// The text of a JSON string value, `None` for any other JSON type.
#[inline]
fn json_string(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        // Valid JSON (the parser checked it) without escapes: the text between the quotes is it.
        return Some(inner.to_owned());
    }
    serde_json::from_str(text).ok()
}

/// A `tools/call`'s `params.name`: its text, `None` for a non-string (no tool: denied by
/// per-tool authorization). A string that does not decode (a lone surrogate escape such as
/// `\ud800`: valid JSON syntax, but no Unicode string) is refused, since the backend may read a
/// name where the sidecar would see none and apply no per-tool rule.
fn tool_name(raw: &RawValue) -> Result<Option<String>, ClassifyError> {
    match json_string(raw) {
        None if raw.get().starts_with('"') => Err(ClassifyError::Invalid(
            "`params.name` is not a valid string".into(),
        )),
        name => Ok(name),
    }
}

/// Why `text` is no envelope: not JSON at all (a parse error, -32700) or JSON of another shape
/// (an invalid request, -32600), which JSON-RPC tells apart.
fn envelope_error(text: &str, err: &serde_json::Error) -> ClassifyError {
    if let Err(syntax) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return ClassifyError::Parse(syntax.to_string());
    }
    if !text.trim_start().starts_with('{') {
        return ClassifyError::Invalid("a JSON-RPC message must be an object".into());
    }
    ClassifyError::Invalid(err.to_string())
}

/// Classifies a POST body.
///
/// `#[inline]` (with the functions it calls per message): this runs once per POST on the
/// sidecar's request path, and without it a build with thin LTO (the `release` profile) does not
/// compile it, or the serde code it instantiates, together with its caller across the crate
/// boundary.
#[inline]
pub fn classify(bytes: &[u8]) -> Result<Classified, ClassifyError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ClassifyError::Parse(format!("body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| ClassifyError::Parse(e.to_string()))?;
        if items.is_empty() {
            return Err(ClassifyError::Invalid("empty batch".into()));
        }
        let messages = items
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                classify_one(raw.get()).map_err(|e| match e {
                    ClassifyError::Invalid(m) => {
                        ClassifyError::Invalid(format!("batch element {i}: {m}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Classified {
            messages,
            batch: true,
        })
    } else {
        Ok(Classified {
            messages: vec![classify_one(text)?],
            batch: false,
        })
    }
}

#[inline]
fn classify_one(text: &str) -> Result<Message, ClassifyError> {
    // One pass over the body on the hot path; only a body that fails is looked at again.
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| envelope_error(text, &e))?;
    if env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(ClassifyError::Invalid("`jsonrpc` must be \"2.0\"".into()));
    }
    if let Some(id) = &env.id
        && !(id.is_string() || id.is_number())
    {
        return Err(ClassifyError::Invalid(
            "`id` must be a string or a number".into(),
        ));
    }
    match (env.method.map(json_string), env.id) {
        (Some(Some(method)), id) => {
            let (tool, progress_token) = match env.params {
                Some(p) => (
                    if method == "tools/call" {
                        p.name.map(tool_name).transpose()?.flatten()
                    } else {
                        None
                    },
                    p.meta.and_then(|m| m.progress_token),
                ),
                None => (None, None),
            };
            let kind = if id.is_some() {
                Kind::Request
            } else {
                Kind::Notification
            };
            Ok(Message {
                kind,
                method: Some(method),
                id,
                tool,
                progress_token,
            })
        }
        (Some(_), _) => Err(ClassifyError::Invalid("`method` must be a string".into())),
        (None, Some(id)) if env.result.is_some() != env.error.is_some() => Ok(Message {
            kind: Kind::Response,
            method: None,
            id: Some(id),
            tool: None,
            progress_token: None,
        }),
        (None, Some(_)) => Err(ClassifyError::Invalid(
            "a response needs exactly one of `result` or `error`".into(),
        )),
        (None, None) => Err(ClassifyError::Invalid(
            "neither `method` nor `id`: not a JSON-RPC message".into(),
        )),
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
