//! The request path's side of the job engine: a job's call goes through the same [`Tail`] a
//! live call does (backend credential and claim headers, per-tool timeout and stream idle
//! timeout, circuit breaker, safe retries) after the upstream's in-flight cap, and its answer,
//! JSON or SSE, is read here: progress notifications for the job's token are relayed to the
//! engine, the JSON-RPC response to the call is the job's result.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use super::tail::{Services, Tail};
use crate::body::{ProxyBody, full, read_prefix};
use crate::conn_info::ConnInfo;
use crate::error::ProxyError;
use crate::exchange::Exchange;
use crate::jobs::model::StoredPrincipal;
use crate::jobs::{FailReason, Job, Progress, ProgressSink, RunOutcome, Runner};
use crate::limits::{Held, Limits};
use crate::mcp;
use crate::principal::{Principal, Source};
use crate::tasks::routing;
use crate::upstream::{Router, Upstream};

/// How long a job waits before trying again after the sidecar itself ran short (descriptors,
/// ports): long enough for the shortage to pass, short enough not to matter to a long job.
const LOCAL_SHORTAGE_WAIT: Duration = Duration::from_secs(1);
/// Bytes of a failed answer's body quoted in the job's error.
const ERROR_SNIPPET_BYTES: usize = 512;

/// Runs jobs' calls through the request path's tail.
#[derive(Debug, Clone)]
pub struct JobRunner {
    router: Router,
    services: Arc<Services>,
    limits: Option<Arc<Limits>>,
    max_result_bytes: usize,
}

impl JobRunner {
    pub(super) fn new(
        router: Router,
        services: Arc<Services>,
        limits: Option<Arc<Limits>>,
        max_result_bytes: usize,
    ) -> Self {
        Self {
            router,
            services,
            limits,
            max_result_bytes,
        }
    }

    /// The job's call as the phases would have left it: head, connection, route,
    /// classification, principal.
    fn exchange(
        &self,
        job: &Job,
        body: &Bytes,
    ) -> Result<(Exchange, Arc<Upstream>, http::Uri), String> {
        let r = &job.request;
        let mut builder = Request::builder().method(Method::POST).uri(r.path.as_str());
        for (name, value) in &r.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                builder = builder.header(n, v);
            }
        }
        let (mut head, ()) = builder
            .body(())
            .map_err(|e| format!("stored request: {e}"))?
            .into_parts();
        // The job reads progress from an event stream, and its body is its own.
        head.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        head.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        head.headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let ip: IpAddr = r.client_ip.parse().unwrap_or(Ipv4Addr::LOCALHOST.into());
        let mut ex = Exchange::new(head, ConnInfo::new(SocketAddr::new(ip, 0), r.tls));
        let (upstream, rest) = self
            .router
            .route(ex.head.uri.path())
            .ok_or_else(|| format!("`{}` no longer routes to an upstream", r.path))?;
        if *upstream.name != *r.upstream {
            return Err(format!(
                "`{}` now routes to upstream `{}`, not `{}`",
                r.path, upstream.name, r.upstream
            ));
        }
        let uri = upstream
            .upstream_uri_for(&ex.head.uri, rest)
            .map_err(|e| format!("cannot map path to upstream: {e}"))?;
        let upstream = upstream.clone();
        ex.upstream = Some(upstream.clone());
        ex.classified = Some(mcp::classify(body).map_err(|e| format!("stored call: {e}"))?);
        // Kept for a retry, as the request path keeps a live POST's.
        ex.body = Some(body.clone());
        ex.principal = r.principal.as_ref().map(|p| Arc::new(principal(p)));
        Ok((ex, upstream, uri))
    }
}

/// The principal a stored job carries: enough for the claim headers and the logs.
fn principal(p: &StoredPrincipal) -> Principal {
    let source = match p.source.split_once(':') {
        Some(("jwt", id)) => Source::Jwt(id.to_owned()),
        Some((_, id)) => Source::ApiKey(id.to_owned()),
        None => Source::ApiKey(p.source.clone()),
    };
    let claim_headers = p
        .claim_headers
        .iter()
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    Principal {
        subject: p.subject.clone(),
        source,
        scopes: Vec::new(),
        audiences: Vec::new(),
        audience_accepted_everywhere: false,
        claim_headers,
    }
}

