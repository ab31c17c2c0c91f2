//! The Tasks wire shapes of both revisions that define them, and how a request says which one
//! it speaks: 2025-11-25 (`params.task`, `CreateTaskResult { task }`, `ttl`, `pollInterval`,
//! `tasks/get|result|list|cancel`) and 2026-07-28's extension `io.modelcontextprotocol/tasks`
//! (SEP-2663: negotiated per request in `_meta`, a flat `CreateTaskResult` with
//! `resultType: "task"`, `ttlMs`, `pollIntervalMs`, `tasks/get|update|cancel`). A task is shown
//! from its job record; nothing here touches the engine.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::error::TASKS_EXTENSION;
use crate::jobs::{Job, Outcome, Status};

/// The first revision on the stateless protocol, where Tasks is an extension.
pub const STATELESS_REVISION: &str = "2026-07-28";
/// The revision whose core protocol defines Tasks.
pub const CORE_TASKS_REVISION: &str = "2025-11-25";
/// Where a request's `_meta` carries the client's capabilities (SEP-2575).
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Where a request's `_meta` carries its protocol revision (SEP-2575).
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The 2025-11-25 metadata key tying a message to its task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// The suggested polling interval. Jobs record progress about once a second; a client that
/// polls twice as often sees every change soon without flooding the store.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Which Tasks protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// 2025-11-25 (and the revisions before it, which have no Tasks at all).
    Core,
    /// 2026-07-28 and later: the stateless protocol's extension.
    Extension,
}

impl Revision {
    /// The revision of a request: its `MCP-Protocol-Version`, else its `_meta`'s (dates in
    /// `YYYY-MM-DD` compare as strings).
    pub fn of(headers: &http::HeaderMap, params: Option<&Value>) -> Self {
        match version(headers, params) {
            Some(v) if v >= STATELESS_REVISION => Revision::Extension,
            _ => Revision::Core,
        }
    }

    /// The stored name of the revision.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::Core => CORE_TASKS_REVISION,
            Revision::Extension => STATELESS_REVISION,
        }
    }
}

/// Whether the request's revision (its `MCP-Protocol-Version`, else its `_meta`'s) is one that
/// defines Tasks, 2025-11-25 or later; a request without one is on 2025-03-26 (the Streamable
/// HTTP rule for a missing header).
pub fn knows_tasks(headers: &http::HeaderMap, params: Option<&Value>) -> bool {
    version(headers, params).is_some_and(|v| v >= CORE_TASKS_REVISION)
}

/// The request's protocol revision: its `MCP-Protocol-Version`, else its `_meta`'s.
fn version<'a>(headers: &'a http::HeaderMap, params: Option<&'a Value>) -> Option<&'a str> {
    let header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let meta = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(PROTOCOL_VERSION))
        .and_then(Value::as_str);
    header.or(meta).map(str::trim)
}

/// Whether the request declares the Tasks extension in its `_meta` client capabilities
/// (2026-07-28: negotiation is per request).
pub fn declares_extension(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(CLIENT_CAPABILITIES))
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some_and(Value::is_object)
}

/// Whether a 2025-11-25 request asks to run as a task (`params.task`).
pub fn asks_for_task(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.get("task"))
        .is_some_and(Value::is_object)
}

/// What a task's status is in the wire's terms.
pub fn status(job: &Job, revision: Revision) -> &'static str {
    match job.status {
        Status::Queued | Status::Working => "working",
        Status::InputRequired => "input_required",
        Status::Cancelled => "cancelled",
        Status::Failed => "failed",
        Status::Completed => match answer(job) {
            Some(a) if a.get("error").is_some() => "failed",
            // 2025-11-25 counts a tool's own error as a failure; SEP-2663 as a completion.
            Some(a)
                if revision == Revision::Core
                    && a.pointer("/result/isError") == Some(&Value::Bool(true)) =>
            {
                "failed"
            }
            _ => "completed",
        },
    }
}

/// The job's stored answer, parsed.
pub fn answer(job: &Job) -> Option<Value> {
    match &job.outcome {
        Some(Outcome::Answered { response }) => serde_json::from_str(response).ok(),
        _ => None,
    }
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The `Task` fields both revisions share, under each one's names.
pub fn task(job: &Job, revision: Revision, ttl: Duration) -> Map<String, Value> {
    let mut t = Map::new();
    t.insert("taskId".into(), job.id.to_string().into());
    t.insert("status".into(), status(job, revision).into());
    if let Some(message) = status_message(job) {
        t.insert("statusMessage".into(), message.into());
    }
    t.insert("createdAt".into(), time(job.created_ms).into());
    t.insert("lastUpdatedAt".into(), time(job.updated_ms).into());
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let poll_ms = u64::try_from(POLL_INTERVAL.as_millis()).unwrap_or(1000);
    match revision {
        Revision::Core => {
            t.insert("ttl".into(), ttl_ms.into());
            t.insert("pollInterval".into(), poll_ms.into());
        }
        Revision::Extension => {
            t.insert("ttlMs".into(), ttl_ms.into());
            t.insert("pollIntervalMs".into(), poll_ms.into());
        }
    }
    t
}

fn status_message(job: &Job) -> Option<String> {
    match &job.outcome {
        Some(Outcome::Failed { reason, message }) => {
            Some(format!("{}: {message}", reason.as_str()))
        }
        Some(Outcome::Cancelled) => Some("cancelled by its owner".to_owned()),
        _ => job.progress.as_ref().and_then(|p| p.message.clone()),
    }
}

/// The `CreateTaskResult` of a new task.
pub fn created(job: &Job, revision: Revision, ttl: Duration) -> Value {
    let task = task(job, revision, ttl);
    match revision {
        Revision::Core => json!({ "task": task }),
        Revision::Extension => {
            let mut flat = Map::new();
            flat.insert("resultType".into(), "task".into());
            flat.extend(task);
            Value::Object(flat)
        }
    }
}

/// The error of a task that failed: the backend's JSON-RPC error, or the sidecar's own reason
/// as an internal error (the job never got an answer).
fn error(job: &Job) -> Option<Value> {
    if let Some(e) = answer(job).and_then(|a| a.get("error").cloned()) {
        return Some(e);
    }
    match &job.outcome {
        Some(Outcome::Failed { reason, message }) => Some(json!({
            "code": -32603,
            "message": message,
            "data": {"reason": reason.as_str()},
        })),
        _ => None,
    }
}

/// The tool's result of a completed task, without the 2025-11-25 related-task metadata (the
/// task id is the envelope's).
fn result(job: &Job) -> Option<Value> {
    let mut result = answer(job)?.get("result")?.clone();
    if let Some(meta) = result.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove(RELATED_TASK);
        if meta.is_empty() {
            result.as_object_mut()?.remove("_meta");
        }
    }
    Some(result)
}

