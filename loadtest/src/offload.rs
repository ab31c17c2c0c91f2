//! The offloaded kinds of call: a sidecar job (`Prefer: respond-async`, then its result) and an
//! MCP task (a `CreateTaskResult`, then `tasks/get` until it ends). Both report the latency to
//! their first answer (the `202`, the task's creation) and the time to their result apart.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use mcp_sidecar::upstream::PoolError;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Answer, Session, Target, error};
use crate::report::Outcome;

impl Target {
    /// Submits the call as a sidecar job (`Prefer: respond-async`): the `202 Accepted` and its
    /// `Location`, then `GET <location>/result` every `poll` (409 until the job ends) and its
    /// JSON-RPC response judged as a live answer is. A submission that is not a 202 with a
    /// `Location` is `not_accepted` (or its HTTP status).
    pub async fn job(&self, session: &Session, id: &Value, body: Bytes, poll: Duration) -> Answer {
        let mut req = self.request(Method::POST, session, body);
        req.headers_mut()
            .insert("prefer", HeaderValue::from_static("respond-async"));
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let accepted = Instant::now();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = response.into_body().collect().await;
        let Some(location) = location.filter(|_| status == StatusCode::ACCEPTED) else {
            let class = if status.is_success() {
                "not_accepted".to_owned()
            } else {
                format!("http_{}", status.as_u16())
            };
            return error(&class);
        };
        let Ok(result_uri) = self.resolve(&format!("{location}/result")) else {
            return error("bad_location");
        };
        let done = |outcome| Answer {
            outcome,
            first_event: None,
            accepted: Some(accepted),
        };
        // The wait for the end is bounded too: a job that never ends is a timeout, not a hang.
        let end_by = accepted + self.timeout;
        loop {
            tokio::time::sleep(poll).await;
            if Instant::now() >= end_by {
                return done(Outcome::Error("timeout".into()));
            }
            let mut req = self.request(Method::GET, session, Bytes::new());
            *req.uri_mut() = result_uri.clone();
            let response = match self.pool.request(req).await {
                Ok(r) => r,
                Err(PoolError::Connect(_)) => return done(Outcome::Error("connect".into())),
                Err(_) => return done(Outcome::Error("reset".into())),
            };
            if response.status() == StatusCode::CONFLICT {
                let _ = response.into_body().collect().await;
                continue;
            }
            let (outcome, _) = self.judge(response, id, &mut None).await;
            return done(outcome);
        }
    }

    /// Runs the call as an MCP task (2025-11-25: `params.task` on the session's `tools/call`):
    /// the `CreateTaskResult`, then `tasks/get` every `poll` until the task ends, then
    /// `tasks/result`, judged as a live answer is. A call answered without a task is
    /// `not_a_task`.
    pub async fn task(&self, session: &Session, id: &Value, body: Bytes, poll: Duration) -> Answer {
        let Ok(mut call) = serde_json::from_slice::<Value>(&body) else {
            return error("bad_request");
        };
        if let Some(params) = call.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("task".into(), json!({}));
        }
        let req = self.request(Method::POST, session, Bytes::from(call.to_string()));
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let (outcome, message) = self.judge(response, id, &mut None).await;
        let accepted = Instant::now();
        let task_id = message
            .as_ref()
            .and_then(|m| m.pointer("/result/task/taskId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(task_id) = task_id else {
            let class = match outcome {
                Outcome::Success => "not_a_task".to_owned(),
                Outcome::Error(class) => class,
            };
            return error(&class);
        };
        let done = |outcome| Answer {
            outcome,
            first_event: None,
            accepted: Some(accepted),
        };
        let ask = |method: &str| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method,
                "params": {"taskId": task_id}});
            self.request(Method::POST, session, Bytes::from(body.to_string()))
        };
        let end_by = accepted + self.timeout;
        loop {
            tokio::time::sleep(poll).await;
            if Instant::now() >= end_by {
                return done(Outcome::Error("timeout".into()));
            }
            let response = match self.pool.request(ask("tasks/get")).await {
                Ok(r) => r,
                Err(PoolError::Connect(_)) => return done(Outcome::Error("connect".into())),
                Err(_) => return done(Outcome::Error("reset".into())),
            };
            let (outcome, message) = self.judge(response, id, &mut None).await;
            if outcome != Outcome::Success {
                return done(outcome);
            }
            let status = message
                .as_ref()
                .and_then(|m| m.pointer("/result/status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(status, "completed" | "failed" | "cancelled") {
                break;
            }
        }
        match self.pool.request(ask("tasks/result")).await {
            Ok(response) => done(self.judge(response, id, &mut None).await.0),
            Err(PoolError::Connect(_)) => done(Outcome::Error("connect".into())),
            Err(_) => done(Outcome::Error("reset".into())),
        }
    }
}
