//! The sidecar's HTTP/1.x server leg: one client connection, its requests read, handed to a
//! [`Handler`] (the sidecar's [`Proxy`](crate::forward::Proxy), or any other service built on
//! this leg, such as the chaos proxy) and answered on the connection's own task, one after
//! another.
//!
//! Why not hyper's server for HTTP/1: its dispatcher, buffered I/O and role layers cost a large
//! share of the instructions per request more than a loop that parses the head and writes the
//! answer in place (BENCHMARKS.md, "Figures behind code decisions"), and the sidecar's target is
//! HAProxy's throughput on one core. HTTP/2 (ALPN `h2`, or h2c with prior knowledge) stays hyper's.
//! What this covers is what a reverse proxy's HTTP/1 codec must (RFC 9112), as Pingora's and
//! Envoy's own codecs do:
//!
//! - request heads parsed by httparse with limits (431 above [`MAX_REQUEST_HEAD_BYTES`](crate::codec::request::MAX_REQUEST_HEAD_BYTES)
//!   or [`MAX_REQUEST_HEADERS`](crate::codec::request::MAX_REQUEST_HEADERS)); bodies framed by `Content-Length` or chunked, and a
//!   request with both refused (400); framing stricter than the client leg's (a client is not
//!   trusted): `Transfer-Encoding` exactly `chunked` (other codings 501), one `Host`, the
//!   chunked coding decoded strictly and bounded by `listen.max_body_bytes` ([`crate::codec::chunked`]);
//! - keep-alive (HTTP/1.1 unless `close`, HTTP/1.0 with `keep-alive`) and pipelining (requests
//!   answered in order);
//! - `Expect: 100-continue` answered when the body is first read (never for a request refused
//!   from its head);
//! - a 408 (the proxy's request body read timeout) closes the connection: the rest of that body
//!   is still on the wire;
//! - `listen.header_read_timeout` from the moment the server waits for a head, so a silent or
//!   slow client and an idle keep-alive connection are closed after it;
//! - responses framed by their length, else chunked (HTTP/1.0: until close), written as soon
//!   as the body has nothing more ready, so a stream event is never held back; head and a small
//!   body leave in one `write(2)`;
//! - a client that closes while its request is served cancels it (the proxy's future is
//!   dropped, which closes the upstream connection);
//! - an unread request body is drained (up to [`MAX_DRAIN_BYTES`]) so the connection can be
//!   reused, else the connection is closed after the answer, lingering so the answer is not
//!   lost to a reset;
//! - graceful shutdown ([`drain`]): an idle connection closes at once; a busy one finishes its
//!   request, answers with `Connection: close` and closes.

pub mod body;
pub mod drain;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::body::BoxError;
use crate::body::ProxyBody;
use crate::codec::encode::{LAST_CHUNK, encode_chunk, encode_chunk_size};
use crate::codec::request::HeadError;
use crate::codec::request::{RequestHead, parse_request_head};
use crate::codec::response::{Answering, BodyShape, ResponseFraming, encode_response_head};
use crate::conn_info::ConnInfo;
use crate::lazy_timer::LazyTimer;
use body::{BodyDecoder, Continue, RequestBody, Shared, Transport, lock};

/// Body data up to this size is copied behind what is buffered (the head, earlier small
/// frames) so it leaves in the same `write(2)`; larger data is written where it is.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Buffered response bytes that are written even though the body has more ready: bounds the
/// buffer while a fast body streams.
const WRITE_BUF_FLUSH_BYTES: usize = 64 * 1024;

/// Most request body bytes read and discarded to reuse a connection whose request was answered
/// without its body being read (a 401 to an upload): nginx discards without a bound; past this
/// the connection is closed instead, which costs the client a new connection, not the sidecar
/// the bandwidth of a large upload.
pub const MAX_DRAIN_BYTES: u64 = 1024 * 1024;

/// Bytes of pipelined requests read ahead while a request is served (and the client watched
/// for a close); past this the client waits, as TCP backpressure.
const MAX_READ_AHEAD_BYTES: usize = 64 * 1024;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so the answer already written is not destroyed by a reset (nginx's `lingering_timeout`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server leg hands each request to.
///
/// Generic, not boxed: the leg and the handler compile into one future per connection, with no
/// allocation or virtual call per request.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Infallible: every failure must become a response here, because the
    /// leg has no answer of its own to give. Dropping the future (the client went away) cancels
    /// the request.
    fn call<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>;

    /// The answer to a request head the leg could not read (malformed, oversized, an unmet
    /// `Expect`). The connection closes after it.
    fn refuse(&self, err: HeadError) -> Response<ProxyBody>;

    /// The largest request body accepted; the leg refuses a chunk size past it before its data
    /// arrives.
    fn max_body_bytes(&self) -> u64;
}

