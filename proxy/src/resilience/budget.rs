//! The retry budget (as in linkerd and Finagle): every request deposits `ratio` of a retry, every
//! retry withdraws one, and deposits and withdrawals expire after `ttl`. On top of that a reserve
//! of `min_per_second * ttl` retries is always there, so a quiet upstream can still retry a blip.
//!
//! During an outage nearly every request fails; without a budget each would be retried
//! `max_retries` times, multiplying the load on a backend that is already struggling. With the
//! budget, retries add at most `ratio` (20 % by default) to the live traffic.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: u64 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bucket: u64,
    deposits: u64,
    withdrawals: u64,
}

#[derive(Debug)]
struct Ring {
    origin: Instant,
    slots: [Slot; BUCKETS as usize],
}

/// A retry budget shared by the requests of one upstream.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    reserve: f64,
    bucket_nanos: u128,
    ring: Mutex<Ring>,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request plus `min_per_second` retries per second,
    /// each counted for `ttl`.
    pub fn new(ratio: f64, min_per_second: f64, ttl: Duration, now: Instant) -> Self {
        Self {
            ratio,
            reserve: min_per_second * ttl.as_secs_f64(),
            bucket_nanos: (ttl.as_nanos() / u128::from(BUCKETS)).max(1),
            ring: Mutex::new(Ring {
                origin: now,
                slots: [Slot::default(); BUCKETS as usize],
            }),
        }
    }

    /// Counts one request (first attempts only).
    pub fn deposit(&self, now: Instant) {
        self.with_slot(now, |slot| slot.deposits += 1);
    }

    /// Takes one retry from the budget, or says there is none left.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = self.bucket(&ring, now);
        let (deposits, withdrawals) = ring
            .slots
            .iter()
            .filter(|s| s.bucket <= bucket && bucket - s.bucket < BUCKETS)
            .fold((0u64, 0u64), |(d, w), s| {
                (d + s.deposits, w + s.withdrawals)
            });
        let balance = deposits as f64 * self.ratio + self.reserve - withdrawals as f64;
        if balance < 1.0 {
            return false;
        }
        Self::slot(&mut ring, bucket).withdrawals += 1;
        true
    }

    fn with_slot(&self, now: Instant, f: impl FnOnce(&mut Slot)) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = self.bucket(&ring, now);
        f(Self::slot(&mut ring, bucket));
    }

    fn bucket(&self, ring: &Ring, now: Instant) -> u64 {
        let n = now.saturating_duration_since(ring.origin).as_nanos() / self.bucket_nanos;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    fn slot(ring: &mut Ring, bucket: u64) -> &mut Slot {
        let slot = &mut ring.slots[(bucket % BUCKETS) as usize];
        if slot.bucket != bucket {
            *slot = Slot {
                bucket,
                deposits: 0,
                withdrawals: 0,
            };
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_live_requests_plus_reserve() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(0.2, 0.1, Duration::from_secs(10), t0);
        // Reserve: 0.1/s * 10 s = 1 retry.
        assert!(budget.try_withdraw(t0));
        assert!(!budget.try_withdraw(t0));
        for _ in 0..10 {
            budget.deposit(t0);
        }
        // 10 requests * 0.2 = 2 more.
        assert!(budget.try_withdraw(t0));
        assert!(budget.try_withdraw(t0));
        assert!(!budget.try_withdraw(t0));
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_the_ttl() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(1.0, 0.0, Duration::from_secs(10), t0);
        budget.deposit(t0);
        assert!(budget.try_withdraw(t0));
        assert!(!budget.try_withdraw(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(11);
        assert!(!budget.try_withdraw(later), "the deposit expired");
        budget.deposit(later);
        assert!(budget.try_withdraw(later), "and so did the withdrawal");
    }

    #[test]
    fn zero_budget_never_retries() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(0.0, 0.0, Duration::from_secs(10), t0);
        for _ in 0..100 {
            budget.deposit(t0);
        }
        assert!(!budget.try_withdraw(t0));
    }
}
