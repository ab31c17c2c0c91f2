//! The job phase: turning an admitted `tools/call` into a job (`Prefer: respond-async`,
//! RFC 7240, or `POST /jobs/<mount>`), and the per-tool `offload` mode.

use http::{HeaderMap, HeaderName, StatusCode, header};
use serde_json::{Map, Value};

use super::fields::{Prefer, idempotency_key, prefer};
use super::{JobApi, JobState, job_error, render};
use crate::config::{Offload, ToolConfig};
use crate::error::ProxyError;
use crate::exchange::{Exchange, Outcome, Step};
use crate::glob::glob_match;
use crate::jobs::model::{Idempotency, JobRequest, StoredPrincipal, TaskInfo};
use crate::jobs::{JobError, JobId, NewJob, Submitted, progress_token};
use crate::mcp::{Classified, Kind};
use crate::upstream::Upstream;

/// Request fields that never go into a stored job: the client's credentials (never written to
/// disk; the backend gets the sidecar's own), framing and hop-by-hop fields, and the job API's
/// own fields.
const NOT_STORED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "prefer",
    "idempotency-key",
    "accept",
    "content-type",
];

pub(super) async fn offload(api: &JobApi, ex: &mut Exchange, state: &mut JobState) -> Outcome {
    let forced = state.forced;
    let message = ex
        .classified
        .as_ref()
        .and_then(Classified::single)
        .filter(|m| m.kind == Kind::Request);
    let Some(message) = message else {
        return if forced {
            Err(ProxyError::OffloadNotAllowed(
                "a job is one JSON-RPC request (not a notification, response or batch)".into(),
            ))
        } else {
            Ok(Step::Next)
        };
    };
    let Some(upstream) = ex.upstream.clone() else {
        return Ok(Step::Next);
    };
    let is_call = message.method.as_deref() == Some("tools/call");
    let tool = message.tool.clone();
    let tool_config = tool
        .as_deref()
        .filter(|_| is_call)
        .and_then(|t| upstream.config.tool.iter().find(|c| glob_match(&c.name, t)));
    let mode = tool_config.map_or(Offload::Allowed, crate::config::ToolConfig::offload);
    let prefer = prefer(&ex.head.headers);
    let wants_job = forced || prefer.respond_async;
    if !wants_job {
        if is_call && mode == Offload::Required {
            return Err(ProxyError::OffloadRequired {
                tool: tool.unwrap_or_default(),
                submit: format!("{}{}", api.prefix, ex.head.uri.path()),
            });
        }
        return Ok(Step::Next);
    }
    if !is_call {
        // A preference may be ignored (RFC 7240): other methods answer live.
        return if forced {
            Err(ProxyError::OffloadNotAllowed(format!(
                "only tools/call runs as a job, not `{}`",
                message.method.as_deref().unwrap_or("")
            )))
        } else {
            Ok(Step::Next)
        };
    }
    if mode == Offload::Never {
        return if forced {
            Err(ProxyError::OffloadNotAllowed(format!(
                "tool `{}` does not run as a job (offload = \"never\")",
                tool.unwrap_or_default()
            )))
        } else {
            Ok(Step::Next)
        };
    }
    let idempotency_key = idempotency_key(&ex.head.headers).map_err(ProxyError::BadRequest)?;
    let Some(body) = ex.body.clone() else {
        return Ok(Step::Next);
    };
    let mut new = call_job(
        api,
        ex,
        &upstream,
        tool,
        tool_config,
        message.id.as_ref(),
        None,
    )?;
    new.idempotency = idempotency_key.clone().map(|key| Idempotency {
        key,
        fingerprint: fingerprint(&body),
    });
    let owner = new.owner.clone();
    submit(api, new, owner, prefer, idempotency_key).await
}

