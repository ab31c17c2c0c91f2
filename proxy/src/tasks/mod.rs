//! MCP Tasks for backends that have none: the sidecar serves the task protocol itself on the job
//! engine (the "facade"), for both revisions that define it (see [`wire`]).
//!
//! - A `tools/call` to a facade tool from a client that speaks Tasks (2026-07-28: the extension
//!   in the request's `_meta` client capabilities; 2025-11-25: `params.task`) becomes a job
//!   whose record carries [`TaskInfo`]; the answer is the `CreateTaskResult`, sent once the job
//!   is stored durably, without the client's task request (the backend sees a plain call). On
//!   2026-07-28 a tool with `task_wait` answers as is when its call ends within it.
//! - Task methods (`tasks/get`, `tasks/update`, `tasks/cancel`; 2025-11-25's `tasks/result`
//!   and `tasks/list`) are answered here from the job, for its owner only: another principal's
//!   task id is unknown (-32602), as a job of another owner is on `/jobs`.
//! - A backend answer `input_required` (SEP-2322) parks the job with the round's
//!   `inputRequests`; `tasks/update` collects the client's responses and, once every request
//!   of the round is answered, sends the call again with them. Requests the call sends on its
//!   event stream (2025-11-25 style) are shown the same way; `tasks/update` relays each
//!   response to the backend's pending request, and 2025-11-25 clients get them on the
//!   streamed `tasks/result` (`result_stream.rs`).
//! - Without negotiation a facade tool runs live, unless it requires tasks (-32021, or -32601
//!   on 2025-11-25).
//! - The capability and `execution.taskSupport` are added to the backend's answers by
//!   [`advert`]; a backend that advertises Tasks itself is left alone (passthrough).
//!
//! The phase runs after authorization and rate limits, like the job API's offload; the
//! facade's own task methods skip the method rules ([`Tasks::answers_own_task_method`]).

pub mod advert;
mod result_stream;
pub mod routing;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::body::ProxyBody;
use crate::config::{TaskSupport, ToolTasks, UpstreamTasks, tasks::tool_tasks};
use crate::error::{McpErrorKind, McpRefusal, ProxyError};
use crate::exchange::{Exchange, Outcome, Step};
use crate::glob::glob_match;
use crate::job_api::JobApi;
use crate::jobs::{Job, JobError, JobId, Outcome as JobOutcome, Owner, Resume, Status, TaskInfo};
use crate::mcp::{Classified, Kind, Message};
use crate::upstream::Upstream;
use wire::Revision;

/// How long `tasks/cancel` waits for a working task's call to be abandoned: the worker notices
/// at once; this only bounds a slow store (as the job API's `DELETE`).
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Tasks per `tasks/list` page (2025-11-25): each is read whole to show its status exactly.
const LIST_PAGE: usize = 50;

/// One upstream's Tasks setting and what the sidecar learned of its backend.
#[derive(Debug)]
pub struct Plan {
    mode: UpstreamTasks,
    /// The backend advertised Tasks itself (seen in an `initialize` or `server/discover`
    /// answer): an automatic facade steps aside.
    native: AtomicBool,
}

impl Plan {
    /// Whether the sidecar serves Tasks for this upstream now.
    pub fn facade(&self) -> bool {
        match self.mode {
            UpstreamTasks::Facade => true,
            UpstreamTasks::Auto => !self.native.load(Ordering::Relaxed),
            UpstreamTasks::Off | UpstreamTasks::Passthrough => false,
        }
    }

    /// Records that the backend advertises Tasks itself.
    pub fn saw_native(&self) {
        if self.mode == UpstreamTasks::Auto && !self.native.swap(true, Ordering::Relaxed) {
            tracing::info!("the backend advertises MCP Tasks itself; passing its tasks through");
        }
    }

    /// Whether the backend was seen advertising Tasks.
    pub fn native(&self) -> bool {
        self.native.load(Ordering::Relaxed)
    }
}

/// The Tasks facade: the job API it builds on, and each upstream's plan.
#[derive(Debug, Clone)]
pub struct Tasks {
    api: JobApi,
    /// Each upstream's plan, by name. A list: upstreams are few, and the name is the router's
    /// own `Arc`, so the lookup on every `tools/call` is a pointer comparison, not a hash.
    plans: Arc<[(Arc<str>, Arc<Plan>)]>,
    /// What a task's `ttl`/`ttlMs` says: a finished job is kept this long (`jobs.result_ttl`),
    /// so a task is never removed before its TTL from creation has passed.
    ttl: Duration,
}