impl Runner for JobRunner {
    fn run(&self, job: &Job, progress: ProgressSink) -> BoxFuture<'static, RunOutcome> {
        let this = self.clone();
        let body = Bytes::from(job.request.body.clone());
        let prepared = this.exchange(job, &body);
        let jsonrpc_id: Option<Value> = serde_json::from_str(&job.request.jsonrpc_id).ok();
        // A task's call may answer `input_required`: the job then waits for the client.
        let is_task = job.task.is_some();
        let request_id = HeaderValue::from_str(&format!("job-{}-{}", job.id, job.attempts))
            .unwrap_or(HeaderValue::from_static("job"));
        let (job_id, job_attempts) = (job.id, job.attempts);
        Box::pin(async move {
            let (mut ex, upstream, uri) = match prepared {
                Ok(p) => p,
                Err(message) => {
                    return RunOutcome::Failed {
                        reason: FailReason::Internal,
                        message,
                    };
                }
            };
            // The run is a child of the request that submitted the job (its stored
            // `traceparent`), and the parent of the run's attempts.
            let span = this
                .services
                .tracing
                .as_ref()
                .map(|t| t.job_span(&mut ex.head.headers, &job_id.to_string(), job_attempts));
            let outcome = async {
                let mut held = Held::default();
                if let Some(limits) = &this.limits
                    && let Err(err) = limits.reserve_upstream(&mut ex, &mut held)
                {
                    return not_sent_or_failed(err);
                }
                let tail = Tail {
                    services: this.services.clone(),
                    upstream,
                    ex,
                    uri,
                    body: full(body),
                    request_id,
                    held,
                };
                let (result, _facts) = tail.run().await;
                match result {
                    Ok((response, sse)) => {
                        let outcome = read_answer(
                            response,
                            sse,
                            jsonrpc_id.as_ref(),
                            &progress,
                            this.max_result_bytes,
                            is_task,
                        )
                        .await;
                        match outcome {
                            RunOutcome::Answered(answer) if is_task => input_round(answer),
                            outcome => outcome,
                        }
                    }
                    Err(err) => not_sent_or_failed(err),
                }
            }
            .await;
            if let Some(span) = span {
                match &outcome {
                    RunOutcome::Answered(_) => span.end("answered", None),
                    RunOutcome::InputRequired(_) => span.end("input_required", None),
                    RunOutcome::NotSent { why, .. } => span.end("not_sent", Some(why)),
                    RunOutcome::Failed { message, .. } => span.end("failed", Some(message)),
                }
            }
            outcome
        })
    }

    fn cancel(&self, job: &Job, reason: &str) -> BoxFuture<'static, ()> {
        let id: Value = serde_json::from_str(&job.request.jsonrpc_id).unwrap_or(Value::Null);
        let notification = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": reason},
        });
        let job_id = job.id;
        let sent = self.send(job, notification.to_string());
        Box::pin(async move {
            match sent.await {
                Ok(()) => tracing::debug!(job = %job_id, "notifications/cancelled sent"),
                Err(e) => {
                    tracing::debug!(job = %job_id, error = %e, "notifications/cancelled failed");
                }
            }
        })
    }

    fn send(&self, job: &Job, message: String) -> BoxFuture<'static, Result<(), ProxyError>> {
        let this = self.clone();
        let mut job = job.clone();
        job.request.body = message;
        Box::pin(async move {
            let body = Bytes::from(job.request.body.clone());
            // A stored job the sidecar can no longer send is its own failure.
            let (mut ex, upstream, uri) = this
                .exchange(&job, &body)
                .map_err(ProxyError::JobsUnavailable)?;
            // The stored routing headers describe the call, not this message: a notification
            // gets its own method, a response none (SEP-2243: the headers repeat the body).
            let method = ex
                .classified
                .as_ref()
                .and_then(mcp::Classified::single)
                .and_then(|m| m.method.as_deref())
                .and_then(|m| HeaderValue::from_str(m).ok());
            ex.head.headers.remove(routing::MCP_NAME);
            match method {
                Some(m) => ex.head.headers.insert(routing::MCP_METHOD, m),
                None => ex.head.headers.remove(routing::MCP_METHOD),
            };
            // A message in the job's session is never held back by the breaker or the caps:
            // the backend is waiting for it.
            let tail = Tail {
                services: this.services.clone(),
                upstream,
                ex,
                uri,
                body: full(body),
                request_id: HeaderValue::from_static("job-message"),
                held: Held::default(),
            };
            // The tail's errors already say whose failure they are.
            let (response, _) = tail.run().await.0?;
            let status = response.status();
            // Read the (empty) answer so the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(ProxyError::UpstreamFailed {
                    upstream: job.request.upstream.clone(),
                    detail: format!("it answered HTTP {status} to the relayed message"),
                })
            }
        })
    }
}

