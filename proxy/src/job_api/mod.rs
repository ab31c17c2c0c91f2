//! The HTTP front end of the job engine, for orchestrators, scripts and curl.
//!
//! | Request | Answer |
//! | --- | --- |
//! | `POST <mount>` with `Prefer: respond-async`, or `POST /jobs/<mount>` | `202`, `Location`, the job |
//! | `GET /jobs/{id}` | the job: status, progress, timestamps |
//! | `GET /jobs/{id}/result` | the JSON-RPC response once it ended; `409` + `Retry-After` before |
//! | `GET /jobs/{id}/events` | SSE: the current state, then every change until the end |
//! | `DELETE /jobs/{id}` | cancels it; the job as it is then |
//! | `GET /jobs?upstream=NAME` | the caller's jobs on that upstream, newest first, paginated |
//!
//! Submission is a phase of the request path ([`JobApi::offload`], after authorization and rate
//! limits, so a job is admitted exactly as a live call would be). The other routes are answered
//! here after the Host/Origin check and authentication against the job's upstream; a job that
//! is not the caller's is `404`, never `403`.

pub mod fields;
mod render;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};

use crate::auth::Auth;
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::exchange::{Exchange, Outcome, Policy, Step};
use crate::jobs::{JobError, JobId, Jobs, Outcome as JobOutcome, Owner};
use crate::limits::Limits;
use crate::principal::Source;
use crate::upstream::{Router, Upstream};

pub use render::job_json;
pub(crate) use render::{event_stream, raw_json};

/// Jobs listed per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 50;
/// Most jobs per page: a page is read and rendered whole.
const MAX_PAGE: usize = 500;
/// How long `DELETE` waits for a working job's call to be abandoned and the job written as
/// cancelled: the worker notices at once; this only bounds a slow store.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// The job API: the engine, where it is served, and what it needs to authenticate callers.
#[derive(Debug, Clone)]
pub struct JobApi {
    jobs: Jobs,
    prefix: Arc<str>,
    router: Router,
    /// Where the client's address is read behind trusted proxies (a public upstream's jobs
    /// belong to the client's address).
    limits: Option<Arc<Limits>>,
    /// Upstreams with a tool whose calls must run as jobs (`offload = "required"`).
    required: Vec<Arc<str>>,
}

/// What the job phase keeps for one request.
#[derive(Debug, Default)]
pub struct JobState {
    /// The request came as `POST /jobs/<mount>`: it must become a job.
    pub forced: bool,
}

impl Policy for JobApi {
    type State = JobState;
}

/// A request for one of the job API's own routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /jobs/<mount>`: submit to the upstream at `<mount>` (the request goes on through
    /// the phases with this path).
    Submit(String),
    /// `GET /jobs`.
    List,
    /// `GET /jobs/{id}`.
    Status(String),
    /// `GET /jobs/{id}/result`.
    Result(String),
    /// `GET /jobs/{id}/events`.
    Events(String),
    /// `DELETE /jobs/{id}`.
    Cancel(String),
    /// A method the route does not take.
    Method(String),
}

impl JobApi {
    /// The API over `jobs`, served under `prefix`, for the upstreams of `router`; `limits`
    /// knows the trusted proxies whose `X-Forwarded-For` names the client.
    pub fn new(jobs: Jobs, prefix: &str, router: Router, limits: Option<Arc<Limits>>) -> Self {
        let required = router
            .upstreams()
            .iter()
            .filter(|u| {
                u.config
                    .tool
                    .iter()
                    .any(|t| t.offload() == crate::config::Offload::Required)
            })
            .map(|u| u.name.clone())
            .collect();
        Self {
            jobs,
            prefix: prefix.into(),
            router,
            limits,
            required,
        }
    }

    /// The owner key of the request's caller: the principal, or the client's address (behind
    /// trusted proxies, the forwarded one) when the upstream is public.
    pub fn owner_of(&self, ex: &Exchange) -> Owner {
        match ex.principal.as_deref() {
            Some(p) => match &p.source {
                Source::ApiKey(id) => Owner::new(format!("api_key:{id}")),
                Source::Jwt(issuer) => Owner::new(format!("jwt:{issuer}:{}", p.subject)),
            },
            None => {
                let peer = ex.conn.remote.ip();
                let ip = self
                    .limits
                    .as_ref()
                    .map_or(peer, |l| l.client_ip(peer, &ex.head.headers));
                Owner::new(format!("ip:{ip}"))
            }
        }
    }

