//! What a job is: its id, owner, status, progress, outcome and the request it runs. These are the
//! records the [store](super::store) keeps (as JSON) and the HTTP job API and the MCP Tasks facade
//! show; nothing here knows about HTTP.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A job's id: 128 random bits from the operating system's CSPRNG, shown as 32 lowercase hex
/// digits. Unguessable, so knowing an id is not a way to reach someone else's job (and the API
/// answers 404 to anyone but the owner anyway).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);

impl JobId {
    /// A new random id (`None` only if the system RNG fails, which the caller answers as a local
    /// failure).
    pub fn random() -> Option<Self> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The id's bytes (the store's key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Parses exactly 32 lowercase hex digits; anything else is not an id.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            bytes[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Self(bytes))
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        JobId::parse(&text).ok_or_else(|| serde::de::Error::custom("not a job id"))
    }
}

/// Who a job belongs to: `api_key:<id>`, `jwt:<issuer>:<sub>`, or `ip:<address>` when the
/// upstream is public. Only the owner sees the job.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// An owner from its key text.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({})", self.0)
    }
}

/// Where a job is in its life. `Completed`, `Failed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stored, waiting for a running slot (or for an open circuit to close).
    Queued,
    /// Its call is with the upstream.
    Working,
    /// Its call asked for input (an MCP task whose backend answered `input_required`, or sent
    /// a request while it runs); it goes on when the client answers.
    InputRequired,
    /// The upstream answered (a JSON-RPC result or a JSON-RPC error: both are answers).
    Completed,
    /// No answer: deadline passed, upstream unreachable, result too large, interrupted.
    Failed,
    /// The owner cancelled it.
    Cancelled,
}

impl Status {
    /// Every status, in order (for gauges and the operator view).
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Working,
        Status::InputRequired,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Whether nothing more will happen to the job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// The status as the API and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Working => "working",
            Status::InputRequired => "input_required",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// The latest `notifications/progress` the upstream sent for the job's call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `progress` (increases with every notification).
    pub progress: f64,
    /// `total`, when the upstream knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// `message`, when the upstream sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a job failed (the API's `error.reason`; stable, for scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The per-job deadline passed (waiting for a slot or an open circuit included).
    DeadlineExceeded,
    /// The upstream could not be reached or broke off (connect error, reset, response timeout).
    Upstream,
    /// The upstream answered with an HTTP error status or something that is not a JSON-RPC
    /// answer to the call.
    BadAnswer,
    /// The answer was larger than `jobs.max_result_bytes`.
    ResultTooLarge,
    /// The sidecar stopped while the job was working, and the tool is not idempotent.
    Interrupted,
    /// The sidecar itself could not run the job (no upstream by that name after a config change,
    /// a local resource shortage).
    Internal,
}

impl FailReason {
    /// The reason as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::DeadlineExceeded => "deadline_exceeded",
            FailReason::Upstream => "upstream",
            FailReason::BadAnswer => "bad_answer",
            FailReason::ResultTooLarge => "result_too_large",
            FailReason::Interrupted => "interrupted",
            FailReason::Internal => "internal",
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream's JSON-RPC response to the call (result or error), as it sent it.
    Answered {
        /// The JSON-RPC response object, verbatim.
        response: String,
    },
    /// No answer.
    Failed {
        /// Why, for scripts.
        reason: FailReason,
        /// Why, for people.
        message: String,
    },
    /// Cancelled by its owner.
    Cancelled,
}

/// The authenticated caller as a job needs it after a restart: who (for logs) and the claim
/// headers the backend gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPrincipal {
    /// `sub` of a JWT, id of an API key.
    pub subject: String,
    /// `api_key:<id>` or `jwt:<issuer>`.
    pub source: String,
    /// The claim headers, name and value.
    #[serde(default)]
    pub claim_headers: Vec<(String, String)>,
}

/// The call a job makes: everything needed to send it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The upstream's name.
    pub upstream: String,
    /// The client-side path and query the call was made on (under the upstream's mount).
    pub path: String,
    /// The client's end-to-end header fields that go upstream (its credential and hop-by-hop
    /// fields left out).
    pub headers: Vec<(String, String)>,
    /// The JSON-RPC request as sent upstream (with the sidecar's `progressToken`).
    pub body: String,
    /// The client's address, for `X-Forwarded-For`.
    pub client_ip: String,
    /// Whether the client came over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    /// The authenticated caller, if any.
    #[serde(default)]
    pub principal: Option<StoredPrincipal>,
    /// The JSON-RPC id of the call, as JSON text.
    pub jsonrpc_id: String,
}

/// An `Idempotency-Key` bound to a job: the key and a digest of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// The key as the client sent it.
    pub key: String,
    /// SHA-256 of the request body, hex: same key with another body is refused (422).
    pub fingerprint: String,
}

