//! A deadline timer for something that sets a new deadline on every request (a connection's
//! header-read timeout, an upstream connection's response timeout) without touching the
//! runtime's timer wheel every time.
//!
//! A fresh `tokio::time::timeout` per request registers a wheel entry when first polled and removes
//! it when dropped, a measurable cost on every forwarded request (BENCHMARKS.md, "Figures behind
//! code decisions"). Here one `Sleep` lives as long as the connection. A later deadline does not
//! move it; when it fires before the current deadline it is set to that deadline and waited on
//! again, so a busy connection moves its timer about once per timeout period, not per request. An
//! earlier deadline (a shorter per-tool timeout) moves it at once: the timer never fires late.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// A reusable deadline timer; see the module docs.
#[derive(Debug, Default)]
pub struct LazyTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LazyTimer {
    /// No timer yet (made on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ready` once `deadline` has passed; else registers `cx` to be woken no later than it.
    pub fn poll_expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(()),
                // Fired for an earlier deadline: wait for this one.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    }

    /// Runs `fut` to completion unless `deadline` passes first (`None`).
    pub async fn run_until<F: Future>(&mut self, deadline: Instant, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.poll_expired(deadline, cx).map(|()| None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn each_deadline_is_kept_whether_later_or_earlier_than_the_last() {
        let mut timer = LazyTimer::new();
        let start = Instant::now();
        // Finishes in time: the timer stays set for 10 s.
        let done = timer
            .run_until(start + Duration::from_secs(10), async { 1 })
            .await;
        assert_eq!(done, Some(1));
        // A later deadline: the timer fires at 10 s, is moved, and times out at 15 s.
        let never = std::future::pending::<()>();
        assert_eq!(
            timer
                .run_until(start + Duration::from_secs(15), never)
                .await,
            None
        );
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        // An earlier deadline than the one the timer waits for moves it back at once.
        let quick = tokio::time::sleep(Duration::from_secs(1));
        let now = Instant::now();
        let waited = timer.run_until(now + Duration::from_secs(60), quick).await;
        assert_eq!(waited, Some(()), "the timer is now set for 60 s");
        let now = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(
            timer.run_until(now + Duration::from_secs(2), never).await,
            None
        );
        assert_eq!(now.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_outlives_its_deadline_is_dropped_at_it() {
        let mut timer = LazyTimer::new();
        let start = Instant::now();
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(
            timer.run_until(start + Duration::from_secs(3), slow).await,
            None
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
