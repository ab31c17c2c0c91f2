//! Peeking at the start of a body without buffering all of it.
//!
//! The proxy reads the first bytes of a request body to find the JSON-RPC `id` and `method` (for routing,
//! limits and error replies), but must still forward the whole body upstream, and must not hold a large
//! upload in memory to do so. [`read_prefix`] reads just enough frames; [`Prefixed`] replays what was read
//! and then streams the rest of the original body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use super::BoxError;

pin_project! {
    /// Replays bytes already read from a body, then continues with the rest of it.
    #[derive(Debug)]
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: Option<B>,
    }
}

impl<B> Prefixed<B> {
    /// `rest: None` means the prefix was the whole body.
    pub fn new(prefix: Bytes, rest: Option<B>) -> Self {
        // An empty prefix is dropped up front so no empty data frame is ever emitted for it.
        let prefix = (!prefix.is_empty()).then_some(prefix);
        Self { prefix, rest }
    }
}

impl<B> Body for Prefixed<B>
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
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let Some(rest) = this.rest.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match rest.poll_frame(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Ready(None) => {
                // Drop the finished body so `is_end_stream` is exact and it is never polled again.
                this.rest.set(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix_len = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        // Raise the upper bound first: `set_lower` asserts lower <= upper.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(prefix_len));
        }
        hint.set_lower(hint.lower().saturating_add(prefix_len));
        hint
    }
}

/// Reads frames from `body` until it ends or at least `limit` bytes were read.
///
/// Returns `(all bytes, None)` when the body ended, or `(bytes read so far, Some(rest))` once the limit
/// was reached; the frame that crossed the limit is kept whole in the returned bytes and nothing beyond it
/// is read. Trailers seen while reading are dropped (request trailers are not forwarded).
pub async fn read_prefix<B>(body: B, limit: usize) -> Result<(Bytes, Option<B>), BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let mut prefix = PrefixBuf::default();
    while prefix.len() < limit {
        match body.frame().await {
            None => return Ok((prefix.into_bytes(), None)),
            Some(frame) => {
                if let Ok(data) = frame.map_err(Into::into)?.into_data() {
                    prefix.push(data);
                }
            }
        }
    }
    Ok((prefix.into_bytes(), Some(body)))
}

/// Accumulates frames, avoiding a copy in the common case of a body that arrives in a single frame.
#[derive(Default)]
enum PrefixBuf {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl PrefixBuf {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(bytes) => bytes.len(),
            Self::Many(buf) => buf.len(),
        }
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(data),
            Self::One(first) => {
                let mut buf = BytesMut::with_capacity(first.len() + data.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                Self::Many(buf)
            }
            Self::Many(mut buf) => {
                buf.extend_from_slice(&data);
                Self::Many(buf)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(buf) => buf.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http_body_util::{Full, StreamBody};

    use super::*;
    use crate::body::test_util::{FrameResult, chunked_body, collect_all};

    #[tokio::test]
    async fn replays_prefix_then_streams_rest() {
        let rest = chunked_body(["def", "ghi"]);
        let body = Prefixed::new(Bytes::from_static(b"abc"), Some(rest));
        let (bytes, frames) = collect_all(body).await;
        assert_eq!(bytes, b"abcdefghi");
        assert_eq!(frames, 3);
    }

    #[tokio::test]
    async fn prefix_without_rest_is_the_whole_body() {
        let body = Prefixed::<Full<Bytes>>::new(Bytes::from_static(b"whole"), None);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let (bytes, _) = collect_all(body).await;
        assert_eq!(bytes, b"whole");
    }

    #[test]
    fn empty_prefix_without_rest_is_end_stream() {
        let body = Prefixed::<Full<Bytes>>::new(Bytes::new(), None);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn size_hint_adds_prefix_to_rest() {
        let body = Prefixed::new(
            Bytes::from_static(b"12"),
            Some(Full::new(Bytes::from_static(b"345"))),
        );
        assert_eq!(body.size_hint().exact(), Some(5));
    }

    #[tokio::test]
    async fn read_prefix_under_limit_returns_whole_body() {
        let (bytes, rest) = read_prefix(chunked_body(["ab", "cd"]), 100).await.unwrap();
        assert_eq!(bytes, Bytes::from_static(b"abcd"));
        assert!(rest.is_none());
    }

    #[tokio::test]
    async fn read_prefix_stops_at_the_frame_that_crosses_the_limit() {
        let body = chunked_body(["abc", "def", "ghi", "jkl"]);
        let (bytes, rest) = read_prefix(body, 5).await.unwrap();
        assert_eq!(bytes, Bytes::from_static(b"abcdef"));
        let rest = rest.expect("limit reached, so the rest must be returned");
        let (remaining, frames) = collect_all(rest).await;
        assert_eq!(remaining, b"ghijkl");
        assert_eq!(frames, 2, "frames after the limit must not have been read");
    }

    #[tokio::test]
    async fn read_prefix_of_single_frame_does_not_copy() {
        let original = Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}");
        let (bytes, rest) = read_prefix(Full::new(original.clone()), 1024)
            .await
            .unwrap();
        assert_eq!(bytes.as_ptr(), original.as_ptr());
        assert!(rest.is_none());
    }

    #[tokio::test]
    async fn read_prefix_then_prefixed_reproduces_the_body() {
        let body = chunked_body(["one ", "two ", "three"]);
        let (prefix, rest) = read_prefix(body, 4).await.unwrap();
        let (bytes, _) = collect_all(Prefixed::new(prefix, rest)).await;
        assert_eq!(bytes, b"one two three");
    }

    #[tokio::test]
    async fn read_prefix_drops_trailers_and_propagates_errors() {
        let frames: Vec<FrameResult> = vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(HeaderMap::new())),
        ];
        let (bytes, rest) = read_prefix(StreamBody::new(futures_util::stream::iter(frames)), 10)
            .await
            .unwrap();
        assert_eq!(bytes, Bytes::from_static(b"x"));
        assert!(rest.is_none());

        let frames: Vec<FrameResult> = vec![Err("boom".into())];
        let result = read_prefix(StreamBody::new(futures_util::stream::iter(frames)), 10).await;
        assert_eq!(result.err().map(|e| e.to_string()).as_deref(), Some("boom"));
    }

    #[tokio::test]
    async fn prefixed_maps_rest_errors_into_box_error() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            vec![Err(std::io::Error::other("upstream reset"))];
        let rest = StreamBody::new(futures_util::stream::iter(frames));
        let mut body = Prefixed::new(Bytes::from_static(b"p"), Some(rest));
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "upstream reset");
    }
}
