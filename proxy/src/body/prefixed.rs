//! Reading a request body up to a limit without reading past it.
//!
//! The proxy reads a POST body to classify it (JSON-RPC kind, method, tool, id) and must refuse one that
//! is too large without first pulling all of it into memory: [`read_prefix`] stops at the frame that
//! crosses the limit and hands back the unread rest.

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use super::BoxError;

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
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    use super::*;
    use crate::body::test_util::{FrameResult, chunked_body, collect_all};

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
}
