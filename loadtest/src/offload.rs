//! The offloaded kinds of call, each reporting the latency to its first answer (the `202`, the
//! task's creation) and the time to its result apart:
//!
//! - a sidecar job (`Prefer: respond-async`): the `202 Accepted`, then either its result polled
//!   (`GET <Location>/result`, 409 until it ends) or its events followed (`GET …/events`, SSE,
//!   until the terminal status) and then its result fetched once;
//! - an MCP task, on the session's revision: 2025-11-25 (`params.task`, `{ task }`, `tasks/get`
//!   until it ends, then `tasks/result`) or 2026-07-28's extension `io.modelcontextprotocol/tasks`
//!   (declared in the call's `_meta`, a flat `CreateTaskResult`, `tasks/get` until it ends, whose
//!   answer carries the result or the error inline).
//!
//! The wait for the end is bounded by the target's timeout from the first answer: a job or a
//! task that never ends is a `timeout`, never a hang.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{
    Answer, EventReader, Session, Target, classify, error, is_event_stream, response_to,
};
use crate::report::Outcome;

/// Largest `202` document read for its links (the sidecar's is under 1 KiB): a larger one is
/// not read whole, and the links under `Location` are used.
const JOB_DOCUMENT_MAX: usize = 64 * 1024;

/// How calls are offloaded (`--jobs`, `--jobs-follow`, `--tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Sidecar jobs whose result is polled this often.
    JobsPoll(Duration),
    /// Sidecar jobs whose event stream is followed to the end.
    JobsFollow,
    /// MCP tasks polled with `tasks/get` this often, or as often as the server asks when that
    /// is less often.
    Tasks(Duration),
}

/// A job the sidecar accepted.
#[derive(Debug, Clone)]
pub struct SubmittedJob {
    /// When its `202 Accepted` came.
    pub accepted: Instant,
    /// Its result (`GET`: 409 until it ends).
    pub result: http::Uri,
    /// Its event stream.
    pub events: http::Uri,
}

/// The statuses after which a job or a task changes no more.
fn terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

impl Target {
    /// Runs the call as `offload` says.
    pub async fn offloaded(
        &self,
        offload: Offload,
        session: &Session,
        id: &Value,
        body: Bytes,
    ) -> Answer {
        match offload {
            Offload::JobsPoll(poll) => self.job(session, id, body, Some(poll)).await,
            Offload::JobsFollow => self.job(session, id, body, None).await,
            Offload::Tasks(poll) => self.task(session, id, body, poll).await,
        }
    }

    /// Submits the call as a sidecar job (`Prefer: respond-async`): the `202 Accepted` and its
    /// `Location`; then, with `poll`, `GET <location>/result` that often (409 until the job
    /// ends), else the job's event stream followed to its terminal status and the result
    /// fetched once. The result, a JSON-RPC response, is judged as a live answer is. A
    /// submission that is not a 202 with a `Location` is `not_accepted` (or its HTTP status).
    pub async fn job(
        &self,
        session: &Session,
        id: &Value,
        body: Bytes,
        poll: Option<Duration>,
    ) -> Answer {
        let deadline = Instant::now() + self.timeout;
        let job = match self.submit_job(session, body, deadline).await {
            Ok(job) => job,
            Err(answer) => return answer,
        };
        let (accepted, result_uri, events_uri) = (job.accepted, job.result, job.events);
        let end_by = accepted + self.timeout;
        let wait = async {
            match poll {
                Some(poll) => {
                    self.poll_result(session, id, result_uri, poll, end_by)
                        .await
                }
                None => {
                    self.follow(session, id, events_uri, result_uri, end_by)
                        .await
                }
            }
        };
        bounded(accepted, end_by, wait).await
    }

    /// Submits the call as a sidecar job (`Prefer: respond-async`) by `deadline`: its links, or
    /// the failed submission's answer (a submission that is not a 202 with a `Location` is
    /// `not_accepted`, or its HTTP status).
    pub async fn submit_job(
        &self,
        session: &Session,
        body: Bytes,
        deadline: Instant,
    ) -> Result<SubmittedJob, Answer> {
        let mut req = self.post(session, body, false);
        req.headers_mut()
            .insert("prefer", HeaderValue::from_static("respond-async"));
        let response = self.send(req, deadline).await?;
        let accepted = Instant::now();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let document = Limited::new(response.into_body(), JOB_DOCUMENT_MAX).collect();
        let document = match tokio::time::timeout_at(deadline, document).await {
            Ok(Ok(b)) => serde_json::from_slice::<Value>(&b.to_bytes()).ok(),
            // Unreadable or too large: the links are then the ones under `Location`.
            _ => None,
        };
        let Some(location) = location.filter(|_| status == StatusCode::ACCEPTED) else {
            let class = if status.is_success() {
                "not_accepted".to_owned()
            } else {
                format!("http_{}", status.as_u16())
            };
            return Err(error(&class));
        };
        let link = |name: &str| {
            document
                .as_ref()
                .and_then(|d| d.pointer(&format!("/links/{name}")))
                .and_then(Value::as_str)
                .map_or_else(|| format!("{location}/{name}"), str::to_owned)
        };
        let (Ok(result), Ok(events)) =
            (self.resolve(&link("result")), self.resolve(&link("events")))
        else {
            return Err(error("bad_location"));
        };
        Ok(SubmittedJob {
            accepted,
            result,
            events,
        })
    }

