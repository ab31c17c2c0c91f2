//! Faults on an SSE response stream: cut it after N events, or drip its events out one by one.
//!
//! Events are found with the sidecar library's scanner ([`EventSplitter`]), so the proxy splits a
//! stream where the sidecar and the clients do. Only events a client dispatches (with a `data`
//! line) count; comment blocks (keepalives) pass through uncounted and undelayed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use mcp_sidecar::mcp::sse::{EventKind, EventSplitter, classify};
use tokio::time::Sleep;

use mcp_sidecar::body::BoxError;

/// What is done to the stream's events.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SseShape {
    /// Forward this many events, then end the stream.
    CutAfter(u64),
    /// Forward each event after this long.
    Drip(Duration),
}

/// An SSE response body (the backend's, `B`) reshaped event by event.
pub struct SseFaultBody<B> {
    inner: Option<B>,
    shape: SseShape,
    splitter: EventSplitter,
    /// Bytes read and not yet forwarded.
    buf: BytesMut,
    /// How much of `buf` the splitter has seen.
    scanned: usize,
    /// Whether the next event is the first of the stream (a BOM may precede it).
    at_start: bool,
    /// Dispatched events forwarded so far.
    forwarded: u64,
    /// A dripped event waiting for its delay.
    held: Option<(Pin<Box<Sleep>>, Bytes)>,
}

impl<B> std::fmt::Debug for SseFaultBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseFaultBody")
            .field("shape", &self.shape)
            .field("forwarded", &self.forwarded)
            .finish_non_exhaustive()
    }
}

impl<B> SseFaultBody<B> {
    pub(crate) fn new(inner: B, shape: SseShape) -> Self {
        let done = matches!(shape, SseShape::CutAfter(0));
        Self {
            // Cut after none: the stream ends at once (dropping the body closes the backend's
            // connection).
            inner: (!done).then_some(inner),
            shape,
            splitter: EventSplitter::default(),
            buf: BytesMut::new(),
            scanned: 0,
            at_start: true,
            forwarded: 0,
            held: None,
        }
    }

    /// The next complete event in `buf`, if any.
    fn next_event(&mut self) -> Option<Bytes> {
        let end = self.splitter.find_event_end(&self.buf[self.scanned..]);
        match end {
            Some(end) => {
                let event = self.buf.split_to(self.scanned + end).freeze();
                self.scanned = 0;
                Some(event)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

impl<B> Body for SseFaultBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some((sleep, _)) = &mut this.held {
                ready!(sleep.as_mut().poll(cx));
                if let Some((_, event)) = this.held.take() {
                    return Poll::Ready(Some(Ok(Frame::data(event))));
                }
            }
            if this.inner.is_none() {
                return Poll::Ready(None);
            }
            if let Some(event) = this.next_event() {
                let dispatched = classify(&event, this.at_start) != EventKind::Ignored;
                this.at_start = false;
                if !dispatched {
                    return Poll::Ready(Some(Ok(Frame::data(event))));
                }
                this.forwarded += 1;
                match this.shape {
                    SseShape::CutAfter(n) => {
                        if this.forwarded >= n {
                            // The last event: the stream ends cleanly after it.
                            this.inner = None;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                    SseShape::Drip(delay) => {
                        this.held = Some((Box::pin(tokio::time::sleep(delay)), event));
                        continue;
                    }
                }
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers have no place in an SSE stream the proxy reshapes; dropped.
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    this.inner = None;
                    // An unterminated last event goes out as it came.
                    if !this.buf.is_empty() {
                        let rest = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none() && self.held.is_none() && self.buf.is_empty()
    }
}

#[cfg(test)]
#[path = "sse_faults_tests.rs"]
mod tests;
