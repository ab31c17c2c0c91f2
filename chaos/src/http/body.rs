//! The response body the fault proxy sends: the backend's body passed through untouched (the
//! common case, no box), a fixed answer of the proxy's own, or the backend's body with a fault
//! applied as it streams (nothing is buffered beyond the event an SSE fault is looking at).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mcp_sidecar::upstream::PooledBody;
use tokio::time::Sleep;

use mcp_sidecar::body::BoxError;

use super::sse_faults::SseFaultBody;

/// The connection was closed on purpose by a `drop_mid_body` fault.
#[derive(Debug, thiserror::Error)]
#[error("mcp-chaos: connection dropped mid-body by a fault")]
pub struct DroppedMidBody;

/// A response body of the fault proxy.
#[derive(Debug)]
pub enum FaultBody {
    /// The backend's body, untouched.
    Pass(PooledBody),
    /// An answer of the proxy's own (taken when sent).
    Fixed(Option<Bytes>),
    /// The backend's body, its first frame held back until the timer fires.
    SlowFirstByte {
        /// The backend's body.
        inner: PooledBody,
        /// Pending until the first byte may go.
        wait: Option<Pin<Box<Sleep>>>,
    },
    /// The backend's body, cut with an error (the connection closes) after `left` more bytes.
    DropAfter {
        /// The backend's body.
        inner: PooledBody,
        /// Bytes still to forward.
        left: u64,
        /// Whether the proxy has yielded once after the last byte, so that hyper wrote out the
        /// head and the bytes forwarded before the connection is dropped.
        flushed: bool,
    },
    /// An SSE stream reshaped event by event.
    Sse(Box<SseFaultBody<PooledBody>>),
}

impl FaultBody {
    /// A fixed body.
    pub fn fixed(bytes: impl Into<Bytes>) -> Self {
        Self::Fixed(Some(bytes.into()))
    }
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Box::new(e)
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Pass(inner) => Pin::new(inner).poll_frame(cx).map_err(boxed),
            Self::Fixed(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::SlowFirstByte { inner, wait } => {
                if let Some(sleep) = wait {
                    ready!(sleep.as_mut().poll(cx));
                    *wait = None;
                }
                Pin::new(inner).poll_frame(cx).map_err(boxed)
            }
            Self::DropAfter {
                inner,
                left,
                flushed,
            } => {
                if *left == 0 {
                    if !*flushed {
                        // hyper writes what it holds when the body is pending; an error now
                        // would drop the head and the bytes with the connection.
                        *flushed = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    // An error makes hyper abort the response and close the connection: the
                    // client sees a body shorter than announced (or no last chunk).
                    return Poll::Ready(Some(Err(boxed(DroppedMidBody))));
                }
                match ready!(Pin::new(inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut data) => {
                            let len = data.len() as u64;
                            if len > *left {
                                // `left` < `len` ≤ usize::MAX, so it fits.
                                data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                            }
                            *left -= data.len() as u64;
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Err(frame) => Poll::Ready(Some(Ok(frame))),
                    },
                    Some(Err(e)) => Poll::Ready(Some(Err(boxed(e)))),
                    // The body was shorter than the cut: it ends as it is, and so does the
                    // connection.
                    None => {
                        *left = 0;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Self::Sse(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pass(inner) => inner.is_end_stream(),
            Self::Fixed(bytes) => bytes.is_none(),
            Self::SlowFirstByte { inner, wait } => wait.is_none() && inner.is_end_stream(),
            Self::DropAfter { .. } => false,
            Self::Sse(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Pass(inner) | Self::SlowFirstByte { inner, .. } => inner.size_hint(),
            Self::Fixed(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Fixed(None) => SizeHint::with_exact(0),
            Self::DropAfter { .. } | Self::Sse(_) => SizeHint::default(),
        }
    }
}
