//! Sidecar jobs submitted during a run (`traffic.jobs`) and followed to their end after it: the
//! proof behind `jobs_all_terminal` that no accepted job is lost, whatever broke meanwhile (a
//! sidecar killed with jobs in flight).
//!
//! Each job is submitted with `Prefer: respond-async` (mcp-load's [`Target::submit_job`]); a
//! submission that was not accepted (the sidecar was down) is no promise, and is reported
//! apart. After the run, every accepted job's result is fetched until it has ended (bounded by
//! the traffic's timeout), and a completed job's result is compared with the same call's
//! result straight from the backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mcp_loadtest::client::{Session, Target};
use mcp_loadtest::report::Outcome;
use mcp_loadtest::workload::Workload;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::traffic::Sessions;

/// How long a submission may take: the sidecar answers one at once (it stores the job and
/// returns 202), so a slower answer is a failure to accept.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an unfinished job's result is asked for after the run.
const POLL: Duration = Duration::from_millis(250);

/// One submitted job.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Its number (its request's).
    pub n: u64,
    /// When it was submitted, from the start of the run.
    pub at: Duration,
    /// Its JSON-RPC id.
    pub id: Value,
    /// The session it was submitted in.
    pub session: Session,
    /// Its result's URL, or why it was not accepted.
    pub accepted: Result<http::Uri, String>,
}

/// How a job ended, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct JobEnd {
    /// Its number.
    pub n: u64,
    /// When it was submitted, in seconds from the start of the run.
    pub submitted_s: f64,
    /// `completed`, `failed` (a JSON-RPC or tool error: an end, not a loss), `wrong_result`,
    /// `lost` (404: the sidecar no longer knows it), `unfinished` (still running at the
    /// deadline), `unreadable` (its result could not be read), or `not_accepted`.
    pub end: String,
    /// What was seen, when it was not plainly `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Submits `count` jobs evenly over `[0, span)` from `origin`, until `stop`.
pub async fn submit(
    target: &Target,
    sessions: &Arc<Sessions>,
    workload: &Workload,
    count: u32,
    origin: Instant,
    span: Duration,
    stop: &AtomicBool,
) -> Vec<Submitted> {
    let mut out = Vec::with_capacity(count as usize);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let at = span.mul_f64(f64::from(i) / f64::from(count.max(1)));
        tokio::time::sleep_until(origin + at).await;
        if stop.load(Ordering::Acquire) {
            break;
        }
        // Ids apart from the traffic's (which count up from 1).
        let n = 1_000_000_000 + u64::from(i);
        let (_, session) = sessions.get(u64::from(i));
        let (id, body) = workload.request(n);
        let target = target.clone();
        tasks.spawn(async move {
            let deadline = Instant::now() + SUBMIT_TIMEOUT;
            let accepted = match target.submit_job(&session, body, deadline).await {
                Ok(job) => Ok(job.result),
                Err(answer) => Err(class(&answer.outcome)),
            };
            Submitted {
                n,
                at,
                id,
                session,
                accepted,
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(s) = done {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.n);
    out
}

/// Follows every accepted job to its end, by `deadline`; `expected` holds the result each job's
/// call has straight from the backend (a job missing from it is not compared).
pub async fn follow(
    target: &Target,
    jobs: &[Submitted],
    expected: &BTreeMap<u64, Value>,
    deadline: Instant,
) -> Vec<JobEnd> {
    let mut ends = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut end = |end: &str, detail: Option<String>| {
            ends.push(JobEnd {
                n: job.n,
                submitted_s: job.at.as_secs_f64(),
                end: end.to_owned(),
                detail,
            });
        };
        let result_uri = match &job.accepted {
            Ok(uri) => uri,
            Err(class) => {
                end("not_accepted", Some(class.clone()));
                continue;
            }
        };
        let ended = loop {
            if let Some(ended) = target
                .job_result(&job.session, &job.id, result_uri, deadline)
                .await
            {
                break Some(ended);
            }
            if Instant::now() + POLL >= deadline {
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        match ended {
            None => end("unfinished", None),
            Some((Outcome::Success, message)) => {
                let got = message.as_ref().and_then(|m| m.get("result")).cloned();
                match expected.get(&job.n) {
                    Some(want) if got.as_ref() != Some(want) => end(
                        "wrong_result",
                        Some(format!(
                            "got {}, the backend answers {want}",
                            got.unwrap_or(Value::Null)
                        )),
                    ),
                    _ => end("completed", None),
                }
            }
            Some((Outcome::Error(class), _)) => match class.as_str() {
                "http_404" => end("lost", Some(class)),
                "timeout" => end("unfinished", Some(class)),
                c if c.starts_with("jsonrpc_") || c == "tool_error" => end("failed", Some(class)),
                _ => end("unreadable", Some(class)),
            },
        }
    }
    ends
}

fn class(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => "ok".into(),
        Outcome::Error(c) => c.clone(),
    }
}
