//! What the engine needs from the request path: a way to make a job's call and to tell the
//! backend it was abandoned. The request path implements [`Runner`] with the same tail a live
//! call goes through (credentials, claim headers, per-tool timeout, breaker, retries, in-flight
//! cap), so the engine itself knows nothing of HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Engine;
use super::model::{FailReason, InputRound, Job, JobId, Progress};

/// How one attempt at a job's call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The upstream's JSON-RPC response to the call (result or error), verbatim.
    Answered(String),
    /// The call failed; the job fails with this reason.
    Failed {
        /// Why, for scripts.
        reason: FailReason,
        /// Why, for people.
        message: String,
    },
    /// The call asked for input (an MCP task's backend answered `input_required`): the job
    /// waits for the client's responses, then runs again with them.
    InputRequired(InputRound),
    /// Nothing was sent (the circuit is open, the upstream's in-flight cap is full): the job
    /// waits and tries again, until its deadline.
    NotSent {
        /// When trying again may succeed.
        retry_after: Duration,
        /// What held it back, for the log.
        why: String,
    },
}

/// Makes jobs' calls.
pub trait Runner: Send + Sync + std::fmt::Debug + 'static {
    /// Sends the job's call and waits for its answer, reporting the upstream's
    /// `notifications/progress` for the job's token to `progress`. Dropping the future abandons
    /// the call (the upstream connection is closed).
    fn run(&self, job: &Job, progress: ProgressSink) -> BoxFuture<'static, RunOutcome>;

    /// Tells the backend's session that the job's call was abandoned
    /// (`notifications/cancelled` with the call's id).
    fn cancel(&self, job: &Job, reason: &str) -> BoxFuture<'static, ()>;

    /// Sends `message` (the client's JSON-RPC response to a request the running call made) to
    /// the backend, in the job's session. `Err` says why it did not arrive, and whose failure
    /// that was (the backend's, or the sidecar's own), as the request path answers it.
    fn send(
        &self,
        job: &Job,
        message: String,
    ) -> BoxFuture<'static, Result<(), crate::error::ProxyError>>;
}

/// Where a running call's progress goes: the job's record and its event stream.
#[derive(Debug, Clone)]
pub struct ProgressSink {
    pub(super) engine: Arc<Engine>,
    pub(super) id: JobId,
}

impl ProgressSink {
    /// Records `progress` as the job's latest and tells the job's followers.
    pub async fn report(&self, progress: Progress) {
        self.engine.progress(self.id, progress).await;
    }

    /// Records a request the running call sent on its event stream (elicitation, sampling):
    /// the job waits for its client's input while the call goes on.
    pub async fn input_request(&self, request: serde_json::Value) {
        self.engine.stream_input(self.id, request).await;
    }

    /// The call went on after its requests were answered: the job is working again.
    pub async fn input_answered(&self) {
        self.engine.stream_resumed(self.id).await;
    }

    /// The progress token the sidecar put in the job's call.
    pub fn token(&self) -> String {
        progress_token(self.id)
    }
}

/// The `progressToken` the sidecar sets on a job's call: the job's id, prefixed so a backend's
/// logs show where it came from.
pub fn progress_token(id: JobId) -> String {
    format!("job-{id}")
}