impl Tasks {
    /// The facade over `api` for `upstreams`.
    pub fn new(api: JobApi, upstreams: &[Arc<Upstream>], ttl: Duration) -> Self {
        let plans: Vec<(Arc<str>, Arc<Plan>)> = upstreams
            .iter()
            .map(|u| {
                let plan = Plan {
                    mode: crate::config::tasks::upstream_tasks(&u.config, true),
                    native: AtomicBool::new(false),
                };
                (u.name.clone(), Arc::new(plan))
            })
            .collect();
        Self {
            api,
            plans: Arc::from(plans),
            ttl,
        }
    }

    /// The plan of the upstream named `name`.
    pub fn plan(&self, name: &Arc<str>) -> Option<&Arc<Plan>> {
        self.plans
            .iter()
            .find(|(n, _)| Arc::ptr_eq(n, name) || n == name)
            .map(|(_, p)| p)
    }

    /// The facade's additions to the answer of `classified` (see [`advert`]): `None` unless it
    /// carries an `initialize`, `server/discover` or `tools/list` request to an upstream the
    /// facade serves.
    pub fn advert(
        &self,
        upstream: &Arc<Upstream>,
        classified: Option<&Classified>,
        headers: &http::HeaderMap,
    ) -> Option<advert::Advert> {
        let asks = classified?.messages.iter().any(|m| {
            m.kind == Kind::Request
                && m.method
                    .as_deref()
                    .is_some_and(|method| advert::ADVERTISED.contains(&method))
        });
        if !asks {
            return None;
        }
        let plan = self.plan(&upstream.name)?;
        if !plan.facade() {
            return None;
        }
        let tool_support = headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() >= wire::CORE_TASKS_REVISION);
        Some(advert::Advert {
            plan: plan.clone(),
            upstream: upstream.clone(),
            tool_support,
        })
    }

    /// Whether [`Tasks::serve`] may have something to do: a single request to an upstream the
    /// facade serves, calling a tool or a task method. Others skip the phase on a comparison.
    #[inline]
    pub fn may_serve(&self, ex: &Exchange) -> bool {
        let Some(method) = ex
            .classified
            .as_ref()
            .and_then(Classified::single)
            .and_then(|m| m.method.as_deref())
        else {
            return false;
        };
        (method == "tools/call" || method.starts_with("tasks/"))
            && ex
                .upstream
                .as_ref()
                .and_then(|u| self.plan(&u.name))
                .is_some_and(|p| p.facade())
    }

    /// Whether the request is a task method the facade answers itself from the caller's own
    /// jobs (`tasks/get`, `tasks/update`, `tasks/cancel`, `tasks/result`, `tasks/list` on an
    /// upstream it serves). Such a request is not held to the upstream's method rules: it
    /// reaches nothing but the caller's own tasks, whose calls were authorized when they were
    /// made (as the job API's routes are), and a client allowed a tool must be able to follow
    /// its task.
    pub fn answers_own_task_method(&self, ex: &Exchange) -> bool {
        let Some(message) = ex.classified.as_ref().and_then(Classified::single) else {
            return false;
        };
        message.kind == Kind::Request
            && matches!(
                message.method.as_deref(),
                Some("tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" | "tasks/list")
            )
            && ex
                .upstream
                .as_ref()
                .and_then(|u| self.plan(&u.name))
                .is_some_and(|p| p.facade())
    }

    /// The Tasks phase: creates a task for a negotiated call to a facade tool, answers the task
    /// methods, refuses what the spec refuses; everything else goes on.
    pub async fn serve(&self, ex: &mut Exchange) -> Outcome {
        let Some(message) = ex
            .classified
            .as_ref()
            .and_then(Classified::single)
            .filter(|m| m.kind == Kind::Request)
            .cloned()
        else {
            return Ok(Step::Next);
        };
        let Some(upstream) = ex.upstream.clone() else {
            return Ok(Step::Next);
        };
        let body: Value = match ex.body.as_deref().map(serde_json::from_slice) {
            Some(Ok(v)) => v,
            _ => return Ok(Step::Next),
        };
        let params = body.get("params");
        let revision = Revision::of(&ex.head.headers, params);
        let method = message.method.as_deref().unwrap_or("");
        if method == "tools/call" {
            return self.call(ex, &upstream, &message, params, revision).await;
        }
        let request = TaskRequest {
            ex,
            upstream: &upstream,
            message: &message,
            params,
            revision,
        };
        self.task_method(request, method).await
    }

    /// A `tools/call` to a facade tool: a task when the client speaks Tasks.
    async fn call(
        &self,
        ex: &mut Exchange,
        upstream: &Arc<Upstream>,
        message: &Message,
        params: Option<&Value>,
        revision: Revision,
    ) -> Outcome {
        let tool = message.tool.clone().unwrap_or_default();
        let tasks = tool_tasks(&upstream.config, true, &tool);
        let ToolTasks::Facade { support, wait } = tasks else {
            // 2025-11-25: a task request for a tool without task support SHOULD get -32601;
            // a backend that never advertised Tasks would answer a plain result instead.
            let native = self.plan(&upstream.name).is_some_and(|p| p.native());
            if tasks == ToolTasks::Off
                && revision == Revision::Core
                && wire::asks_for_task(params)
                && !native
            {
                return Err(refuse(
                    McpErrorKind::MethodNotFound,
                    format!("tool `{tool}` does not run as a task: call it without `params.task`"),
                    revision,
                ));
            }
            return Ok(Step::Next);
        };
        // A client on a revision before Tasks (2025-06-18 and older, or no version at all)
        // knows nothing of them: its calls are none of the facade's business.
        if revision == Revision::Core && !wire::knows_tasks(&ex.head.headers, params) {
            return Ok(Step::Next);
        }
        let negotiated = match revision {
            Revision::Extension => wire::declares_extension(params),
            Revision::Core => wire::asks_for_task(params),
        };
        if !negotiated {
            if support == TaskSupport::Required {
                return Err(match revision {
                    Revision::Extension => refuse(
                        McpErrorKind::MissingTasksCapability,
                        format!(
                            "tool `{tool}` runs only as a task: declare the {} extension in the request's client capabilities",
                            crate::error::TASKS_EXTENSION
                        ),
                        revision,
                    ),
                    Revision::Core => refuse(
                        McpErrorKind::MethodNotFound,
                        format!("tool `{tool}` must be called as a task (`params.task`)"),
                        revision,
                    ),
                });
            }
            return Ok(Step::Next);
        }
        let tool_config = upstream
            .config
            .tool
            .iter()
            .find(|c| glob_match(&c.name, &tool));
        let info = TaskInfo {
            revision: revision.as_str().to_owned(),
            ..TaskInfo::default()
        };
        let mut new = self.api.call_job(
            ex,
            upstream,
            Some(tool),
            tool_config,
            message.id.as_ref(),
            Some(info),
        )?;
        if let Some(body) = wire::without_task_request(&new.request.body) {
            new.request.body = body;
        }
        let (id, owner) = (new.id, new.owner.clone());
        self.api
            .jobs()
            .submit(new)
            .await
            .map_err(|e| job_error(e, revision))?;
        // Only the extension lets a server answer a task-capable call with its result; a
        // 2025-11-25 task request MUST get its `CreateTaskResult` (tasks.mdx, Result Retrieval).
        if !wait.is_zero()
            && revision == Revision::Extension
            && let Some(answer) = self.answered_within(id, &owner, wait, revision).await
        {
            return Ok(Step::Answer(json_answer(answer)));
        }
        let job = self
            .api
            .jobs()
            .get(id, &owner)
            .await
            .map_err(|e| job_error(e, revision))?;
        let created = wire::created(&job, revision, self.ttl);
        Ok(Step::Answer(json_answer(wire::response(
            message.id.as_ref(),
            &created,
        ))))
    }

    /// The call's own answer when it came within `wait`: its result, or (2026-07-28) the input
    /// request of its first round, which the client answers by calling again (SEP-2322), not
    /// through a task.
    async fn answered_within(
        &self,
        id: JobId,
        owner: &Owner,
        wait: Duration,
        revision: Revision,
    ) -> Option<String> {
        let jobs = self.api.jobs();
        let job = jobs.wait_settled(id, owner, wait).await.ok()?;
        match (&job.status, &job.outcome) {
            (Status::Completed, Some(JobOutcome::Answered { response })) => Some(response.clone()),
            (Status::InputRequired, _) if revision == Revision::Extension && job.attempts == 1 => {
                let answer = job.task.as_ref()?.round_answer.clone()?;
                jobs.settle_waiting(
                    id,
                    JobOutcome::Answered {
                        response: answer.clone(),
                    },
                )
                .await
                .then_some(answer)
            }
            _ => None,
        }
    }

    async fn task_method(&self, r: TaskRequest<'_>, method: &str) -> Outcome {
        let revision = r.revision;
        match (revision, method) {
            (Revision::Extension, "tasks/get" | "tasks/update" | "tasks/cancel") => {
                if !wire::declares_extension(r.params) {
                    return Err(refuse(
                        McpErrorKind::MissingTasksCapability,
                        format!(
                            "{method} needs the {} extension in the request's client capabilities",
                            crate::error::TASKS_EXTENSION
                        ),
                        revision,
                    ));
                }
            }
            (Revision::Core, "tasks/get" | "tasks/cancel" | "tasks/result" | "tasks/list") => {}
            (Revision::Extension, "tasks/result" | "tasks/list") => {
                return Err(refuse(
                    McpErrorKind::MethodNotFound,
                    format!("{method} does not exist in the Tasks extension (2026-07-28)"),
                    revision,
                ));
            }
            (Revision::Core, "tasks/update") => {
                return Err(refuse(
                    McpErrorKind::MethodNotFound,
                    "tasks/update is the 2026-07-28 Tasks extension's; 2025-11-25 has none",
                    revision,
                ));
            }
            // Not a task method the facade knows: the backend answers it.
            _ => return Ok(Step::Next),
        }
        let owner = self.api.owner_of(r.ex);
        if method == "tasks/list" {
            return self.list(&r, &owner).await;
        }
        let job = self.owned_task(&r, &owner).await?;
        let id = r.message.id.as_ref();
        let jobs = self.api.jobs();
        let answer = match method {
            "tasks/get" => wire::response(id, &wire::detailed(&job, revision, self.ttl)),
            "tasks/cancel" => {
                if job.status.is_terminal() && revision == Revision::Core {
                    return Err(refuse(
                        McpErrorKind::InvalidParams,
                        format!(
                            "task {} has already ended ({}); it cannot be cancelled",
                            job.id,
                            wire::status(&job, revision)
                        ),
                        revision,
                    ));
                }
                jobs.cancel(job.id, &owner, CANCEL_WAIT)
                    .await
                    .map_err(|e| job_error(e, revision))?;
                match revision {
                    // SEP-2663: an empty ack; the status is observed with tasks/get.
                    Revision::Extension => wire::response(id, &wire::ack()),
                    Revision::Core => {
                        let job = jobs
                            .get(job.id, &owner)
                            .await
                            .map_err(|e| job_error(e, revision))?;
                        wire::response(id, &Value::Object(wire::task(&job, revision, self.ttl)))
                    }
                }
            }
            "tasks/update" => {
                let responses = r
                    .params
                    .and_then(|p| p.get("inputResponses"))
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        refuse(
                            McpErrorKind::InvalidParams,
                            "tasks/update needs `inputResponses`, an object of responses by input request key",
                            revision,
                        )
                    })?
                    .clone();
                if job.status == Status::InputRequired
                    && job.task.as_ref().is_some_and(TaskInfo::streaming)
                {
                    self.relay(&job, &owner, &responses, revision).await?;
                }
                jobs.update_waiting(job.id, &owner, |job| record_responses(job, responses))
                    .await
                    .map_err(|e| job_error(e, revision))?;
                wire::response(id, &wire::ack())
            }
            // "tasks/result" (2025-11-25): the result once the task has ended; before, an
            // event stream that carries the call's requests of its client and then the result.
            _ => {
                let (state, rx) = jobs
                    .follow(job.id, &owner)
                    .await
                    .map_err(|e| job_error(e, revision))?;
                if !state.status.is_terminal() {
                    return Ok(Step::Answer(result_stream::answer(
                        jobs.clone(),
                        owner,
                        job.id,
                        id.cloned(),
                        rx,
                    )));
                }
                let job = jobs
                    .get(job.id, &owner)
                    .await
                    .map_err(|e| job_error(e, revision))?;
                match wire::payload(&job) {
                    Ok(result) => wire::response(id, &result),
                    Err(error) => wire::error_response(id, &error),
                }
            }
        };
        Ok(Step::Answer(json_answer(answer)))
    }

    /// Answers the requests the task's running call sent on its stream: each response goes to
    /// the backend as the JSON-RPC response to its request (once per key).
    async fn relay(
        &self,
        job: &Job,
        owner: &Owner,
        responses: &Map<String, Value>,
        revision: Revision,
    ) -> Result<(), ProxyError> {
        let Some(task) = &job.task else {
            return Ok(());
        };
        for (key, response) in responses {
            let Some(backend_id) = task.pending_ids.get(key) else {
                continue;
            };
            if task.input_responses.contains_key(key) {
                continue;
            }
            let message = wire::response(Some(backend_id), response);
            self.api
                .jobs()
                .send(job.id, owner, message)
                .await
                .map_err(|e| job_error(e, revision))?;
        }
        Ok(())
    }

    /// The task `params.taskId` names, if it is the caller's and this upstream's.
    async fn owned_task(&self, r: &TaskRequest<'_>, owner: &Owner) -> Result<Job, ProxyError> {
        let text = r
            .params
            .and_then(|p| p.get("taskId"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                refuse(
                    McpErrorKind::InvalidParams,
                    "`params.taskId` (a string) is missing",
                    r.revision,
                )
            })?;
        let unknown = || {
            refuse(
                McpErrorKind::InvalidParams,
                format!("unknown task `{}`", text.escape_default()),
                r.revision,
            )
        };
        let id = JobId::parse(text).ok_or_else(unknown)?;
        match self.api.jobs().get(id, owner).await {
            Ok(job) if job.request.upstream == *r.upstream.name => Ok(job),
            Ok(_) | Err(JobError::NotFound) => Err(unknown()),
            Err(e) => Err(job_error(e, r.revision)),
        }
    }

    /// 2025-11-25 `tasks/list`: the caller's tasks on this upstream, newest first.
    async fn list(&self, r: &TaskRequest<'_>, owner: &Owner) -> Outcome {
        let after = match r.params.and_then(|p| p.get("cursor")) {
            None | Some(Value::Null) => None,
            Some(c) => Some(
                c.as_str()
                    .and_then(crate::job_api::fields::cursor)
                    .ok_or_else(|| {
                        refuse(
                            McpErrorKind::InvalidParams,
                            "`cursor` is not one this server gave",
                            r.revision,
                        )
                    })?,
            ),
        };
        let jobs = self.api.jobs();
        let (page, next) = jobs
            .list(owner, &r.upstream.name, after, LIST_PAGE)
            .await
            .map_err(|e| job_error(e, r.revision))?;
        let mut tasks = Vec::with_capacity(page.len());
        for state in page {
            if let Ok(job) = jobs.get(state.id, owner).await {
                tasks.push(Value::Object(wire::task(&job, r.revision, self.ttl)));
            }
        }
        let mut result = Map::new();
        result.insert("tasks".into(), Value::Array(tasks));
        if let Some(c) = next {
            result.insert(
                "nextCursor".into(),
                format!("{}-{}", c.created_ms, c.id).into(),
            );
        }
        Ok(Step::Answer(json_answer(wire::response(
            r.message.id.as_ref(),
            &Value::Object(result),
        ))))
    }
}

