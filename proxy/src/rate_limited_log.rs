//! At most one log line per interval for failures that come in floods (every request fast-failed
//! by an open circuit, shed at a cap, or refused for want of file descriptors), with the number
//! of lines left out since the last one written.
//!
//! The state changes behind a flood (a circuit opening, the descriptor table filling) are logged
//! where they happen; the per-request lines only show that it goes on, and the metrics count
//! every request. Hand-written: tracing has no rate limiting, and the crates that add it filter
//! by callsite through a layer (one key for every circuit) and take a lock per event; this is two
//! atomics, used only on error paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Interval of a flood's log lines: one line per kind every 10 s is few enough to read beside
/// the access log and often enough that an operator tailing it sees within seconds that the
/// failures go on (the metrics count each one).
pub const FLOOD_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One key's limiter: a line may be written when the interval since the last one has passed.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval_ms: u64,
    /// tokio's clock, so paused-time tests control it.
    origin: Instant,
    /// Milliseconds after `origin` from which the next line may be written.
    next_ms: AtomicU64,
    /// Lines left out since the last one written.
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// A limiter allowing one line per `interval`; the first line is always written.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            origin: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` with the `n` lines left out since the
    /// previous one (write it, with `n`), `None` when this one is left out (counted for the next).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let now_ms =
            u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(0);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        // Not yet, or another thread wrote the line for this interval.
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_left_out() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(
            log.admit(Instant::now()),
            Some(0),
            "the first line is written"
        );
        for _ in 0..85 {
            assert_eq!(log.admit(Instant::now()), None);
        }
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(log.admit(Instant::now()), None, "still inside the interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(log.admit(Instant::now()), Some(86));
        assert_eq!(log.admit(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_period_resets_to_writing_every_line_once() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.admit(Instant::now()), Some(0));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(log.admit(Instant::now()), Some(0));
    }

    #[test]
    fn concurrent_callers_write_one_line_and_count_the_rest() {
        let log = std::sync::Arc::new(RateLimitedLog::new(Duration::from_secs(3600)));
        let now = log.origin;
        let lines: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let log = &log;
                    s.spawn(move || (0..1000).filter_map(|_| log.admit(now)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(lines.len(), 1, "one line written");
        // Every other call is counted once: in the written line (a caller that counted itself
        // before the winner took the count) or in what is still to report.
        assert_eq!(lines[0] + log.suppressed.load(Ordering::Relaxed), 3999);
    }
}
