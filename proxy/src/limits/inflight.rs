//! Concurrency caps: counters of what is in flight, permits that give their slot back when
//! dropped, and the response body wrapper that holds them until the response has been sent.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntGauge;

use crate::body::BoxError;

/// A cap on things in flight (`cap == 0`: counted, never refused). The cap is atomic so that a
/// config reload changes it on the same counter: what is in flight stays counted against it.
#[derive(Debug)]
pub struct InFlight {
    cap: AtomicUsize,
    count: AtomicUsize,
    gauge: IntGauge,
}

impl InFlight {
    /// A counter refusing beyond `cap` (0: no cap), mirrored in `gauge`.
    pub fn new(cap: usize, gauge: IntGauge) -> Arc<Self> {
        gauge.set(0);
        Arc::new(Self {
            cap: AtomicUsize::new(cap),
            count: AtomicUsize::new(0),
            gauge,
        })
    }

    /// A slot, unless the cap is reached. Never waits.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let cap = self.cap();
        if cap == 0 {
            return Some(self.acquire_anyway());
        }
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        Some(Permit(self.clone()))
    }

    /// A slot even beyond the cap: for what must never be refused but still occupies the
    /// backend (notifications, client responses, session DELETE).
    pub fn acquire_anyway(self: &Arc<Self>) -> Permit {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.gauge.inc();
        Permit(self.clone())
    }

    /// The cap (0: none).
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// A new cap (a config reload): what is in flight stays counted; beyond the new cap,
    /// nothing more is admitted until enough has ended.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// In flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// One slot of an [`InFlight`]; released on drop.
#[derive(Debug)]
pub struct Permit(Arc<InFlight>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

/// Open standalone streams per principal (keyed by a digest of the principal).
#[derive(Debug)]
pub(super) struct PerKeyStreams {
    cap: AtomicUsize,
    open: Mutex<HashMap<u64, usize>>,
}

impl PerKeyStreams {
    /// At most `cap` streams per key.
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: AtomicUsize::new(cap),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A new cap (a config reload); open streams stay counted.
    pub(super) fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// A stream slot for `key`, unless it already holds `cap`. The map only holds keys with open
    /// streams, so it is bounded by the global stream cap.
    pub(super) fn try_acquire(self: &Arc<Self>, key: u64) -> Option<StreamPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.cap.load(Ordering::Relaxed) {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(StreamPermit {
            streams: self.clone(),
            key,
        })
    }

    /// Keys with open streams.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One principal's stream slot; released on drop.
#[derive(Debug)]
pub struct StreamPermit {
    streams: Arc<PerKeyStreams>,
    key: u64,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Everything a request holds while it is served.
#[derive(Debug, Default)]
pub struct Permits {
    /// Slot in the global in-flight cap (or the global stream cap, for standalone streams).
    pub global: Option<Permit>,
    /// Slot in the upstream's in-flight cap.
    pub upstream: Option<Permit>,
    /// Slot in the principal's stream cap.
    pub principal_stream: Option<StreamPermit>,
}

impl Permits {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.upstream.is_none() && self.principal_stream.is_none()
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds the request's permits until it ends (or is dropped), so a
    /// streamed response occupies its slots for as long as it streams.
    pub struct HeldBody<B> {
        #[pin]
        inner: B,
        permits: Option<Permits>,
    }
}

impl<B> std::fmt::Debug for HeldBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBody")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl<B> HeldBody<B> {
    /// Holds `permits` until `inner` ends.
    pub fn new(inner: B, permits: Permits) -> Self {
        Self {
            inner,
            permits: Some(permits),
        }
    }
}

impl<B> Body for HeldBody<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            // hyper stops polling once a length-delimited body is complete.
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.permits.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use http_body_util::BodyExt;

    fn gauge() -> IntGauge {
        IntGauge::new("g", "g").unwrap()
    }

    #[test]
    fn in_flight_refuses_at_the_cap_and_frees_on_drop() {
        let g = gauge();
        let f = InFlight::new(2, g.clone());
        let a = f.try_acquire().unwrap();
        let _b = f.try_acquire().unwrap();
        assert!(f.try_acquire().is_none());
        let forced = f.acquire_anyway();
        assert_eq!((f.current(), g.get()), (3, 3));
        drop(forced);
        drop(a);
        assert_eq!((f.current(), g.get()), (1, 1));
        assert!(f.try_acquire().is_some());
    }

    #[test]
    fn zero_cap_counts_without_refusing() {
        let f = InFlight::new(0, gauge());
        let held: Vec<_> = (0..100).map(|_| f.try_acquire().unwrap()).collect();
        assert_eq!(f.current(), 100);
        drop(held);
        assert_eq!(f.current(), 0);
    }

    #[test]
    fn per_key_streams_are_capped_and_forgotten_when_closed() {
        let s = PerKeyStreams::new(2);
        let a1 = s.try_acquire(1).unwrap();
        let a2 = s.try_acquire(1).unwrap();
        assert!(s.try_acquire(1).is_none());
        let b = s.try_acquire(2).unwrap();
        drop(a1);
        assert!(s.try_acquire(1).is_some());
        drop((a2, b));
        assert_eq!(s.keys(), 0);
        assert!(PerKeyStreams::new(0).try_acquire(1).is_none());
        assert_eq!(PerKeyStreams::new(0).keys(), 0);
    }

    #[tokio::test]
    async fn held_body_releases_at_its_end() {
        let f = InFlight::new(1, gauge());
        let permits = Permits {
            global: f.try_acquire(),
            ..Permits::default()
        };
        let mut body = HeldBody::new(full("abc"), permits);
        assert_eq!(f.current(), 1);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert_eq!(f.current(), 0, "released as soon as the last frame is out");
        assert!(body.frame().await.is_none());
    }
}