/// Serves the requests of one HTTP/1 client connection until it closes, times out, fails or
/// the drain ends it. `read`: bytes already read from `io` (the start of the first request,
/// read to choose the protocol).
pub async fn serve<IO, H>(
    io: IO,
    read: BytesMut,
    handler: Arc<H>,
    info: ConnInfo,
    header_read_timeout: Duration,
    watch: drain::Watch,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut conn = Connection {
        shared: Arc::new(Mutex::new(Transport {
            io,
            read_buf: read,
            decoder: BodyDecoder::Done,
            expect: Continue::No,
            read_closed: false,
            max_body_bytes: handler.max_body_bytes(),
        })),
        write_buf: Vec::with_capacity(1024),
        header_read_timeout,
        timer: LazyTimer::new(),
        signaled: Box::pin(watch.signaled()),
        watch,
    };
    conn.run(&*handler, &info).await;
}

/// Why a connection stops.
enum End {
    /// The answer is written and the connection may carry another request.
    KeepAlive,
    /// Close after what is written (the client asked, a framing that needs it, shutdown).
    Close,
    /// The client went away or the connection failed: nothing more can be written.
    Gone,
}

struct Connection<IO> {
    shared: Shared<IO>,
    write_buf: Vec<u8>,
    header_read_timeout: Duration,
    /// The header-read deadline's timer: setting a deadline per request is a clock read, not a
    /// timer-wheel update.
    timer: LazyTimer,
    signaled: Pin<Box<WaitForCancellationFutureOwned>>,
    watch: drain::Watch,
}

