//! The engine's clock: wall-clock milliseconds (job timestamps outlive the process) that
//! advance with tokio's monotonic clock.

use std::time::Duration;

use tokio::time::Instant;

/// Wall-clock milliseconds that advance with tokio's clock: taken from the system clock once,
/// then moved by the monotonic clock, so job timestamps survive restarts, do not jump with the
/// system clock during a run, and follow paused time in tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_ms: u64,
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            base_ms,
            base: Instant::now(),
        }
    }

    /// A clock that reads `base_ms` now (tests whose timestamps are small numbers).
    #[cfg(test)]
    pub(crate) fn at(base_ms: u64) -> Self {
        Self {
            base_ms,
            base: Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// Milliseconds in `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
