//! Test bodies shared by the body wrappers' unit tests.
//!
//! Bodies are built from a channel (the test decides when each frame "arrives") or from a fixed list of
//! chunks (to exercise frame boundaries).

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::BoxError;

pub(crate) type FrameResult = Result<Frame<Bytes>, BoxError>;

/// A body whose frames are whatever the returned sender sends; it ends when the sender is dropped.
pub(crate) fn channel_body() -> (
    mpsc::UnboundedSender<FrameResult>,
    impl Body<Data = Bytes, Error = BoxError> + Send + Unpin,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, StreamBody::new(stream))
}

/// A body yielding each chunk as one data frame.
pub(crate) fn chunked_body<I>(chunks: I) -> impl Body<Data = Bytes, Error = BoxError> + Send + Unpin
where
    I: IntoIterator,
    I::Item: Into<Bytes>,
{
    let frames: Vec<FrameResult> = chunks
        .into_iter()
        .map(|chunk| Ok(Frame::data(chunk.into())))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

/// A data frame ready to send on a [`channel_body`] sender.
pub(crate) fn data(bytes: &'static str) -> FrameResult {
    Ok(Frame::data(Bytes::from_static(bytes.as_bytes())))
}

/// Next frame's data bytes; panics on trailers, errors or end of stream.
pub(crate) async fn next_data<B>(body: &mut B) -> Bytes
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    match body.frame().await {
        Some(Ok(frame)) => match frame.into_data() {
            Ok(bytes) => bytes,
            Err(_) => panic!("expected a data frame, got trailers"),
        },
        Some(Err(err)) => panic!("expected a data frame, got error {err}"),
        None => panic!("expected a data frame, got end of stream"),
    }
}

/// All data bytes of the body concatenated, and the number of non-empty data frames.
pub(crate) async fn collect_all<B>(body: B) -> (Vec<u8>, usize)
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut body = body;
    let mut out = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(bytes) = frame.into_data() {
                    if !bytes.is_empty() {
                        frames += 1;
                    }
                    out.extend_from_slice(&bytes);
                }
            }
            Err(err) => panic!("unexpected body error: {err}"),
        }
    }
    (out, frames)
}