/// One job, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Who may see it.
    pub owner: Owner,
    /// The JSON-RPC method (normally `tools/call`).
    pub method: String,
    /// The tool, for `tools/call`.
    #[serde(default)]
    pub tool: Option<String>,
    /// Where it is in its life.
    pub status: Status,
    /// The latest progress the upstream reported.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// Sequence number of the job's latest event (status change or progress): the SSE event id.
    pub seq: u64,
    /// Wall-clock times, Unix milliseconds.
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// When its call was (last) sent.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// When it reached a terminal status.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// When it may be removed (the result is fetchable until then).
    pub expires_ms: u64,
    /// When a job still not finished fails with `deadline_exceeded`.
    pub deadline_ms: u64,
    /// How many times its call was sent.
    #[serde(default)]
    pub attempts: u32,
    /// Whether the call may be sent again after an interruption (`idempotent = true` tool).
    #[serde(default)]
    pub rerun_on_restart: bool,
    /// Working, but its call is known not to have been sent (it waits behind an open circuit
    /// or a full in-flight cap): an interruption queues it again, whatever the tool.
    #[serde(default)]
    pub unsent: bool,
    /// How it ended (terminal statuses only).
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The `Idempotency-Key` it was submitted with.
    #[serde(default)]
    pub idempotency: Option<Idempotency>,
    /// The call.
    pub request: JobRequest,
    /// What the MCP Tasks facade keeps for a job created as a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskInfo>,
    /// Bumped by every write; the store's compare-and-set compares it.
    pub version: u64,
}

impl Job {
    /// Whether `now_ms` is past its expiry.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms
    }
}

impl Job {
    /// What followers are shown: everything but the call and the answer, small enough to send
    /// with every event.
    pub fn state(&self) -> JobState {
        JobState {
            id: self.id,
            upstream: self.request.upstream.clone(),
            method: self.method.clone(),
            tool: self.tool.clone(),
            status: self.status,
            progress: self.progress.clone(),
            seq: self.seq,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            expires_ms: self.expires_ms,
            deadline_ms: self.deadline_ms,
            attempts: self.attempts,
            failure: match &self.outcome {
                Some(Outcome::Failed { reason, message }) => Some((*reason, message.clone())),
                _ => None,
            },
        }
    }
}

/// A job as its followers see it (no call, no answer): what the API's status documents and
/// event streams are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Its id.
    pub id: JobId,
    /// The upstream's name.
    pub upstream: String,
    /// The JSON-RPC method.
    pub method: String,
    /// The tool, for `tools/call`.
    pub tool: Option<String>,
    /// Where it is in its life.
    pub status: Status,
    /// The latest progress.
    pub progress: Option<Progress>,
    /// The latest event's sequence number.
    pub seq: u64,
    /// Submitted (Unix ms).
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// Call (last) sent.
    pub started_ms: Option<u64>,
    /// Ended.
    pub finished_ms: Option<u64>,
    /// Removed after.
    pub expires_ms: u64,
    /// Fails with `deadline_exceeded` after, unless finished.
    pub deadline_ms: u64,
    /// Times the call was sent.
    pub attempts: u32,
    /// Why it failed.
    pub failure: Option<(FailReason, String)>,
}

/// A job created as an MCP task (by the Tasks facade): the revision it speaks and the input
/// round it waits on. The engine stores it and leaves its meaning to the facade.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The MCP protocol revision the task was created under (`2025-11-25`, `2026-07-28`).
    pub revision: String,
    /// The outstanding input requests of the current round, by key (while `input_required`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub input_requests: serde_json::Map<String, serde_json::Value>,
    /// The responses received so far in the current round, by key.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub input_responses: serde_json::Map<String, serde_json::Value>,
    /// Every input request key issued over the task's life: a key is never reused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issued_keys: Vec<String>,
    /// The backend's `requestState` of the current round, sent back with the responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_state: Option<String>,
    /// The backend's answer that opened the current round, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_answer: Option<String>,
    /// For a round the backend opened by sending requests on the call's event stream (its call
    /// still running): the backend's JSON-RPC id of each request, by key, to answer it with.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub pending_ids: serde_json::Map<String, serde_json::Value>,
}

impl TaskInfo {
    /// Whether the current round's requests came on the running call's event stream (answered
    /// one by one, to the backend), not in an `input_required` answer (answered by running the
    /// call again).
    pub fn streaming(&self) -> bool {
        !self.pending_ids.is_empty()
    }
}

/// An input round a task's call opened: the backend answered with an `InputRequiredResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRound {
    /// The input requests, by key.
    pub requests: serde_json::Map<String, serde_json::Value>,
    /// The backend's `requestState`, if any.
    pub request_state: Option<String>,
    /// The backend's JSON-RPC response, verbatim.
    pub answer: String,
}

/// A job to submit.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (the front end chooses it: the call it stores names the job, in its
    /// `progressToken`).
    pub id: JobId,
    /// Who may see it.
    pub owner: Owner,
    /// The JSON-RPC method.
    pub method: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// The call.
    pub request: JobRequest,
    /// `Idempotency-Key` and body digest.
    pub idempotency: Option<Idempotency>,
    /// How long it may take in all.
    pub deadline: Duration,
    /// Whether it may be sent again after an interruption.
    pub rerun_on_restart: bool,
    /// Set when the job is an MCP task.
    pub task: Option<TaskInfo>,
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new job was stored.
    New(JobState),
    /// The `Idempotency-Key` names this existing job; nothing new was stored or sent.
    Replayed(JobState),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_round_trip_as_32_hex_digits() {
        let a = JobId::random().unwrap();
        let b = JobId::random().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(JobId::parse(&text), Some(a));
    }

    #[test]
    fn id_parse_refuses_anything_but_32_lowercase_hex_digits() {
        for bad in [
            "",
            "abc",
            &"A".repeat(32),
            &"g".repeat(32),
            &"0".repeat(33),
            "../etc/passwd",
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn terminal_statuses_are_the_three_endings() {
        let terminal: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [Status::Completed, Status::Failed, Status::Cancelled]
        );
    }
}
