//! Passthrough for `text/event-stream` responses: keepalive comments and an idle timeout.
//!
//! Frames are forwarded the moment they arrive; anything that held bytes back would delay progress
//! notifications, which is the whole point of streaming. Load balancers cut streams that stay silent for
//! about a minute, so when upstream is quiet for `keepalive` the body injects an SSE comment. A comment
//! may only be inserted where it cannot change the meaning of the stream, so the body tracks the last few
//! bytes it forwarded (see [`Tail::keepalive`]). A separate `idle_timeout` ends streams whose upstream has
//! gone silent for good; keepalives do not count as activity for it. The caller gives it only to
//! answers a client waits for: a standing stream (GET SSE, `subscriptions/listen`) gets `None`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};

use super::{BoxError, StreamIdleTimeout};

/// Comment that closes nothing: used when the stream is between events.
const KEEPALIVE_EVENT: &[u8] = b": keepalive\n\n";
/// Comment line only: used inside an event, where a blank line would dispatch the event early.
const KEEPALIVE_LINE: &[u8] = b": keepalive\n";

pin_project! {
    /// Passthrough for `text/event-stream` bodies with keepalive comments and an idle timeout.
    #[derive(Debug)]
    pub struct SseBody<B> {
        #[pin]
        inner: B,
        keepalive: Option<Duration>,
        idle_timeout: Option<Duration>,
        // Timers are armed the first time the upstream has nothing to give (the first `Pending`),
        // not in `new`: time before the response is handed to hyper does not count, `new` works
        // outside a runtime, and a body that is complete when polled (most JSON answers) never
        // pays for a timer at all.
        #[pin]
        keepalive_timer: Option<Sleep>,
        #[pin]
        idle_timer: Option<Sleep>,
        armed: bool,
        done: bool,
        tail: Tail,
    }
}

impl<B> SseBody<B> {
    /// Wraps `inner`; `None` disables keepalives or the idle timeout respectively. A zero keepalive
    /// period also disables keepalives (it would mean "a comment on every poll").
    pub fn new(inner: B, keepalive: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        Self {
            inner,
            keepalive: keepalive.filter(|period| !period.is_zero()),
            idle_timeout,
            keepalive_timer: None,
            idle_timer: None,
            armed: false,
            done: false,
            tail: Tail::default(),
        }
    }
}

impl<B> Body for SseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if *this.armed {
                    let now = Instant::now();
                    if let (Some(timer), Some(period)) =
                        (this.keepalive_timer.as_mut().as_pin_mut(), *this.keepalive)
                    {
                        timer.reset(now + period);
                    }
                    if let (Some(timer), Some(period)) =
                        (this.idle_timer.as_mut().as_pin_mut(), *this.idle_timeout)
                    {
                        timer.reset(now + period);
                    }
                }
                if let Some(data) = frame.data_ref() {
                    this.tail.push(data);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => {
                *this.done = true;
                return Poll::Ready(Some(Err(err.into())));
            }
            Poll::Ready(None) => {
                *this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }

        if !*this.armed {
            // The quiet period starts now: the last frame (if any) was just forwarded.
            *this.armed = true;
            this.keepalive_timer.set(this.keepalive.map(sleep));
            this.idle_timer.set(this.idle_timeout.map(sleep));
        }

        if let (Some(timer), Some(period)) =
            (this.idle_timer.as_mut().as_pin_mut(), *this.idle_timeout)
            && timer.poll(cx).is_ready()
        {
            *this.done = true;
            tracing::debug!(idle_timeout = ?period, "closing idle SSE stream");
            return Poll::Ready(Some(Err(Box::new(StreamIdleTimeout(period)))));
        }

        if let (Some(mut timer), Some(period)) =
            (this.keepalive_timer.as_mut().as_pin_mut(), *this.keepalive)
        {
            // Loop so that after a tick the re-armed timer is polled once more and registers the waker;
            // a reset timer is not polled by anyone otherwise.
            while timer.as_mut().poll(cx).is_ready() {
                timer.as_mut().reset(Instant::now() + period);
                if let Some(comment) = this.tail.keepalive() {
                    this.tail.push(comment);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(comment)))));
                }
                // Mid-line: a comment here would corrupt the line, so skip this tick.
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let inner = self.inner.size_hint();
        if self.keepalive.is_none() {
            return inner;
        }
        // Keepalive comments add an unknown number of bytes.
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower());
        hint
    }
}

/// The last (up to) three bytes forwarded, enough to tell where in the SSE grammar the stream stands.
#[derive(Debug, Default, Clone, Copy)]
struct Tail {
    bytes: [u8; 3],
    len: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        for &byte in data.iter().skip(data.len().saturating_sub(3)) {
            if self.len == 3 {
                self.bytes.rotate_left(1);
                self.bytes[2] = byte;
            } else {
                self.bytes[self.len] = byte;
                self.len += 1;
            }
        }
    }

    /// Byte `back` positions from the end (0 = last byte), if that many bytes were forwarded.
    fn at(&self, back: usize) -> Option<u8> {
        self.len
            .checked_sub(back + 1)
            .map(|index| self.bytes[index])
    }

    /// The keepalive that is safe to insert after the bytes forwarded so far, if any.
    fn keepalive(&self) -> Option<&'static [u8]> {
        match (self.at(2), self.at(1), self.at(0)) {
            // Start of stream.
            (_, _, None) => Some(KEEPALIVE_EVENT),
            // An empty line just ended: LF LF, CR LF LF, or CRLF CRLF, or a stream starting with one.
            (_, Some(b'\n'), Some(b'\n'))
            | (Some(b'\n' | b'\r'), Some(b'\r'), Some(b'\n'))
            | (None, Some(b'\r') | None, Some(b'\n')) => Some(KEEPALIVE_EVENT),
            // CR CR: the second CR ends an empty line.
            (_, Some(b'\r'), Some(b'\r')) => Some(KEEPALIVE_EVENT),
            // A non-empty line ended with LF (or CRLF): we are inside an event.
            (_, _, Some(b'\n')) => Some(KEEPALIVE_LINE),
            // A lone CR may be the first half of CRLF; a comment now would split it. Anything else is
            // mid-line.
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