/// The outstanding input requests of a task that waits for input.
pub fn outstanding(job: &Job) -> Map<String, Value> {
    let Some(task) = &job.task else {
        return Map::new();
    };
    task.input_requests
        .iter()
        .filter(|(k, _)| !task.input_responses.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `tasks/get`'s answer: 2026-07-28's `DetailedTask` (result, error or input requests inlined,
/// `resultType: "complete"`), or 2025-11-25's `Task`.
pub fn detailed(job: &Job, revision: Revision, ttl: Duration) -> Value {
    let mut t = task(job, revision, ttl);
    if revision == Revision::Core {
        return Value::Object(t);
    }
    t.insert("resultType".into(), "complete".into());
    match status(job, revision) {
        "completed" => {
            if let Some(r) = result(job) {
                t.insert("result".into(), r);
            }
        }
        "failed" => {
            if let Some(e) = error(job) {
                t.insert("error".into(), e);
            }
        }
        "input_required" => {
            t.insert("inputRequests".into(), Value::Object(outstanding(job)));
        }
        _ => {}
    }
    Value::Object(t)
}

/// 2025-11-25 `tasks/result` of a finished task: exactly what the call would have answered,
/// with the related-task metadata. `Err` carries a JSON-RPC error object.
pub fn payload(job: &Job) -> Result<Value, Value> {
    let related = json!({ "taskId": job.id.to_string() });
    if let Some(answer) = answer(job) {
        if let Some(e) = answer.get("error") {
            return Err(e.clone());
        }
        let mut result = answer.get("result").cloned().unwrap_or_else(|| json!({}));
        if let Some(obj) = result.as_object_mut() {
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(RELATED_TASK.into(), related);
            }
        }
        return Ok(result);
    }
    match &job.outcome {
        Some(Outcome::Cancelled) => Err(json!({
            "code": -32603,
            "message": "the task was cancelled before it finished",
            "data": {"reason": "cancelled", RELATED_TASK: related},
        })),
        _ => Err(error(job).unwrap_or_else(|| json!({"code": -32603, "message": "no result"}))),
    }
}

/// An empty acknowledgement (2026-07-28's `tasks/update` and `tasks/cancel`).
pub fn ack() -> Value {
    json!({ "resultType": "complete" })
}

/// A JSON-RPC response carrying `result` for request `id`.
pub fn response(id: Option<&Value>, result: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "result": result})
        .to_string()
}

/// A JSON-RPC error response for request `id` (an error a task's call answered).
pub fn error_response(id: Option<&Value>, error: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error}).to_string()
}

/// The call as the facade sends it to the backend: without the client's request for a task
/// (2025-11-25's `params.task`, 2026-07-28's extension in the request's client capabilities),
/// which was made to the sidecar. A backend that saw it would make a task of its own, or refuse
/// the call: a TypeScript SDK server answers a task-augmented call whose tool returns a plain
/// result with -32602. `None` when the call carries no such request.
pub fn without_task_request(body: &str) -> Option<String> {
    let mut call: Value = serde_json::from_str(body).ok()?;
    let params = call.get_mut("params")?.as_object_mut()?;
    let task = params.remove("task").is_some();
    let extension = params
        .get_mut("_meta")
        .and_then(|m| m.get_mut(CLIENT_CAPABILITIES))
        .and_then(|c| c.get_mut("extensions"))
        .and_then(Value::as_object_mut)
        .and_then(|e| e.remove(TASKS_EXTENSION))
        .is_some();
    (task || extension).then(|| call.to_string())
}

/// The call with the client's responses of a completed input round: `inputResponses` and
/// the backend's `requestState` in its params (SEP-2322), ready to be sent again.
pub fn with_input_responses(
    body: &str,
    responses: &Map<String, Value>,
    request_state: Option<&str>,
) -> Option<String> {
    let mut call: Value = serde_json::from_str(body).ok()?;
    let params = call.get_mut("params")?.as_object_mut()?;
    params.insert("inputResponses".into(), Value::Object(responses.clone()));
    match request_state {
        Some(state) => params.insert("requestState".into(), state.into()),
        None => params.remove("requestState"),
    };
    Some(call.to_string())
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
