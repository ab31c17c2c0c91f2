//! 2025-11-25's `tasks/result` for a task that has not ended: an event stream that delivers the
//! requests the task's call makes of its client (elicitation, sampling: the task is then
//! `input_required`), each with the related-task metadata, and ends with the call's result (or
//! its JSON-RPC error) once the task ends. The client answers a request by POSTing its response
//! as usual; the response goes through the sidecar to the backend's session, and the call goes
//! on.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;
use tokio::sync::broadcast;

use super::wire;
use crate::body::{BoxError, ProxyBody};
use crate::jobs::{Job, JobId, JobState, Jobs, Owner, Status};
use crate::mcp::sse::Event;

/// Interval of `: keepalive` comments while the task works: inside the 60 s idle cut of common
/// load balancers (the job API's event stream uses the same).
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Follow {
    jobs: Jobs,
    owner: Owner,
    id: JobId,
    request_id: Option<Value>,
    rx: Option<broadcast::Receiver<JobState>>,
    /// Look at the job now (first poll, after a change).
    check: bool,
    /// Request keys already delivered.
    sent: HashSet<String>,
    done: bool,
}

impl Follow {
    /// What the job, as it is now, has to say: its new requests, or its result.
    async fn frames(&mut self) -> Option<Bytes> {
        let job = self.jobs.get(self.id, &self.owner).await.ok();
        let Some(job) = job else {
            self.done = true;
            let error = serde_json::json!({"code": -32602, "message": "the task is gone"});
            return Some(event(&wire::error_response(
                self.request_id.as_ref(),
                &error,
            )));
        };
        if job.status.is_terminal() {
            self.done = true;
            let text = match wire::payload(&job) {
                Ok(result) => wire::response(self.request_id.as_ref(), &result),
                Err(error) => wire::error_response(self.request_id.as_ref(), &error),
            };
            return Some(event(&text));
        }
        if job.status != Status::InputRequired {
            return None;
        }
        let mut out = Vec::new();
        for (key, request) in requests(&job) {
            if self.sent.insert(key) {
                out.extend_from_slice(&event(&request));
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// The stream's requests: each with the backend's id (its response goes to the backend as is)
/// and the related-task metadata.
fn requests(job: &Job) -> Vec<(String, String)> {
    let Some(task) = &job.task else {
        return Vec::new();
    };
    wire::outstanding(job)
        .into_iter()
        .filter_map(|(key, shown)| {
            let id = task.pending_ids.get(&key)?.clone();
            let mut request = serde_json::json!({"jsonrpc": "2.0", "id": id});
            request["method"] = shown.get("method")?.clone();
            let mut params = shown
                .get("params")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            if let Some(p) = params.as_object_mut() {
                let meta = p.entry("_meta").or_insert_with(|| serde_json::json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.insert(
                        "io.modelcontextprotocol/related-task".to_owned(),
                        serde_json::json!({"taskId": job.id.to_string()}),
                    );
                }
            }
            request["params"] = params;
            Some((key, request.to_string()))
        })
        .collect()
}

fn event(data: &str) -> Bytes {
    Event::new(data).encode()
}

/// The streamed `tasks/result` answer for request `request_id`, following the job.
pub(super) fn answer(
    jobs: Jobs,
    owner: Owner,
    id: JobId,
    request_id: Option<Value>,
    rx: Option<broadcast::Receiver<JobState>>,
) -> Response<ProxyBody> {
    let follow = Follow {
        jobs,
        owner,
        id,
        request_id,
        rx,
        check: true,
        sent: HashSet::new(),
        done: false,
    };
    let frames = stream::unfold(follow, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if f.check {
                f.check = false;
                if let Some(bytes) = f.frames().await {
                    return Some((Ok::<_, BoxError>(Frame::data(bytes)), f));
                }
            }
            let Some(rx) = f.rx.as_mut() else {
                // Nothing more to follow: the job's end is in the store.
                let bytes = f.frames().await;
                f.done = true;
                return bytes.map(|b| (Ok(Frame::data(b)), f));
            };
            let next = tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep(KEEPALIVE) => {
                    return Some((Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))), f));
                }
            };
            match next {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => f.check = true,
                Err(broadcast::error::RecvError::Closed) => {
                    f.rx = None;
                }
            }
        }
    });
    crate::job_api::event_stream(StreamBody::new(frames).boxed_unsync())
}