    /// The engine.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Where the job API is served (`jobs.path`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The job that runs the exchange's `tools/call` to `tool` of `upstream` (see
    /// `submit::call_job`); `task` marks one the MCP Tasks facade creates.
    pub fn call_job(
        &self,
        ex: &Exchange,
        upstream: &Upstream,
        tool: Option<String>,
        tool_config: Option<&crate::config::ToolConfig>,
        jsonrpc_id: Option<&serde_json::Value>,
        task: Option<crate::jobs::TaskInfo>,
    ) -> Result<crate::jobs::NewJob, ProxyError> {
        submit::call_job(self, ex, upstream, tool, tool_config, jsonrpc_id, task)
    }

    /// The job API's route for `method` and `path`, or `None` when the path is not under the
    /// prefix (an ordinary request).
    pub fn route(&self, method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix(&*self.prefix)?;
        if rest.is_empty() {
            return Some(match *method {
                Method::GET => Route::List,
                _ => Route::Method(method.to_string()),
            });
        }
        let rest = rest.strip_prefix('/')?;
        if *method == Method::POST {
            return Some(Route::Submit(format!("/{rest}")));
        }
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let id = id.to_owned();
        Some(match (method.clone(), tail) {
            (Method::GET, "") => Route::Status(id),
            (Method::DELETE, "") => Route::Cancel(id),
            (Method::GET, "result") => Route::Result(id),
            (Method::GET, "events") => Route::Events(id),
            _ => Route::Method(method.to_string()),
        })
    }

    /// Whether [`JobApi::offload`] may have something to do: the request came to the job API,
    /// carries a `Prefer` field, or goes to an upstream with a tool that runs only as a job.
    /// Every other request (nearly all of them) skips the phase on two lookups.
    #[inline]
    pub fn may_offload(&self, ex: &Exchange, state: &JobState) -> bool {
        state.forced
            || ex.head.headers.contains_key(&fields::PREFER)
            || (!self.required.is_empty()
                && ex
                    .upstream
                    .as_ref()
                    .is_some_and(|u| self.required.contains(&u.name)))
    }

    /// The job phase of a routed, authorized, admitted POST: submits it as a job when the
    /// caller asked (`Prefer: respond-async`, or `POST /jobs/<mount>`), refuses a live call to
    /// a tool that runs only as a job, and lets everything else go on live.
    pub async fn offload(&self, ex: &mut Exchange, state: &mut JobState) -> Outcome {
        submit::offload(self, ex, state).await
    }

    /// Answers a job API route other than `Submit`: Host/Origin check and authentication
    /// against the job's upstream first, then the owner check.
    pub async fn serve(&self, ex: &mut Exchange, auth: &Auth, route: Route) -> Outcome {
        let (id, upstream) = match &route {
            Route::Method(method) => {
                return Err(ProxyError::MethodNotAllowed {
                    method: method.clone(),
                });
            }
            Route::Submit(_) => return Ok(Step::Next),
            Route::List => (None, self.list_upstream(ex)?),
            Route::Status(id) | Route::Result(id) | Route::Events(id) | Route::Cancel(id) => {
                let job_id = JobId::parse(id).ok_or_else(|| not_found(id))?;
                let upstream = self
                    .jobs
                    .upstream_of(job_id)
                    .await
                    .map_err(|e| job_error(e, id))?
                    .and_then(|name| self.upstream_named(&name))
                    .ok_or_else(|| not_found(id))?;
                (Some(job_id), upstream)
            }
        };
        ex.upstream = Some(upstream.clone());
        if let Step::Answer(a) = auth.check_host_origin(ex, &mut ())? {
            return Ok(Step::Answer(a));
        }
        if let Step::Answer(a) = auth.authenticate(ex, &mut ()).await? {
            return Ok(Step::Answer(a));
        }
        let owner = self.owner_of(ex);
        let prefix = &*self.prefix;
        let answer = match (route, id) {
            (Route::List, _) => self.list(ex, &owner, &upstream.name).await?,
            (Route::Status(text), Some(id)) => {
                let job = self
                    .jobs
                    .get(id, &owner)
                    .await
                    .map_err(|e| job_error(e, &text))?;
                render::json(StatusCode::OK, &job_json(&job.state(), prefix))
            }
            (Route::Result(text), Some(id)) => {
                let job = self
                    .jobs
                    .get(id, &owner)
                    .await
                    .map_err(|e| job_error(e, &text))?;
                match &job.outcome {
                    Some(JobOutcome::Answered { response }) => {
                        render::raw_json(StatusCode::OK, Bytes::from(response.clone()))
                    }
                    Some(outcome) => {
                        render::json(StatusCode::OK, &render::unanswered(&job, outcome))
                    }
                    None => {
                        return Err(ProxyError::JobNotFinished {
                            id: text,
                            status: job.status.as_str(),
                        });
                    }
                }
            }
            (Route::Events(text), Some(id)) => {
                let last = fields::last_event_id(&ex.head.headers);
                let (state, rx) = self
                    .jobs
                    .follow(id, &owner)
                    .await
                    .map_err(|e| job_error(e, &text))?;
                render::events(
                    state,
                    rx,
                    last,
                    self.prefix.clone(),
                    self.jobs.clone(),
                    owner,
                )
            }
            (Route::Cancel(text), Some(id)) => {
                let state = self
                    .jobs
                    .cancel(id, &owner, CANCEL_WAIT)
                    .await
                    .map_err(|e| job_error(e, &text))?;
                render::json(StatusCode::OK, &job_json(&state, prefix))
            }
            _ => return Err(ProxyError::BadRequest("job route without a job id".into())),
        };
        Ok(Step::Answer(answer))
    }

