//! The rate limiters' clock: tokio's monotonic clock behind governor's [`Clock`] trait.
//!
//! governor's default clock (`quanta`) reads the CPU's cycle counter, which misbehaves on some
//! virtual machines (wrong refill rates, absurd retry delays). tokio's `Instant` is the OS
//! monotonic clock in production and the runtime's virtual clock under `start_paused` tests, so
//! the same limiter code runs in both and paused-time tests see exact refill times.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// A reading of [`TokioClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from_nanos(other.as_u64()))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(Duration::from_nanos(duration.as_u64()))
            .map_or(*self, Self)
    }
}

/// tokio's monotonic clock (virtual when the runtime's time is paused).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let clock = TokioClock;
        let t0 = clock.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let t1 = clock.now();
        assert_eq!(
            t1.duration_since(t0),
            Nanos::from(Duration::from_millis(1500))
        );
        assert_eq!(t0.duration_since(t1), Nanos::from(Duration::ZERO));
        assert_eq!(t0 + Nanos::from(Duration::from_millis(1500)), t1);
        assert_eq!(
            t1.saturating_sub(Nanos::from(Duration::from_millis(1500))),
            t0
        );
    }
}
