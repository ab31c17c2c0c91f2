//! The sidecar's HTTP/1.1 client leg: one backend connection, driven by the request that uses
//! it, on the request's own task.
//!
//! Why not hyper's client: hyper runs each connection as a task of its own and hands requests,
//! responses and body chunks to it through channels, so every forwarded request crossed tasks four
//! times; with its dispatch machinery that was a large share of the instructions a minimal hyper
//! proxy spends per request, far more than a client leg that writes the head and reads the answer
//! in place costs (BENCHMARKS.md, "Figures behind code decisions" and "Where the instructions
//! went"). A sidecar talks to one backend over a handful of keep-alive connections and never
//! pipelines, which is the case this covers, as Pingora's and Envoy's own HTTP/1 codecs do:
//!
//! - the request head is written in origin form with framing the sidecar chooses
//!   ([`encode`]); head and a known-length body leave in one `write(2)`;
//! - the response head is parsed by httparse (hyper's parser) and framed per RFC 9112 §6.3:
//!   length, chunked (decoded incrementally, so stream events are never held back) or
//!   read-to-close ([`decode`]);
//! - the response body owns the connection while it is read ([`body`]); only a body read to
//!   its end leaves a reusable connection, and dropping the future or the body closes it, which
//!   is how a client that goes away cancels the backend's work.
//!
//! The server side (clients to the sidecar) stays hyper's, with HTTP/2 and all the protocol
//! surface strangers send.

pub mod body;
pub mod io;

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::request::Parts;
use http::{HeaderValue, Method};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body::{BoxError, ProxyBody};
use crate::codec::DecodeError;
use crate::codec::decode::{self, Head};
use crate::codec::encode::{self, BodyFraming};
use crate::lazy_timer::LazyTimer;

pub use io::Io;

/// Read buffer added when the one in use is full: hyper's initial buffer size, enough for an
/// MCP answer's head and body in one read.
const READ_BUF_BYTES: usize = 8 * 1024;

/// Body data up to this size is copied behind the head so both leave in one `write(2)` (an MCP
/// message is a few hundred bytes); larger data is written where it is, with no copy.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Why an exchange on a connection failed. Any of these leaves the connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Writing the request failed (the backend closed or reset the connection).
    #[error("writing the request")]
    Write(#[source] std::io::Error),
    /// Reading the response failed.
    #[error("reading the response")]
    Read(#[source] std::io::Error),
    /// The request body (a client's stream) failed or did not match its declared length.
    #[error("the request body failed")]
    RequestBody(#[source] BoxError),
    /// The backend closed the connection without sending any response.
    #[error("the backend closed the connection before answering")]
    ClosedBeforeResponse,
    /// The backend closed the connection in the middle of the response head or body.
    #[error("the backend closed the connection before the response was complete")]
    Incomplete,
    /// The response is not valid HTTP/1.1.
    #[error("invalid response from the backend: {0}")]
    Malformed(String),
    /// The response head is larger than [`decode::MAX_HEAD_BYTES`].
    #[error(
        "the backend's response head is larger than {} bytes",
        decode::MAX_HEAD_BYTES
    )]
    HeadTooLarge,
}

impl From<DecodeError> for ClientError {
    fn from(err: DecodeError) -> Self {
        match err {
            DecodeError::Malformed(why) => Self::Malformed(why),
            DecodeError::HeadTooLarge => Self::HeadTooLarge,
        }
    }
}