    /// One `GET` of a job's result by `deadline`: `None` while the job has not ended (409),
    /// else its outcome and the JSON-RPC response (none when it failed to come).
    pub async fn job_result(
        &self,
        session: &Session,
        id: &Value,
        result_uri: &http::Uri,
        deadline: Instant,
    ) -> Option<(Outcome, Option<Value>)> {
        let mut req = self.request(Method::GET, session, Bytes::new());
        *req.uri_mut() = result_uri.clone();
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return Some((answer.outcome, None)),
        };
        if response.status() == StatusCode::CONFLICT {
            let _ = response.into_body().collect().await;
            return None;
        }
        Some(self.judge(response, id, &mut None).await)
    }

    /// The job's result, polled every `poll` until it is there.
    async fn poll_result(
        &self,
        session: &Session,
        id: &Value,
        result_uri: http::Uri,
        poll: Duration,
        end_by: Instant,
    ) -> Outcome {
        loop {
            tokio::time::sleep(poll).await;
            if let Some((outcome, _)) = self.job_result(session, id, &result_uri, end_by).await {
                return outcome;
            }
        }
    }

    /// Follows the job's event stream to its terminal status, then judges its result: from
    /// the event when it carries the JSON-RPC response, else from one `GET …/result`. A stream
    /// that ends (or breaks off) before a terminal status is `stream_closed`.
    async fn follow(
        &self,
        session: &Session,
        id: &Value,
        events_uri: http::Uri,
        result_uri: http::Uri,
        end_by: Instant,
    ) -> Outcome {
        let mut req = self.request(Method::GET, session, Bytes::new());
        *req.uri_mut() = events_uri;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let response = match self.send(req, end_by).await {
            Ok(r) => r,
            Err(answer) => return answer.outcome,
        };
        let status = response.status();
        let sse = is_event_stream(response.headers());
        if !status.is_success() || !sse {
            let _ = response.into_body().collect().await;
            return Outcome::Error(if status.is_success() {
                "bad_answer".to_owned()
            } else {
                format!("http_{}", status.as_u16())
            });
        }
        let mut events = EventReader::new(response.into_body());
        loop {
            let event = match events.next().await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => return Outcome::Error("stream_closed".into()),
            };
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if let Some(message) = response_to(&event.data, id) {
                return classify(&message);
            }
            if !data
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(terminal)
            {
                continue;
            }
            // The sidecar's events show the job, not its result: one fetch of it.
            drop(events);
            let mut req = self.request(Method::GET, session, Bytes::new());
            *req.uri_mut() = result_uri;
            return match self.send(req, end_by).await {
                Ok(response) => self.judge(response, id, &mut None).await.0,
                Err(answer) => answer.outcome,
            };
        }
    }

    /// Runs the call as an MCP task on the session's revision: 2025-11-25's `params.task`, or
    /// on 2026-07-28 the Tasks extension declared in the call's `_meta`. The create answer,
    /// then `tasks/get` every `poll` (or the task's `pollInterval`, when longer: a client
    /// honours it) until the task ends; its result is then `tasks/result`'s answer (2025-11-25)
    /// or inlined in the last `tasks/get` (2026-07-28), judged as a live answer is: a
    /// `failed` task counts by its error's code, a `cancelled` one as `cancelled`, one that
    /// waits for input the generator cannot give as `input_required`. On 2025-11-25 a call
    /// answered without a task is `not_a_task`; on 2026-07-28 the server may answer at once
    /// (SEP-2663), and that answer counts as a live call's.
    pub async fn task(&self, session: &Session, id: &Value, body: Bytes, poll: Duration) -> Answer {
        let extension = session.stateless();
        let Ok(mut call) = serde_json::from_slice::<Value>(&body) else {
            return error("bad_request");
        };
        if !extension && let Some(params) = call.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("task".into(), json!({}));
        }
        let req = self.post_message(session, call, extension);
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let Ok((outcome, message)) =
            tokio::time::timeout_at(deadline, self.judge(response, id, &mut None)).await
        else {
            return error("timeout");
        };
        let accepted = Instant::now();
        let result = message.as_ref().and_then(|m| m.get("result"));
        let created = if extension {
            result.filter(|r| r.get("resultType").and_then(Value::as_str) == Some("task"))
        } else {
            result.and_then(|r| r.get("task"))
        };
        let task_id = created
            .and_then(|t| t.get("taskId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(task_id) = task_id else {
            let kind = result
                .and_then(|r| r.get("resultType"))
                .and_then(Value::as_str);
            return match (outcome, extension) {
                (Outcome::Success, _) if kind == Some("input_required") => error("input_required"),
                (Outcome::Success, false) => error("not_a_task"),
                (outcome, _) => Answer {
                    outcome,
                    first_event: None,
                    accepted: None,
                },
            };
        };
        let asked = created
            .and_then(|t| {
                t.get(if extension {
                    "pollIntervalMs"
                } else {
                    "pollInterval"
                })
            })
            .and_then(Value::as_u64)
            .map(Duration::from_millis);
        let interval = asked.map_or(poll, |asked| asked.max(poll));
        let end_by = accepted + self.timeout;
        let wait = self.until_ended(session, id, &task_id, interval, end_by);
        bounded(accepted, end_by, wait).await
    }

    /// Polls `tasks/get` every `interval` until the task ends; the task's outcome.
    async fn until_ended(
        &self,
        session: &Session,
        id: &Value,
        task_id: &str,
        interval: Duration,
        end_by: Instant,
    ) -> Outcome {
        let extension = session.stateless();
        let ask = |method: &str| {
            let message = json!({"jsonrpc": "2.0", "id": id, "method": method,
                "params": {"taskId": task_id}});
            self.post_message(session, message, extension)
        };
        let task = loop {
            tokio::time::sleep(interval).await;
            let response = match self.send(ask("tasks/get"), end_by).await {
                Ok(r) => r,
                Err(answer) => return answer.outcome,
            };
            let (outcome, message) = self.judge(response, id, &mut None).await;
            if outcome != Outcome::Success {
                return outcome;
            }
            let task = message
                .and_then(|mut m| m.get_mut("result").map(Value::take))
                .unwrap_or(Value::Null);
            match task.get("status").and_then(Value::as_str).unwrap_or("") {
                "input_required" => return Outcome::Error("input_required".into()),
                s if terminal(s) => break task,
                _ => {}
            }
        };
        if extension {
            return ended(&task);
        }
        match self.send(ask("tasks/result"), end_by).await {
            Ok(response) => self.judge(response, id, &mut None).await.0,
            Err(answer) => answer.outcome,
        }
    }
}