/// A refusal before anything was sent waits and tries again; anything else fails the job.
fn not_sent_or_failed(err: ProxyError) -> RunOutcome {
    match err {
        ProxyError::CircuitOpen { retry_after, .. }
        | ProxyError::Overloaded { retry_after, .. } => RunOutcome::NotSent {
            retry_after,
            why: err.to_string(),
        },
        ProxyError::LocalResourceExhausted { .. } => RunOutcome::NotSent {
            retry_after: LOCAL_SHORTAGE_WAIT,
            why: err.to_string(),
        },
        // The backend's failures: unreachable, too slow, broke off.
        ProxyError::UpstreamUnreachable { .. }
        | ProxyError::UpstreamTimeout { .. }
        | ProxyError::UpstreamFailed { .. } => RunOutcome::Failed {
            reason: FailReason::Upstream,
            message: err.to_string(),
        },
        // Anything else is the sidecar's own (a stored call it can no longer send, say): never
        // reported as the backend's fault.
        other => RunOutcome::Failed {
            reason: FailReason::Internal,
            message: other.to_string(),
        },
    }
}

/// Reads the upstream's answer to a job's call: the JSON-RPC response to it (from a JSON body
/// or an event stream), relaying progress on the way.
async fn read_answer(
    response: http::Response<ProxyBody>,
    sse: bool,
    id: Option<&Value>,
    progress: &ProgressSink,
    max_bytes: usize,
    is_task: bool,
) -> RunOutcome {
    let status = response.status();
    let mut body = response.into_body();
    if sse {
        return read_stream(&mut body, id, progress, max_bytes, is_task).await;
    }
    let buf = match read_prefix(body, max_bytes.saturating_add(1)).await {
        Ok((bytes, rest)) if rest.is_none() && bytes.len() <= max_bytes => bytes,
        Ok(_) => return too_large(max_bytes),
        Err(e) => {
            return RunOutcome::Failed {
                reason: FailReason::Upstream,
                message: format!("reading the upstream's answer: {e}"),
            };
        }
    };
    let text = String::from_utf8_lossy(&buf);
    // An HTTP error is the backend failing (the breaker counts it so), even with a JSON-RPC
    // error in its body: the job fails, quoting it.
    if status.is_success()
        && let Some(answer) = answer_to(&text, id)
    {
        return RunOutcome::Answered(answer);
    }
    let snippet: String = text.chars().take(ERROR_SNIPPET_BYTES).collect();
    RunOutcome::Failed {
        reason: FailReason::BadAnswer,
        message: if status == StatusCode::ACCEPTED && text.trim().is_empty() {
            // The legacy HTTP+SSE transport: the answer goes to the client's own GET stream,
            // which a job has not got.
            "the upstream answered 202 without a body: a legacy HTTP+SSE backend answers on the \
             client's own event stream, which a job cannot read; run such calls live"
                .to_owned()
        } else if status == StatusCode::OK {
            format!("the upstream's answer is not a JSON-RPC response to the call: {snippet}")
        } else {
            format!("the upstream answered HTTP {status}: {snippet}")
        },
    }
}

