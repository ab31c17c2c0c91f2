//! A client's request body, read off its connection frame by frame as the proxy asks for it,
//! and the connection state that body and server share.
//!
//! The connection (socket and read buffer) sits behind a mutex that the body and the server
//! loop both take, one poll at a time and never across an await: the body while the proxy
//! reads it, the server loop to write the answer and, once the body is read, to watch for the
//! client going away. Only one of them reads the socket at any time (the runtime keeps one
//! reader waker per socket), which is why the server loop reads only when the body is done.
//!
//! A body that arrived with its head (the common case for an MCP message) is handed over as
//! bytes already read and never touches the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::BodyTooLarge;
use crate::codec::chunked::{ChunkError, RequestChunked};
use crate::codec::decode::{Decoded, take_length};
use crate::codec::request::BodyFraming;
use crate::codec::response::CONTINUE;

/// Read buffer added when the one in use is nearly full: enough for a request head and an MCP
/// message in one read.
pub const READ_BUF_BYTES: usize = 8 * 1024;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client closed the connection before the body was complete.
    #[error("the client closed the connection before the request body was complete")]
    Incomplete,
    /// Reading from, or writing `100 Continue` to, the client failed.
    #[error("the client connection failed")]
    Io(#[source] std::io::Error),
    /// The chunked coding is invalid.
    #[error("invalid chunked request body: {0}")]
    Chunked(&'static str),
    /// The chunk sizes announce more than `listen.max_body_bytes` (refused before the data).
    #[error("{0}")]
    TooLarge(#[source] BodyTooLarge),
    /// An earlier error ended the body.
    #[error("the request body already failed")]
    Failed,
}

/// Where the current request's body stands on the connection.
#[derive(Debug)]
pub enum BodyDecoder {
    /// This many bytes to go.
    Length(u64),
    /// Chunked, in this state (the request side's strict decoder).
    Chunked(RequestChunked),
    /// Read to its end (or there was none).
    Done,
    /// Failed: the connection cannot carry another request.
    Failed,
}

/// Whether `100 Continue` still has to go out before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// Not asked for, or already sent.
    No,
    /// Asked for; this many bytes of it are written.
    Writing(usize),
    /// Written; to be flushed.
    Flushing,
}

/// The client connection and its read state.
#[derive(Debug)]
pub struct Transport<IO> {
    /// The client's byte stream.
    pub io: IO,
    /// Bytes read and not yet consumed (the rest of a body, a pipelined request).
    pub read_buf: BytesMut,
    /// The current request's body.
    pub decoder: BodyDecoder,
    /// The `Expect: 100-continue` answer.
    pub expect: Continue,
    /// The client closed its side (or the socket failed).
    pub read_closed: bool,
    /// `listen.max_body_bytes`: a chunked body announcing more is refused at its size line.
    pub max_body_bytes: u64,
}

impl<IO> Transport<IO> {
    /// Makes room for a read when the buffer is nearly full.
    pub fn reserve(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < READ_BUF_BYTES / 4 {
            self.read_buf.reserve(READ_BUF_BYTES);
        }
    }
}

/// The connection, shared by the server loop and the body being read.
pub type Shared<IO> = Arc<Mutex<Transport<IO>>>;

/// Locks the transport. A panic while it was held cannot leave it half-updated in a way that
/// matters more than the panic itself, so a poisoned lock is still used.
pub fn lock<IO>(shared: &Shared<IO>) -> MutexGuard<'_, Transport<IO>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request body as the proxy sees it.
#[derive(Debug)]
pub struct RequestBody<IO> {
    kind: Kind<IO>,
}

#[derive(Debug)]
enum Kind<IO> {
    /// All of it was read with the head (or there is none).
    Full(Option<Bytes>),
    /// The rest is on the connection.
    Stream {
        shared: Shared<IO>,
        /// Bytes left when known (a length, or 0 once done), copied from the decoder after each
        /// poll so `is_end_stream` and `size_hint` answer without taking the lock.
        exact: Option<u64>,
    },
}

impl<IO> RequestBody<IO> {
    /// The body of a request framed as `framing`, with `transport.read_buf` holding what
    /// followed its head. Sets the transport's decoder for this request.
    pub fn new(
        shared: &Shared<IO>,
        transport: &mut Transport<IO>,
        framing: BodyFraming,
        expect_continue: bool,
    ) -> Self {
        transport.expect = Continue::No;
        let kind = match framing {
            BodyFraming::Empty => {
                transport.decoder = BodyDecoder::Done;
                Kind::Full(None)
            }
            BodyFraming::Length(n) if transport.read_buf.len() as u64 >= n => {
                // Whole: cut from the buffer (n fits, the buffer holds it).
                transport.decoder = BodyDecoder::Done;
                let bytes = transport.read_buf.split_to(n as usize).freeze();
                Kind::Full(Some(bytes))
            }
            BodyFraming::Length(n) => {
                transport.decoder = BodyDecoder::Length(n);
                Self::ask_to_continue(transport, expect_continue);
                Kind::Stream {
                    shared: shared.clone(),
                    exact: Some(n),
                }
            }
            BodyFraming::Chunked => {
                transport.decoder =
                    BodyDecoder::Chunked(RequestChunked::new(transport.max_body_bytes));
                Self::ask_to_continue(transport, expect_continue);
                Kind::Stream {
                    shared: shared.clone(),
                    exact: None,
                }
            }
        };
        Self { kind }
    }

    /// The rest of the current request's body, wherever the proxy left it (to drain it).
    pub fn resume(shared: &Shared<IO>) -> Self {
        Self {
            kind: Kind::Stream {
                shared: shared.clone(),
                exact: None,
            },
        }
    }

    fn ask_to_continue(transport: &mut Transport<IO>, expect_continue: bool) {
        // Sent when the body is first read, as hyper does: a request refused before its body
        // is needed (401, 429) is answered without the client uploading it.
        if expect_continue && transport.read_buf.is_empty() {
            transport.expect = Continue::Writing(0);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Body for RequestBody<IO> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { shared, exact } => {
                let mut transport = lock(shared);
                let polled = poll_stream(&mut transport, cx);
                if let (Some(left), BodyDecoder::Length(n)) = (exact.as_mut(), &transport.decoder) {
                    *left = *n;
                } else if matches!(transport.decoder, BodyDecoder::Done) {
                    *exact = Some(0);
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { exact, .. } => *exact == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { exact: Some(n), .. } => SizeHint::with_exact(*n),
            Kind::Stream { exact: None, .. } => SizeHint::default(),
        }
    }
}

/// The next frame of the body on the connection: `100 Continue` first when it is owed, then
/// the buffered bytes, then the socket.
fn poll_stream<IO: AsyncRead + AsyncWrite + Unpin>(
    t: &mut Transport<IO>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    if let Err(e) = std::task::ready!(poll_continue(t, cx)) {
        t.decoder = BodyDecoder::Failed;
        t.read_closed = true;
        return Poll::Ready(Some(Err(BodyError::Io(e))));
    }
    loop {
        match &mut t.decoder {
            BodyDecoder::Done => return Poll::Ready(None),
            BodyDecoder::Failed => return Poll::Ready(Some(Err(BodyError::Failed))),
            BodyDecoder::Length(left) => {
                if let Some(data) = take_length(left, &mut t.read_buf) {
                    if *left == 0 {
                        t.decoder = BodyDecoder::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
            }
            BodyDecoder::Chunked(chunked) => match chunked.decode(&mut t.read_buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Trailers(trailers)) => {
                    t.decoder = BodyDecoder::Done;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::Done) => {
                    t.decoder = BodyDecoder::Done;
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    t.decoder = BodyDecoder::Failed;
                    let e = match e {
                        ChunkError::Malformed(why) => BodyError::Chunked(why),
                        ChunkError::TooLarge { limit } => {
                            BodyError::TooLarge(BodyTooLarge { limit })
                        }
                    };
                    return Poll::Ready(Some(Err(e)));
                }
            },
        }
        if t.read_closed {
            t.decoder = BodyDecoder::Failed;
            return Poll::Ready(Some(Err(BodyError::Incomplete)));
        }
        t.reserve();
        match std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut t.io),
            cx,
            &mut t.read_buf
        )) {
            Ok(0) => {
                t.read_closed = true;
                t.decoder = BodyDecoder::Failed;
                return Poll::Ready(Some(Err(BodyError::Incomplete)));
            }
            Ok(_) => {}
            Err(e) => {
                t.read_closed = true;
                t.decoder = BodyDecoder::Failed;
                return Poll::Ready(Some(Err(BodyError::Io(e))));
            }
        }
    }
}

/// Writes (and flushes) `100 Continue` if it is owed.
fn poll_continue<IO: AsyncWrite + Unpin>(
    t: &mut Transport<IO>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        match t.expect {
            Continue::No => return Poll::Ready(Ok(())),
            Continue::Writing(done) if done == CONTINUE.len() => t.expect = Continue::Flushing,
            Continue::Writing(done) => {
                let n = std::task::ready!(Pin::new(&mut t.io).poll_write(cx, &CONTINUE[done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                t.expect = Continue::Writing(done + n);
            }
            Continue::Flushing => {
                std::task::ready!(Pin::new(&mut t.io).poll_flush(cx))?;
                t.expect = Continue::No;
            }
        }
    }
}
