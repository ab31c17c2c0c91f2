//! Reading a response body off its connection, frame by frame as bytes arrive: the buffered
//! bytes first, then the socket. Data is handed on as soon as it is read (never gathered into
//! larger pieces), which is what keeps an SSE stream live through the sidecar.

use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{ClientError, Conn};
use crate::codec::decode::{Chunked, Decoded, Framing, take_length};

/// Where a response body stands.
#[derive(Debug)]
pub enum Decoder {
    /// This many bytes to go.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunked),
    /// Until the backend closes.
    Close,
    /// Read to its end.
    Done,
}

impl Decoder {
    /// The decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunked::Size),
            Framing::Close => Self::Close,
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// The exact remaining length, when the framing says it.
    pub fn size_hint(&self) -> SizeHint {
        match self {
            Self::Length(n) => SizeHint::with_exact(*n),
            Self::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The next frame from `conn`. `None` once done; an error leaves the connection unusable.
    pub fn poll_frame(
        &mut self,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        loop {
            match self {
                Self::Done => return Poll::Ready(None),
                Self::Length(left) => {
                    if let Some(data) = take_length(left, &mut conn.read_buf) {
                        if *left == 0 {
                            *self = Self::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Self::Chunked(chunked) => match chunked.decode(&mut conn.read_buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        *self = Self::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::Done) => {
                        *self = Self::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                },
                Self::Close => {
                    if !conn.read_buf.is_empty() {
                        let data = conn.read_buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match std::task::ready!(conn.poll_read_more(cx)) {
                Ok(0) if matches!(self, Self::Close) => {
                    *self = Self::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(ClientError::Incomplete))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}
