//! One upstream's queue of jobs waiting to run: pushed by submissions and the restart
//! recovery, popped by that upstream's workers.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::model::JobId;

/// One upstream's queue of jobs waiting to run.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) upstream: String,
    queue: Mutex<VecDeque<JobId>>,
    ready: Notify,
}

impl Lane {
    pub(crate) fn new(upstream: String) -> Self {
        Self {
            upstream,
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        }
    }

    pub(crate) fn push(&self, id: JobId) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(id);
        }
        self.ready.notify_one();
    }

    /// Puts back a job a worker took but did not start (shutdown began).
    pub(crate) fn push_front(&self, id: JobId) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_front(id);
        }
        self.ready.notify_one();
    }

    /// The next job, waiting for one to be pushed.
    pub(crate) async fn pop(&self) -> JobId {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before the queue is looked at, so a push in between is not missed.
            notified.as_mut().enable();
            if let Some(id) = self.queue.lock().ok().and_then(|mut q| q.pop_front()) {
                return id;
            }
            notified.await;
        }
    }
}