    /// `GET /jobs`: the upstream named by `?upstream=`, or the only one.
    fn list_upstream(&self, ex: &Exchange) -> Result<Arc<Upstream>, ProxyError> {
        let named =
            fields::query_param(ex.head.uri.query(), "upstream").map_err(ProxyError::BadRequest)?;
        match named {
            Some(name) => self.upstream_named(&name).ok_or_else(|| {
                ProxyError::BadRequest(format!("`upstream={name}` names no upstream"))
            }),
            None => match self.router.upstreams() {
                [only] => Ok(only.clone()),
                _ => Err(ProxyError::BadRequest(
                    "several upstreams: name one with `?upstream=NAME` to list its jobs".into(),
                )),
            },
        }
    }

    fn upstream_named(&self, name: &str) -> Option<Arc<Upstream>> {
        self.router
            .upstreams()
            .iter()
            .find(|u| &*u.name == name)
            .cloned()
    }

    async fn list(
        &self,
        ex: &Exchange,
        owner: &Owner,
        upstream: &str,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let query = ex.head.uri.query();
        let param = |name| fields::query_param(query, name).map_err(ProxyError::BadRequest);
        let limit = match param("limit")? {
            None => DEFAULT_PAGE,
            Some(l) => fields::digits(&l)
                .and_then(|l| usize::try_from(l).ok())
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| {
                    ProxyError::BadRequest(format!(
                        "`limit={l}` must be a whole number from 1 to {MAX_PAGE}"
                    ))
                })?,
        };
        let after = match param("cursor")? {
            None => None,
            Some(c) => Some(fields::cursor(&c).ok_or_else(|| {
                ProxyError::BadRequest(format!("`cursor={c}` is not a cursor this API gave"))
            })?),
        };
        let (jobs, next) = self
            .jobs
            .list(owner, upstream, after, limit)
            .await
            .map_err(|e| job_error(e, ""))?;
        let next = next.map(|c| format!("{}-{}", c.created_ms, c.id));
        let body = serde_json::json!({
            "jobs": jobs.iter().map(|j| job_json(j, &self.prefix)).collect::<Vec<_>>(),
            "nextCursor": next,
        });
        Ok(render::json(StatusCode::OK, &body))
    }
}

fn not_found(id: &str) -> ProxyError {
    ProxyError::JobNotFound {
        id: id.escape_default().to_string(),
    }
}

/// The answer to an engine error.
pub(crate) fn job_error(err: JobError, id: &str) -> ProxyError {
    match err {
        JobError::NotFound => not_found(id),
        JobError::QueueFull { limit } => ProxyError::JobQueueFull { limit },
        JobError::IdempotencyMismatch => ProxyError::IdempotencyKeyReused { key: String::new() },
        JobError::Store(e @ crate::jobs::StoreError::Unavailable { .. }) => {
            ProxyError::JobStoreUnavailable(e.to_string())
        }
        e @ (JobError::ShuttingDown | JobError::Store(_) | JobError::UnknownUpstream(_)) => {
            ProxyError::JobsUnavailable(e.to_string())
        }
        // Already says whose failure it was.
        JobError::Send(e) => e,
    }
}

#[cfg(test)]
#[path = "job_api_tests.rs"]
mod tests;