async fn read_stream(
    body: &mut ProxyBody,
    id: Option<&Value>,
    progress: &ProgressSink,
    max_bytes: usize,
    is_task: bool,
) -> RunOutcome {
    let token = progress.token();
    let mut awaiting = false;
    let mut splitter = mcp::sse::EventSplitter::default();
    let mut pending = BytesMut::new();
    let mut scanned = 0;
    let mut at_start = true;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(e) => {
                return RunOutcome::Failed {
                    reason: FailReason::Upstream,
                    message: format!("the upstream's event stream broke: {e}"),
                };
            }
        };
        pending.extend_from_slice(&data);
        while let Some(end) = splitter.find_event_end(&pending[scanned..]) {
            let event = pending.split_to(scanned + end);
            scanned = 0;
            let decoded = mcp::sse::decode(&event, at_start);
            at_start = false;
            let Some(decoded) = decoded else { continue };
            if decoded.event_type != "message" {
                continue;
            }
            if let Some(answer) = answer_to(&decoded.data, id) {
                return RunOutcome::Answered(answer);
            }
            // A task's call may ask its client for input on the stream (2025-11-25 style):
            // the task waits for it; whatever the call sends next means it was answered.
            if is_task {
                match request_of(&decoded.data) {
                    Some(request) => {
                        awaiting = true;
                        progress.input_request(request).await;
                        continue;
                    }
                    None if awaiting => {
                        awaiting = false;
                        progress.input_answered().await;
                    }
                    None => {}
                }
            }
            if let Some(p) = progress_of(&decoded.data, &token) {
                progress.report(p).await;
            }
        }
        // Only the event being assembled is bounded (it may be the answer): a long job's
        // progress notifications, read and dropped one by one, are not part of its result.
        if pending.len() > max_bytes {
            return too_large(max_bytes);
        }
        scanned = pending.len();
    }
    RunOutcome::Failed {
        reason: FailReason::Upstream,
        message: "the upstream's event stream ended without an answer to the call".to_owned(),
    }
}

fn too_large(max_bytes: usize) -> RunOutcome {
    RunOutcome::Failed {
        reason: FailReason::ResultTooLarge,
        message: format!("the answer is larger than jobs.max_result_bytes ({max_bytes} bytes)"),
    }
}

/// A task's answer: the answer itself, or the input round it opens when it is an
/// `InputRequiredResult` (MCP 2026-07-28, `resultType: "input_required"`).
fn input_round(answer: String) -> RunOutcome {
    // Only an answer that says so is parsed again.
    if !answer.contains("input_required") {
        return RunOutcome::Answered(answer);
    }
    let Ok(value) = serde_json::from_str::<Value>(&answer) else {
        return RunOutcome::Answered(answer);
    };
    let Some(result) = value
        .get("result")
        .filter(|r| r.get("resultType").and_then(Value::as_str) == Some("input_required"))
    else {
        return RunOutcome::Answered(answer);
    };
    let requests = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if requests.is_empty() {
        return RunOutcome::Failed {
            reason: FailReason::BadAnswer,
            message: "the upstream answered input_required without inputRequests; a task needs                       requests to show its client"
                .to_owned(),
        };
    }
    let request_state = result
        .get("requestState")
        .and_then(Value::as_str)
        .map(str::to_owned);
    RunOutcome::InputRequired(crate::jobs::InputRound {
        requests,
        request_state,
        answer,
    })
}

/// `text` itself when it is a JSON-RPC response (result or error) to the call with `id`.
fn answer_to(text: &str, id: Option<&Value>) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let object = value.as_object()?;
    let is_response = object.contains_key("result") || object.contains_key("error");
    (is_response && object.get("id") == id).then(|| text.trim().to_owned())
}