/// `wait`'s outcome as the answer of a call first answered at `accepted`, the wait bounded by
/// `end_by` (the requests inside it are bounded by it too, so that each fails as what it is).
async fn bounded(
    accepted: Instant,
    end_by: Instant,
    wait: impl Future<Output = Outcome>,
) -> Answer {
    let outcome = tokio::time::timeout_at(end_by, wait)
        .await
        .unwrap_or_else(|_| Outcome::Error("timeout".into()));
    Answer {
        outcome,
        first_event: None,
        accepted: Some(accepted),
    }
}

/// The outcome of a 2026-07-28 task that ended, from its `tasks/get` answer: `completed` carries
/// the tool's result (a tool error is `completed` with `isError`), `failed` the JSON-RPC error.
fn ended(task: &Value) -> Outcome {
    match task.get("status").and_then(Value::as_str) {
        Some("completed") => match task.get("result") {
            Some(result) => classify(&json!({ "result": result })),
            None => Outcome::Error("bad_answer".into()),
        },
        Some("failed") => match task.get("error") {
            Some(error) => classify(&json!({ "error": error })),
            None => Outcome::Error("task_failed".into()),
        },
        _ => Outcome::Error("cancelled".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_2026_task_is_judged_by_what_it_carries() {
        let done = json!({"status": "completed", "result": {"content": []}});
        assert_eq!(ended(&done), Outcome::Success);
        let tool_error = json!({"status": "completed", "result": {"isError": true}});
        assert_eq!(ended(&tool_error), Outcome::Error("tool_error".into()));
        let failed = json!({"status": "failed", "error": {"code": -32099, "message": "x"}});
        assert_eq!(ended(&failed), Outcome::Error("jsonrpc_-32099".into()));
        let cancelled = json!({"status": "cancelled"});
        assert_eq!(ended(&cancelled), Outcome::Error("cancelled".into()));
    }
}