impl<IO> Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run<H: Handler>(&mut self, handler: &H, info: &ConnInfo) {
        loop {
            let head = match self.read_head().await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(err) => {
                    tracing::debug!(remote = %info.remote, error = %err, "refused a request head");
                    let response = handler.refuse(err);
                    let answering = Answering {
                        head: false,
                        version: http::Version::HTTP_11,
                        keep_alive: false,
                    };
                    if let End::Close = self.respond(response, answering).await {
                        self.close(true).await;
                    }
                    return;
                }
            };
            let RequestHead {
                parts,
                framing,
                keep_alive,
                expect_continue,
            } = head;
            let answering = Answering {
                head: parts.method == Method::HEAD,
                version: parts.version,
                keep_alive,
            };
            let body = {
                let mut transport = lock(&self.shared);
                RequestBody::new(&self.shared, &mut transport, framing, expect_continue)
            };
            let request = Request::from_parts(parts, body);
            let response = {
                let serving = pin!(handler.call(request, info.clone()));
                match self.until_client_gone(serving).await {
                    Some(response) => response,
                    None => {
                        tracing::debug!(remote = %info.remote, "client closed the connection before the answer");
                        return;
                    }
                }
            };
            // A 408 ends the connection (RFC 9110 §15.5.9): the body it gave up on is still
            // on the wire, unread.
            let answering = Answering {
                keep_alive: answering.keep_alive
                    && response.status() != http::StatusCode::REQUEST_TIMEOUT
                    && self.can_reuse(),
                ..answering
            };
            match self.respond(response, answering).await {
                End::KeepAlive => {
                    if !self.finish_request_body().await {
                        self.close(true).await;
                        return;
                    }
                }
                End::Close => {
                    let lingering = !self.request_body_done();
                    self.close(lingering).await;
                    return;
                }
                End::Gone => return,
            }
        }
    }

    /// Waits for the next request head. `Ok(None)`: the client closed, the header-read
    /// timeout passed, or the server is draining and nothing of a next request has arrived.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, HeadError> {
        let deadline = Instant::now() + self.header_read_timeout;
        let shared = &self.shared;
        let timer = &mut self.timer;
        let signaled = &mut self.signaled;
        let watch = &self.watch;
        std::future::poll_fn(|cx| {
            let mut transport = lock(shared);
            let t = &mut *transport;
            loop {
                if !t.read_buf.is_empty()
                    && let Some(head) = parse_request_head(&mut t.read_buf)?
                {
                    return Poll::Ready(Ok(Some(head)));
                }
                if t.read_closed {
                    return Poll::Ready(Ok(None));
                }
                t.reserve();
                match tokio_util::io::poll_read_buf(Pin::new(&mut t.io), cx, &mut t.read_buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        t.read_closed = true;
                        return Poll::Ready(Ok(None));
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            // Nothing more to read now: close if draining and no request has begun.
            if t.read_buf.is_empty()
                && (watch.is_draining() || signaled.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(Ok(None));
            }
            if timer.poll_expired(deadline, cx).is_ready() {
                tracing::debug!("header read timeout: closing the connection");
                return Poll::Ready(Ok(None));
            }
            Poll::Pending
        })
        .await
    }

    /// Polls `serving` to its answer; `None` if the client closes the connection first (the
    /// caller drops the future, which cancels the request).
    async fn until_client_gone<F: Future>(&self, mut serving: Pin<&mut F>) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = serving.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if self.poll_client_gone(cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the client has closed its side. Reads only once the request body is done (the
    /// body is the reader until then); bytes read are kept as the next, pipelined request.
    fn poll_client_gone(&self, cx: &mut Context<'_>) -> bool {
        let mut transport = lock(&self.shared);
        let t = &mut *transport;
        if t.read_closed {
            return true;
        }
        if !matches!(t.decoder, BodyDecoder::Done) {
            return false;
        }
        while t.read_buf.len() < MAX_READ_AHEAD_BYTES {
            t.reserve();
            match tokio_util::io::poll_read_buf(Pin::new(&mut t.io), cx, &mut t.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    t.read_closed = true;
                    return true;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return false,
            }
        }
        false
    }

    /// Whether the connection can carry another request after the answer now being written:
    /// not draining, and the request body read or cheap to drain (a client still waiting for
    /// `100 Continue` never sends it, so that connection cannot be reused).
    fn can_reuse(&self) -> bool {
        if self.watch.is_draining() {
            return false;
        }
        let t = lock(&self.shared);
        if t.read_closed {
            return false;
        }
        match &t.decoder {
            BodyDecoder::Done => true,
            BodyDecoder::Failed => false,
            _ if t.expect != Continue::No => false,
            BodyDecoder::Length(n) => *n <= MAX_DRAIN_BYTES,
            BodyDecoder::Chunked(_) => true,
        }
    }

    fn request_body_done(&self) -> bool {
        matches!(lock(&self.shared).decoder, BodyDecoder::Done)
    }

    /// Reads and discards what the proxy left of the request body (at most
    /// [`MAX_DRAIN_BYTES`], within the header-read timeout). False: the connection must close.
    async fn finish_request_body(&mut self) -> bool {
        if self.request_body_done() {
            return true;
        }
        let mut rest = RequestBody::<IO>::resume(&self.shared);
        let drain = async {
            let mut drained = 0u64;
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut rest).poll_frame(cx)).await
            {
                let Ok(frame) = frame else { return false };
                if let Some(data) = frame.data_ref() {
                    drained += data.len() as u64;
                    if drained > MAX_DRAIN_BYTES {
                        return false;
                    }
                }
            }
            true
        };
        tokio::time::timeout(self.header_read_timeout, drain)
            .await
            .unwrap_or(false)
    }

    /// Writes `response` (head, then the body as it comes). Dropping the body at the end
    /// completes the request's access-log line and metrics.
    async fn respond(&mut self, response: Response<ProxyBody>, answering: Answering) -> End {
        let (parts, mut body) = response.into_parts();
        self.write_buf.clear();
        let shape = BodyShape {
            end_stream: body.is_end_stream(),
            exact: body.size_hint().exact(),
        };
        let (framing, keep_alive) =
            encode_response_head(&mut self.write_buf, &parts, answering, shape);
        drop(parts);
        let end = if keep_alive {
            End::KeepAlive
        } else {
            End::Close
        };
        if framing == ResponseFraming::None {
            drop(body);
            return match self.flush().await {
                Ok(()) => end,
                Err(()) => End::Gone,
            };
        }
        let mut sent = 0u64;
        loop {
            // A frame that is ready now goes behind what is buffered; only when the body has to
            // wait is the buffer written, so an answer in memory leaves in one write and a
            // stream's events leave as they come.
            let next =
                match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)))
                    .await
                {
                    Poll::Ready(next) => next,
                    Poll::Pending => {
                        if self.flush().await.is_err() {
                            return End::Gone;
                        }
                        match self.next_frame_or_gone(&mut body).await {
                            Some(next) => next,
                            None => return End::Gone,
                        }
                    }
                };
            let data = match next {
                None => break,
                Some(Err(e)) => {
                    // The answer cannot be completed: the client sees it cut off (no last chunk,
                    // or fewer bytes than announced), never a complete-looking wrong one.
                    tracing::debug!(error = %e, "response body failed; closing the connection");
                    let _ = self.flush().await;
                    return End::Gone;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // HTTP/1.1 trailers are dropped, as hyper does unless the client asks.
                    Err(_) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if let ResponseFraming::Length(n) = framing
                && sent > n
            {
                tracing::debug!(
                    announced = n,
                    "response body longer than its length; closing"
                );
                let _ = self.flush().await;
                return End::Gone;
            }
            let chunked = framing == ResponseFraming::Chunked;
            if data.len() > INLINE_BODY_BYTES {
                if chunked {
                    encode_chunk_size(&mut self.write_buf, data.len());
                }
                if self.flush().await.is_err() || self.write_all(&data).await.is_err() {
                    return End::Gone;
                }
                if chunked {
                    self.write_buf.extend_from_slice(b"\r\n");
                }
            } else if chunked {
                encode_chunk(&mut self.write_buf, &data);
            } else {
                self.write_buf.extend_from_slice(&data);
            }
            if self.write_buf.len() >= WRITE_BUF_FLUSH_BYTES && self.flush().await.is_err() {
                return End::Gone;
            }
        }
        drop(body);
        if let ResponseFraming::Length(n) = framing
            && sent != n
        {
            tracing::debug!(
                announced = n,
                sent,
                "response body shorter than its length; closing"
            );
            let _ = self.flush().await;
            return End::Gone;
        }
        if framing == ResponseFraming::Chunked {
            self.write_buf.extend_from_slice(LAST_CHUNK);
        }
        match self.flush().await {
            Ok(()) if framing == ResponseFraming::Close => End::Close,
            Ok(()) => end,
            Err(()) => End::Gone,
        }
    }

    /// The body's next frame, or `None` if the client closes first.
    async fn next_frame_or_gone(
        &self,
        body: &mut ProxyBody,
    ) -> Option<Option<Result<http_body::Frame<bytes::Bytes>, crate::body::BoxError>>> {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(next) = Pin::new(&mut *body).poll_frame(cx) {
                return Poll::Ready(Some(next));
            }
            if self.poll_client_gone(cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Writes and clears the buffer.
    async fn flush(&mut self) -> Result<(), ()> {
        if !self.write_buf.is_empty() {
            let shared = &self.shared;
            let result = write_all(shared, &self.write_buf).await;
            self.write_buf.clear();
            result?;
        }
        Ok(())
    }

    async fn write_all(&self, data: &[u8]) -> Result<(), ()> {
        write_all(&self.shared, data).await
    }

    /// Sends FIN and, when the client may still be sending (an unread body, pipelined bytes),
    /// reads and discards for up to [`LINGER_TIMEOUT`] first so the answer is not destroyed by
    /// the reset that closing a socket with unread data causes.
    async fn close(&mut self, lingering: bool) {
        let shared = &self.shared;
        let shutdown = std::future::poll_fn(|cx| Pin::new(&mut lock(shared).io).poll_shutdown(cx));
        if tokio::time::timeout(LINGER_TIMEOUT, shutdown)
            .await
            .is_err()
            || !lingering
        {
            return;
        }
        let discard = std::future::poll_fn(|cx| {
            let mut transport = lock(shared);
            let t = &mut *transport;
            loop {
                t.read_buf.clear();
                t.reserve();
                match tokio_util::io::poll_read_buf(Pin::new(&mut t.io), cx, &mut t.read_buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        let _ = tokio::time::timeout(LINGER_TIMEOUT, discard).await;
    }
}

/// Writes all of `data` and flushes (a no-op for TCP; TLS sends its records).
async fn write_all<IO: AsyncWrite + Unpin>(shared: &Shared<IO>, mut data: &[u8]) -> Result<(), ()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut lock(shared).io).poll_write(cx, data))
            .await
            .map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        data = &data[n..];
    }
    std::future::poll_fn(|cx| Pin::new(&mut lock(shared).io).poll_flush(cx))
        .await
        .map_err(|_| ())
}

// Connection-level behaviour is tested end to end, against the real sidecar and fixture, in
// tests/tests/http1_server.rs.