/// The job that runs the exchange's call (a `tools/call` to `tool` of `upstream`): its owner,
/// deadline and stored request (credentials left out, the sidecar's `progressToken` in).
/// `task` marks a job created by the MCP Tasks facade.
pub(crate) fn call_job(
    api: &JobApi,
    ex: &Exchange,
    upstream: &Upstream,
    tool: Option<String>,
    tool_config: Option<&ToolConfig>,
    jsonrpc_id: Option<&Value>,
    task: Option<TaskInfo>,
) -> Result<NewJob, ProxyError> {
    let body = ex
        .body
        .as_ref()
        .ok_or_else(|| ProxyError::BadRequest("a job needs the call's body".into()))?;
    let id = JobId::random().ok_or_else(|| {
        ProxyError::JobsUnavailable("the system random number generator failed".into())
    })?;
    let deadline = tool_config
        .and_then(|t| t.job_deadline.or(t.timeout))
        .unwrap_or(upstream.config.response_timeout);
    Ok(NewJob {
        id,
        owner: api.owner_of(ex),
        method: "tools/call".to_owned(),
        tool,
        request: JobRequest {
            upstream: upstream.name.to_string(),
            path: ex
                .head
                .uri
                .path_and_query()
                .map_or_else(|| ex.head.uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: stored_headers(&ex.head.headers),
            body: with_progress_token(body, &progress_token(id))?,
            client_ip: ex.conn.remote.ip().to_string(),
            tls: ex.conn.tls,
            principal: ex.principal.as_deref().map(|p| StoredPrincipal {
                subject: p.subject.clone(),
                source: p.source_label(),
                claim_headers: p
                    .claim_headers
                    .iter()
                    .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
                    .collect(),
            }),
            jsonrpc_id: jsonrpc_id.map_or_else(|| "null".to_owned(), Value::to_string),
        },
        idempotency: None,
        deadline,
        rerun_on_restart: tool_config.is_some_and(|t| t.idempotent),
        task,
    })
}

/// Stores the job (durably) and answers: `202`, or the result itself when it came within
/// `Prefer: wait`.
async fn submit(
    api: &JobApi,
    new: NewJob,
    owner: crate::jobs::Owner,
    prefer: Prefer,
    idempotency_key: Option<String>,
) -> Outcome {
    let submitted = api.jobs.submit(new).await.map_err(|e| match e {
        JobError::IdempotencyMismatch => ProxyError::IdempotencyKeyReused {
            key: idempotency_key.clone().unwrap_or_default(),
        },
        e => job_error(e, ""),
    })?;
    let (job, replayed) = match submitted {
        Submitted::New(job) => (job, false),
        Submitted::Replayed(job) => (job, true),
    };
    if let Some(wait) = prefer.wait.filter(|w| !w.is_zero())
        && let Ok(done) = api.jobs.wait(job.id, &owner, wait).await
        && let Some(crate::jobs::Outcome::Answered { response }) = &done.outcome
    {
        let mut answer = render::raw_json(StatusCode::OK, bytes::Bytes::from(response.clone()));
        render::locate(answer.headers_mut(), &api.prefix, job.id);
        return Ok(Step::Answer(answer));
    }
    Ok(Step::Answer(render::accepted(
        &job,
        &api.prefix,
        prefer.respond_async,
        replayed,
    )))
}

/// SHA-256 of the request body, hex: what makes "the same request" for an idempotency key.
fn fingerprint(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .filter(|(name, _)| !is_connection_named(headers, name))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// Whether `Connection` names `name` (hop-by-hop by declaration).
fn is_connection_named(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
    })
}

/// The call with the sidecar's `progressToken` in `params._meta` (replacing the client's: the
/// job's followers get the progress, not the client's connection).
fn with_progress_token(body: &[u8], token: &str) -> Result<String, ProxyError> {
    let bad = |why: &str| ProxyError::BadRequest(format!("cannot run this call as a job: {why}"));
    let mut value: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object"))?;
    let params = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| bad("`params` is not an object"))?;
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| bad("`params._meta` is not an object"))?;
    meta.insert("progressToken".to_owned(), Value::String(token.to_owned()));
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn credentials_and_framing_are_never_stored() {
        let h = headers(&[
            ("authorization", "Bearer secret"),
            ("x-api-key", "secret"),
            ("mcp-session-id", "s1"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("traceparent", "00-abc"),
        ]);
        let stored = stored_headers(&h);
        let names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["mcp-session-id", "traceparent"]);
    }

    #[test]
    fn the_progress_token_replaces_the_clients() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":"mine"}}}"#;
        let out: Value =
            serde_json::from_str(&with_progress_token(body, "job-x").unwrap()).unwrap();
        assert_eq!(out["params"]["_meta"]["progressToken"], "job-x");
        assert_eq!(out["params"]["name"], "t");
        assert!(with_progress_token(br#"{"params":[1]}"#, "t").is_err());
    }
}
