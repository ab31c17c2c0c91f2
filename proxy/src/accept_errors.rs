//! A listener's failed `accept`s: counted by the local resource that ran out, logged at most
//! once per interval, and paced so a full descriptor table does not spin the accept loop.

use std::time::Duration;

use prometheus::IntCounterVec;

use crate::local_resources::LocalResource;
use crate::metrics::{Metrics, OP_ACCEPT};
use crate::rate_limited_log::{FLOOD_LOG_INTERVAL, RateLimitedLog};

/// Pause after a failed `accept` (e.g. EMFILE) so a full fd table does not spin the loop.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A listener's failed `accept`s: counted when the sidecar ran out of something (`EMFILE` when
/// the descriptor table is full), logged at most once per interval per kind; the accept loop
/// pauses after each ([`ACCEPT_ERROR_BACKOFF`]) instead of spinning on a full table.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    counter: IntCounterVec,
    /// One per kind, then one for every other error.
    logs: [RateLimitedLog; LocalResource::ALL.len() + 1],
}

impl AcceptErrors {
    /// For the listener named `listener` in logs (`listen`, `admin`).
    pub fn new(listener: &'static str, metrics: &Metrics) -> Self {
        Self {
            listener,
            counter: metrics.local_resource_errors.clone(),
            logs: std::array::from_fn(|_| RateLimitedLog::new(FLOOD_LOG_INTERVAL)),
        }
    }

    /// Counts and (rate-limited) logs one failed `accept`.
    pub fn record(&self, err: &std::io::Error) {
        let kind = LocalResource::of_io(err);
        if let Some(kind) = kind {
            self.counter
                .with_label_values(&[kind.label(), OP_ACCEPT])
                .inc();
        }
        let slot = kind.map_or(LocalResource::ALL.len(), LocalResource::index);
        if let Some(log) = self.logs.get(slot)
            && let Some(suppressed) = log.admit(tokio::time::Instant::now())
        {
            tracing::warn!(
                listener = self.listener,
                error = %err,
                suppressed,
                "accept failed; pausing before the next"
            );
        }
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn accept_errors_are_counted_by_kind() {
        let metrics = Metrics::new().unwrap();
        let errors = AcceptErrors::new("listen", &metrics);
        for _ in 0..3 {
            errors.record(&LocalResource::Emfile.to_io_error());
        }
        errors.record(&std::io::Error::from(std::io::ErrorKind::ConnectionAborted));
        let count = |kind: LocalResource| {
            metrics
                .local_resource_errors
                .with_label_values(&[kind.label(), OP_ACCEPT])
                .get()
        };
        assert_eq!(count(LocalResource::Emfile), 3);
        assert_eq!(count(LocalResource::Enfile), 0);
    }
}
