//! The request body read timeout: a client that stops sending its body, or sends it too slowly,
//! is answered 408 instead of holding its in-flight slot (and a drain on shutdown) forever.
//!
//! Two rules, both counted only while the sidecar waits for body bytes (a body that arrived
//! with its head never starts the clock, never reads it and never arms a timer):
//!
//! - **idle** (nginx's `client_body_timeout`): no body bytes for `listen.body_read_timeout`;
//! - **minimum rate** (Apache mod_reqtimeout's `MinRate`): the body may take at most
//!   `body_read_timeout` plus one second per `listen.body_min_rate` bytes received, counted
//!   from when the sidecar first waited for it. A small body always gets the whole timeout; a
//!   large one must keep arriving at the rate on average, so trickling a byte just inside
//!   each idle period does not hold a slot for hours. `body_min_rate = 0` turns the rule off.
//!
//! The wrapper sits on the request body in the proxy (`forward.rs`), so it covers the HTTP/1
//! leg and hyper's HTTP/2 bodies alike, and every reader of the body: the classification read,
//! the unauthenticated peek, and a body streamed to the backend.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::BoxError;
use crate::lazy_timer::LazyTimer;

/// The two limits, from `[listen]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadLimits {
    /// Longest wait for the next body bytes, and the grace period of the rate rule.
    pub idle: Duration,
    /// Slowest average rate in bytes per second past the grace period; 0: no rate rule.
    pub min_rate: u64,
}

impl Default for BodyReadLimits {
    fn default() -> Self {
        Self {
            idle: crate::config::DEFAULT_BODY_READ_TIMEOUT,
            min_rate: crate::config::DEFAULT_BODY_MIN_RATE,
        }
    }
}

/// Which rule ended the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReadRule {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The body arrived slower than the minimum rate.
    MinRate,
}

/// The request body timed out: the error the wrapped body yields, which the proxy answers 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(self))]
pub struct BodyReadTimeout {
    /// Which rule.
    pub rule: BodyReadRule,
    /// The limits in force.
    pub limits: BodyReadLimits,
    /// Body bytes received while the clock ran.
    pub received: u64,
}

fn describe(t: &BodyReadTimeout) -> String {
    match t.rule {
        BodyReadRule::Idle => format!(
            "no request body bytes arrived for {} (listen.body_read_timeout)",
            humantime::format_duration(t.limits.idle)
        ),
        BodyReadRule::MinRate => format!(
            "the request body arrived slower than {} bytes/s ({} bytes received; listen.body_min_rate)",
            t.limits.min_rate, t.received
        ),
    }
}

/// `B`, ended with [`BodyReadTimeout`] when a rule is broken.
#[derive(Debug)]
pub struct ReadTimeoutBody<B> {
    inner: B,
    limits: BodyReadLimits,
    /// Started the first time the body had to be waited for.
    clock: Option<Clock>,
    /// Once timed out, the body stays failed.
    failed: Option<BodyReadTimeout>,
}

#[derive(Debug)]
struct Clock {
    started: Instant,
    last_data: Instant,
    received: u64,
    timer: LazyTimer,
}

impl Clock {
    /// When the body times out unless more arrives, and by which rule.
    fn deadline(&self, limits: BodyReadLimits) -> (Instant, BodyReadRule) {
        let idle = self.last_data + limits.idle;
        if limits.min_rate == 0 {
            return (idle, BodyReadRule::Idle);
        }
        let earned = Duration::from_secs(self.received / limits.min_rate)
            + Duration::from_nanos(
                // < 1 s of the remainder; fits in u64 nanoseconds.
                (self.received % limits.min_rate).saturating_mul(1_000_000_000) / limits.min_rate,
            );
        let rate = self.started + limits.idle.saturating_add(earned);
        if rate < idle {
            (rate, BodyReadRule::MinRate)
        } else {
            (idle, BodyReadRule::Idle)
        }
    }
}

impl<B> ReadTimeoutBody<B> {
    /// `inner` under `limits`.
    pub fn new(inner: B, limits: BodyReadLimits) -> Self {
        Self {
            inner,
            limits,
            clock: None,
            failed: None,
        }
    }
}

impl<B> Body for ReadTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(failed) = this.failed {
            return Poll::Ready(Some(Err(failed.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(clock), Some(data)) = (this.clock.as_mut(), frame.data_ref())
                    && !data.is_empty()
                {
                    clock.received = clock.received.saturating_add(data.len() as u64);
                    clock.last_data = Instant::now();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let limits = this.limits;
                let clock = this.clock.get_or_insert_with(|| {
                    let now = Instant::now();
                    Clock {
                        started: now,
                        last_data: now,
                        received: 0,
                        timer: LazyTimer::new(),
                    }
                });
                let (deadline, rule) = clock.deadline(limits);
                if clock.timer.poll_expired(deadline, cx).is_pending() {
                    return Poll::Pending;
                }
                let timeout = BodyReadTimeout {
                    rule,
                    limits,
                    received: clock.received,
                };
                this.failed = Some(timeout);
                Poll::Ready(Some(Err(timeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The timeout in `err`, if a body read failed by one.
pub fn body_read_timeout(err: &(dyn std::error::Error + 'static)) -> Option<BodyReadTimeout> {
    err.downcast_ref::<BodyReadTimeout>().copied()
}

#[cfg(test)]
#[path = "read_timeout_tests.rs"]
mod tests;