/// One task method request, as the phase read it.
struct TaskRequest<'a> {
    ex: &'a Exchange,
    upstream: &'a Arc<Upstream>,
    message: &'a Message,
    params: Option<&'a Value>,
    revision: Revision,
}

/// `tasks/update`'s change to a waiting job: keeps the responses to outstanding requests
/// (others are ignored, as SEP-2663 says), and once the round is complete puts them into the
/// call, which runs again.
fn record_responses(job: &mut Job, responses: Map<String, Value>) -> Resume {
    let Some(task) = job.task.as_mut() else {
        return Resume::Wait;
    };
    for (key, response) in responses {
        if task.input_requests.contains_key(&key) {
            task.input_responses.insert(key, response);
        }
    }
    // The running call was sent its answers one by one (`Tasks::relay`); it goes on by itself.
    if task.streaming() {
        return Resume::Wait;
    }
    if task
        .input_requests
        .keys()
        .any(|k| !task.input_responses.contains_key(k))
    {
        return Resume::Wait;
    }
    match wire::with_input_responses(
        &job.request.body,
        &task.input_responses,
        task.request_state.as_deref(),
    ) {
        Some(body) => {
            job.request.body = body;
            Resume::Run
        }
        None => Resume::Wait,
    }
}

fn refuse(kind: McpErrorKind, message: impl Into<String>, revision: Revision) -> ProxyError {
    ProxyError::Mcp(McpRefusal::new(
        kind,
        message,
        revision == Revision::Extension,
    ))
}

/// An engine error, answered: an unknown task is invalid params; the rest as the job API
/// answers them (queue full, unavailable).
fn job_error(err: JobError, revision: Revision) -> ProxyError {
    match err {
        JobError::NotFound => refuse(McpErrorKind::InvalidParams, "unknown task", revision),
        e => crate::job_api::job_error(e, ""),
    }
}

/// A JSON-RPC answer the sidecar wrote (or the job's stored one), `200 application/json`.
fn json_answer(body: String) -> Response<ProxyBody> {
    crate::job_api::raw_json(StatusCode::OK, Bytes::from(body))
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
