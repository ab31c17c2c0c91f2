//! How the job API shows jobs: the JSON document of a job, the `202 Accepted`, the JSON-RPC
//! response of a job that ended without an answer, and the event stream.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::body::{BoxError, ProxyBody, full};
use crate::error::codes;
use crate::jobs::{Job, JobId, JobState, Jobs, Outcome, Owner, Status};
use crate::mcp::sse::{Event, EventName};

/// Interval of `: keepalive` comments on a quiet event stream: inside the 60 s idle cut of
/// common load balancers (the same reasoning as the upstreams' `sse_keepalive`).
const EVENTS_KEEPALIVE: Duration = Duration::from_secs(15);
/// The event types of a job's stream: a status change, or progress within a status.
const STATUS: EventName<'static> = EventName::from_static("status");
const PROGRESS: EventName<'static> = EventName::from_static("progress");
/// The reconnection delay suggested to `EventSource` clients (`retry:`), in milliseconds.
const EVENTS_RETRY_MS: u64 = 2000;

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A job's JSON document.
pub fn job_json(job: &JobState, prefix: &str) -> Value {
    let url = format!("{prefix}/{}", job.id);
    let mut doc = json!({
        "id": job.id.to_string(),
        "status": job.status.as_str(),
        "upstream": job.upstream,
        "method": job.method,
        "tool": job.tool,
        "progress": job.progress.as_ref().map(|p| json!({
            "progress": p.progress,
            "total": p.total,
            "message": p.message,
        })),
        "attempts": job.attempts,
        "createdAt": time(job.created_ms),
        "updatedAt": time(job.updated_ms),
        "startedAt": job.started_ms.map(time),
        "finishedAt": job.finished_ms.map(time),
        "deadlineAt": time(job.deadline_ms),
        "expiresAt": time(job.expires_ms),
        "links": {
            "self": url,
            "result": format!("{url}/result"),
            "events": format!("{url}/events"),
        },
    });
    if let Some((reason, message)) = &job.failure {
        doc["error"] = json!({"reason": reason.as_str(), "message": message});
    }
    doc
}

/// The JSON-RPC response of a job that ended without the upstream's answer (failed or
/// cancelled): an error object carrying the call's id, so a client handles it like any answer.
pub(super) fn unanswered(job: &Job, outcome: &Outcome) -> Value {
    let id: Value = serde_json::from_str(&job.request.jsonrpc_id).unwrap_or(Value::Null);
    let (code, message, reason) = match outcome {
        Outcome::Failed { reason, message } => (
            codes::JOB_FAILED,
            format!("job failed: {message}"),
            reason.as_str(),
        ),
        _ => (
            codes::JOB_CANCELLED,
            "job cancelled".to_owned(),
            "cancelled",
        ),
    };
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message, "data": {"reason": reason, "job": job.id.to_string()}},
    })
}

pub(super) fn json(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    raw_json(status, Bytes::from(value.to_string()))
}

pub(crate) fn raw_json(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sets `Location` to the job's URL.
pub(super) fn locate(headers: &mut HeaderMap, prefix: &str, id: JobId) {
    if let Ok(v) = HeaderValue::from_str(&format!("{prefix}/{id}")) {
        headers.insert(header::LOCATION, v);
    }
}

/// `202 Accepted` for a submitted (or replayed) job.
pub(super) fn accepted(
    job: &JobState,
    prefix: &str,
    respond_async: bool,
    replayed: bool,
) -> Response<ProxyBody> {
    let mut response = json(StatusCode::ACCEPTED, &job_json(job, prefix));
    let h = response.headers_mut();
    locate(h, prefix, job.id);
    if respond_async {
        h.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// One event (`status` or `progress`, written by the shared SSE encoder); the first also
/// suggests a reconnection delay.
fn event(job: &JobState, prefix: &str, kind: EventName<'_>, first: bool) -> Bytes {
    let data = job_json(job, prefix).to_string();
    let mut out = BytesMut::new();
    if first {
        out.extend_from_slice(format!("retry: {EVENTS_RETRY_MS}\n").as_bytes());
    }
    Event::new(&data)
        .name(kind)
        .id(job.seq)
        .encode_into(&mut out);
    out.freeze()
}

/// What the event stream has sent and still follows.
struct Follow {
    pending: Option<JobState>,
    rx: Option<broadcast::Receiver<JobState>>,
    sent_seq: Option<u64>,
    sent_status: Option<Status>,
    done: bool,
    prefix: Arc<str>,
    jobs: Jobs,
    owner: Owner,
    id: JobId,
}

impl Follow {
    /// The frame for `job` if it is newer than what was sent; ends the stream at a terminal
    /// status.
    fn frame(&mut self, job: JobState) -> Option<Bytes> {
        if self.sent_seq.is_some_and(|s| job.seq <= s) {
            return None;
        }
        let first = self.sent_status.is_none();
        let kind = if self.sent_status == Some(job.status) {
            PROGRESS
        } else {
            STATUS
        };
        self.sent_seq = Some(job.seq);
        self.sent_status = Some(job.status);
        if job.status.is_terminal() {
            self.done = true;
        }
        Some(event(&job, &self.prefix, kind, first))
    }

    /// The job as stored now (after a follower fell behind or the live channel closed).
    async fn current(&self) -> Option<JobState> {
        self.jobs
            .get(self.id, &self.owner)
            .await
            .ok()
            .map(|j| j.state())
    }
}

/// `GET /jobs/{id}/events`: the current state (unless `Last-Event-ID` says the client has
/// it), then every change, ending after the terminal status.
pub(super) fn events(
    state: JobState,
    rx: Option<broadcast::Receiver<JobState>>,
    last_event_id: Option<u64>,
    prefix: Arc<str>,
    jobs: Jobs,
    owner: Owner,
) -> Response<ProxyBody> {
    let follow = Follow {
        id: state.id,
        pending: Some(state),
        rx,
        sent_seq: last_event_id,
        sent_status: None,
        done: false,
        prefix,
        jobs,
        owner,
    };
    let frames = stream::unfold(follow, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if let Some(job) = f.pending.take() {
                let terminal = job.status.is_terminal();
                let frame = f.frame(job);
                if terminal || f.rx.is_none() {
                    f.done = true;
                }
                match frame {
                    Some(bytes) => return Some((Ok::<_, BoxError>(Frame::data(bytes)), f)),
                    None => continue,
                }
            }
            let Some(rx) = f.rx.as_mut() else {
                f.done = true;
                continue;
            };
            let next = tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep(EVENTS_KEEPALIVE) => {
                    return Some((Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))), f));
                }
            };
            match next {
                Ok(job) => f.pending = Some(job),
                Err(broadcast::error::RecvError::Lagged(_)) => f.pending = f.current().await,
                Err(broadcast::error::RecvError::Closed) => {
                    f.rx = None;
                    f.pending = f.current().await;
                }
            }
        }
    });
    event_stream(StreamBody::new(frames).boxed_unsync())
}

/// A `200` event stream the sidecar writes itself (never cached, never buffered by a proxy in
/// front).
pub(crate) fn event_stream(body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