/// `text` parsed when it is a JSON-RPC request (a method and an id): the backend asking the
/// client for something (elicitation, sampling, roots).
fn request_of(text: &str) -> Option<Value> {
    if !text.contains("\"method\"") {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    (value.get("method").is_some_and(Value::is_string) && value.get("id").is_some())
        .then_some(value)
}

/// The progress in `text` when it is a `notifications/progress` for `token`.
fn progress_of(text: &str, token: &str) -> Option<Progress> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("method")?.as_str()? != "notifications/progress" {
        return None;
    }
    let params = value.get("params")?;
    if params.get("progressToken")?.as_str()? != token {
        return None;
    }
    Some(Progress {
        progress: params.get("progress")?.as_f64()?,
        total: params.get("total").and_then(Value::as_f64),
        message: params
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_response_with_the_calls_id_is_the_answer() {
        let id = json!(7);
        assert!(answer_to(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, Some(&id)).is_some());
        assert!(answer_to(r#"{"jsonrpc":"2.0","id":7,"error":{"code":1}}"#, Some(&id)).is_some());
        assert!(answer_to(r#"{"jsonrpc":"2.0","id":8,"result":{}}"#, Some(&id)).is_none());
        assert!(answer_to(r#"{"jsonrpc":"2.0","method":"x"}"#, Some(&id)).is_none());
        assert!(answer_to("not json", Some(&id)).is_none());
    }

    #[test]
    fn an_input_required_answer_opens_a_round_and_others_are_answers() {
        let round = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required",
            "inputRequests":{"confirm":{"method":"elicitation/create","params":{}}},
            "requestState":"s1"}})
        .to_string();
        match input_round(round.clone()) {
            RunOutcome::InputRequired(r) => {
                assert_eq!(r.requests.keys().collect::<Vec<_>>(), ["confirm"]);
                assert_eq!(r.request_state.as_deref(), Some("s1"));
                assert_eq!(r.answer, round);
            }
            other => panic!("{other:?}"),
        }
        // A tool result that merely mentions the word is an answer.
        let text = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"complete",
            "content":[{"type":"text","text":"input_required"}]}})
        .to_string();
        assert_eq!(input_round(text.clone()), RunOutcome::Answered(text));
        let empty = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required",
            "requestState":"s"}})
        .to_string();
        assert!(matches!(
            input_round(empty),
            RunOutcome::Failed {
                reason: FailReason::BadAnswer,
                ..
            }
        ));
    }

    #[test]
    fn only_the_backends_failures_are_blamed_on_it() {
        let reason = |err| match not_sent_or_failed(err) {
            RunOutcome::Failed { reason, .. } => Some(reason),
            _ => None,
        };
        let upstream = || "u".to_owned();
        assert_eq!(
            reason(ProxyError::UpstreamFailed {
                upstream: upstream(),
                detail: "reset".into()
            }),
            Some(FailReason::Upstream)
        );
        assert_eq!(
            reason(ProxyError::UpstreamTimeout {
                upstream: upstream(),
                after: Duration::from_secs(1)
            }),
            Some(FailReason::Upstream)
        );
        assert_eq!(
            reason(ProxyError::BadRequest("stored call".into())),
            Some(FailReason::Internal)
        );
        assert!(matches!(
            not_sent_or_failed(ProxyError::LocalResourceExhausted {
                upstream: upstream(),
                kind: crate::local_resources::LocalResource::Emfile,
            }),
            RunOutcome::NotSent { .. }
        ));
    }

    #[test]
    fn progress_is_taken_only_for_the_jobs_token() {
        let n = |token: &str| {
            json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":token,"progress":2,"total":5,"message":"m"}})
            .to_string()
        };
        assert_eq!(
            progress_of(&n("job-1"), "job-1"),
            Some(Progress {
                progress: 2.0,
                total: Some(5.0),
                message: Some("m".into())
            })
        );
        assert_eq!(progress_of(&n("other"), "job-1"), None);
    }
}