/// One connection to a backend and its buffers (kept across requests: no allocation per
/// request once warm).
pub struct Conn {
    io: Io,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    /// The response deadline of the request in flight, kept across requests (see
    /// [`LazyTimer`]).
    pub timer: LazyTimer,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &self.read_buf.len())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection over `io`, fresh from the connector.
    pub fn new(io: Io) -> Self {
        Self {
            io,
            read_buf: BytesMut::with_capacity(READ_BUF_BYTES),
            write_buf: Vec::with_capacity(1024),
            timer: LazyTimer::new(),
        }
    }

    /// Whether an idle connection can take a request: the backend has not closed it (nor sent
    /// anything unasked, such as a late `408`). Looks at what the runtime already knows about
    /// the socket, so a live idle connection costs no system call; a close that arrived while it
    /// was idle shows as end of stream.
    pub fn is_reusable(&mut self) -> bool {
        if !self.read_buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.read_buf),
            Poll::Pending
        )
    }

    /// Writes `head` and `body`: one write when the body's length is known and it is in
    /// memory, else the head and then the body as it streams.
    pub async fn write_request(
        &mut self,
        head: &Parts,
        mut body: ProxyBody,
        host: &HeaderValue,
    ) -> Result<(), ClientError> {
        let framing =
            BodyFraming::choose(&head.method, body.is_end_stream(), body.size_hint().exact());
        self.write_buf.clear();
        encode::encode_head(
            &mut self.write_buf,
            &head.method,
            &head.uri,
            &head.headers,
            framing,
            host,
        );
        let mut sent = 0u64;
        while !body.is_end_stream() {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(ClientError::RequestBody)?;
            // Trailers of a client's chunked request are dropped, as most proxies do.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            sent += data.len() as u64;
            let chunked = framing == BodyFraming::Chunked;
            if data.len() > INLINE_BODY_BYTES {
                // Large: written from where it is, after what is buffered, not copied behind
                // the head (the buffer stays small for the connection's life).
                if chunked {
                    encode::encode_chunk_size(&mut self.write_buf, data.len());
                }
                self.flush_write_buf().await?;
                self.io.write_all(&data).await.map_err(ClientError::Write)?;
                if chunked {
                    self.write_buf.extend_from_slice(b"\r\n");
                }
            } else if chunked {
                encode::encode_chunk(&mut self.write_buf, &data);
            } else {
                self.write_buf.extend_from_slice(&data);
            }
            if !body.is_end_stream() {
                // More is to come, maybe later: what there is goes out now (streamed, not
                // buffered). A body in memory ends with its one frame and goes out with the head.
                self.flush_write_buf().await?;
            }
        }
        if let BodyFraming::Length(n) = framing
            && n != sent
        {
            return Err(ClientError::RequestBody(
                format!("the body was {sent} bytes, not the {n} it announced").into(),
            ));
        }
        if framing == BodyFraming::Chunked {
            self.write_buf.extend_from_slice(encode::LAST_CHUNK);
        }
        self.flush_write_buf().await
    }

    async fn flush_write_buf(&mut self) -> Result<(), ClientError> {
        self.io
            .write_all(&self.write_buf)
            .await
            .map_err(ClientError::Write)?;
        self.write_buf.clear();
        // A no-op for TCP; TLS sends its buffered records.
        self.io.flush().await.map_err(ClientError::Write)
    }

    /// Reads the response head (skipping 1xx); the body stays buffered for [`body`].
    pub async fn read_head(&mut self, method: &Method) -> Result<Head, ClientError> {
        let head_request = *method == Method::HEAD;
        loop {
            if !self.read_buf.is_empty()
                && let Some(head) = decode::parse_head(&mut self.read_buf, head_request)?
            {
                return Ok(head);
            }
            self.reserve();
            let n = self
                .io
                .read_buf(&mut self.read_buf)
                .await
                .map_err(ClientError::Read)?;
            if n == 0 {
                return Err(if self.read_buf.is_empty() {
                    ClientError::ClosedBeforeResponse
                } else {
                    ClientError::Incomplete
                });
            }
        }
    }

    /// Whether nothing is buffered past what has been read (a reusable connection's state).
    pub fn read_buf_is_empty(&self) -> bool {
        self.read_buf.is_empty()
    }

    fn reserve(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < READ_BUF_BYTES / 4 {
            self.read_buf.reserve(READ_BUF_BYTES);
        }
    }

    /// Reads more of the response into the buffer; `Ok(0)` at end of stream.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, ClientError>> {
        self.reserve();
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf)
            .map_err(ClientError::Read)
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
