//! The connection pool for one upstream: keep-alive HTTP/1.1 connections ([`h1`]), reused
//! last-in first-out.
//!
//! hyper-util's general-purpose client keys its pool by scheme and authority in a SipHash map,
//! races a new connection against an idle one for every checkout and spawns a task per request to
//! put the connection back; that was a large share of the sidecar's instructions per request when
//! measured (BENCHMARKS.md, "Figures behind code decisions"). A sidecar talks to one backend per
//! upstream, so its pool is a stack of idle connections behind a mutex, as in Pingora's and
//! linkerd's proxies:
//!
//! - checkout pops the most recently used connection that is still open and younger than the
//!   idle timeout (LIFO keeps few connections warm), or connects a new one; an idle connection
//!   the backend closed (or wrote to unasked) is dropped at checkout, without a system call
//!   when it is alive;
//! - the connection goes back when the response body has been read to its end and the response
//!   allows reuse; a body dropped half-read, an error, a cancelled request or
//!   `Connection: close` closes it (its state is unknown or it is finished);
//! - at most `pool_max_idle` idle connections are kept; a sweeper closes expired ones.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::ServiceExt;

use super::h1::body::Decoder;
use super::h1::{ClientError, Conn};
use crate::body::{BoxError, ProxyBody};

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made (refused, unreachable, timed out, TLS handshake failed).
    /// Nothing was sent.
    #[error("connect error")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or the response awaited.
    #[error("upstream connection error")]
    Request(#[source] ClientError),
    /// The deadline passed before the response head arrived.
    #[error("no response before the deadline")]
    Timeout,
}

impl PoolError {
    /// Whether the request never reached the backend because no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// A failed [`Pool::send`]: the error, and the request when it never left (connect errors).
#[derive(Debug)]
pub struct Unsent {
    /// What went wrong.
    pub error: PoolError,
    /// The request as given, when no byte of it was sent.
    pub request: Option<Request<ProxyBody>>,
}

/// One upstream's pool. Cheap to clone (shared).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.inner.lock().len())
            .field("max_idle", &self.inner.max_idle)
            .finish_non_exhaustive()
    }
}

struct Inner {
    connector: Connector,
    /// `scheme://authority` of the backend, what the connector dials.
    target: Uri,
    /// Its authority: the `Host` of every request sent on its connections.
    host: HeaderValue,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// How new connections are made.
enum Connector {
    /// TCP (and TLS for `https://`): hyper-util's connector under hyper-rustls.
    Network(HttpsConnector<HttpConnector>),
    /// Tests: every connect fails with this errno, as `socket()` or `connect()` would.
    #[cfg(test)]
    Failing(i32),
}

struct Idle {
    // Boxed: a TLS connection's state is large, and connections move in and out of the stack
    // and the response body on every request.
    conn: Box<Conn>,
    since: Instant,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // Entries are pushed and popped whole; a panic elsewhere cannot leave one half-written.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The freshest idle connection that can take a request now.
    fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(mut entry) = idle.pop() {
            if now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
            // Closed by the backend or expired: dropping it closes the socket.
        }
        None
    }

    fn put(&self, conn: Box<Conn>) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            // Keep the freshest: the oldest is the likeliest to be closed by the backend.
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Drops idle connections past the idle timeout (and closed ones).
    fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain_mut(|entry| {
            now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_reusable()
        });
    }
}

impl Pool {
    /// Whether `other` is a handle on this very pool (a reload kept it).
    #[cfg(test)]
    pub(crate) fn same_pool(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A pool dialing `target` (`scheme://host:port`) with `connector`. Must be created inside a
    /// Tokio runtime when `idle_timeout` is non-zero (the sweeper is a task).
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self::with_connector(
            Connector::Network(connector),
            target,
            max_idle,
            idle_timeout,
        )
    }

    /// A pool whose every connect fails with `errno` (nothing is dialled).
    #[cfg(test)]
    pub(crate) fn failing(target: Uri, errno: i32) -> Self {
        Self::with_connector(Connector::Failing(errno), target, 0, Duration::ZERO)
    }

    fn with_connector(
        connector: Connector,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        let host = target
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        let inner = Arc::new(Inner {
            connector,
            target,
            host,
            max_idle,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        });
        if max_idle > 0
            && !idle_timeout.is_zero()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep_every(Arc::downgrade(&inner), idle_timeout));
        }
        Self { inner }
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// Sends `req` (absolute URI; sent in origin form) on a pooled or new connection.
    pub async fn request(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        self.send(req, deadline)
            .await
            .map_err(|unsent| unsent.error)
    }

    /// [`Pool::request`], and when no connection could be made, the request back untouched
    /// (nothing was sent), so a caller can retry it without having kept a copy.
    ///
    /// The exchange runs in the caller's future: dropping it (a client that went away) closes
    /// the connection and so cancels the request at the backend, as does `deadline` passing
    /// before the response head ([`PoolError::Timeout`]). The deadline is kept by the
    /// connection's own [`LazyTimer`](crate::lazy_timer::LazyTimer), not a timer per request.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<PooledBody>, Unsent> {
        let timed_out = || Unsent {
            error: PoolError::Timeout,
            request: None,
        };
        let mut conn = match self.inner.checkout() {
            Some(conn) => conn,
            // Boxed: connecting is the rare path, and its state (connector, TLS handshake)
            // would otherwise sit in every request's future.
            None => match tokio::time::timeout_at(deadline, Box::pin(self.connect())).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(error)) => {
                    return Err(Unsent {
                        error,
                        request: Some(req),
                    });
                }
                Err(_) => return Err(timed_out()),
            },
        };
        let (parts, body) = req.into_parts();
        let mut timer = std::mem::take(&mut conn.timer);
        let exchange = async {
            conn.write_request(&parts, body, &self.inner.host).await?;
            conn.read_head(&parts.method).await
        };
        let outcome = timer.run_until(deadline, exchange).await;
        conn.timer = timer;
        let head = match outcome {
            Some(Ok(head)) => head,
            Some(Err(e)) => {
                return Err(Unsent {
                    error: PoolError::Request(e),
                    request: None,
                });
            }
            None => return Err(timed_out()),
        };
        let body = PooledBody::new(
            conn,
            Decoder::new(head.framing),
            head.keep_alive,
            &self.inner,
        );
        Ok(Response::from_parts(head.parts, body))
    }

    async fn connect(&self) -> Result<Box<Conn>, PoolError> {
        let connector = match &self.inner.connector {
            Connector::Network(connector) => connector.clone(),
            #[cfg(test)]
            Connector::Failing(errno) => {
                let error = std::io::Error::from_raw_os_error(*errno);
                return Err(PoolError::Connect(Box::new(error)));
            }
        };
        let io = connector
            .oneshot(self.inner.target.clone())
            .await
            .map_err(PoolError::Connect)?;
        Ok(Box::new(Conn::new(io.into())))
    }
}

/// Deadline of a [`Pool::request`] (callers that want another bound wrap it in theirs).
const REQUEST_DEADLINE: Duration = Duration::from_secs(300);

async fn sweep_every(pool: Weak<Inner>, idle_timeout: Duration) {
    // Half the timeout: an idle connection is closed at most 1.5x its timeout after last use.
    let mut tick = tokio::time::interval(idle_timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

/// An upstream response body, read off its connection; the connection goes back to the pool
/// once the body has been read to its end (and the response allowed reuse).
pub struct PooledBody {
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Weak<Inner>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("decoder", &self.decoder)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    fn new(conn: Box<Conn>, decoder: Decoder, keep_alive: bool, pool: &Arc<Inner>) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool: Arc::downgrade(pool),
        };
        // A response without a body (204, 304, HEAD, Content-Length: 0) is complete already.
        body.release_if_done();
        body
    }

    /// Gives the connection back once the body is complete; bytes past the end of the response
    /// (a backend that sent more than it framed) make it unusable.
    fn release_if_done(&mut self) {
        if !self.decoder.is_done() {
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep_alive
            && conn.read_buf_is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_deref_mut() else {
            return Poll::Ready(None);
        };
        let polled = this.decoder.poll_frame(conn, cx);
        match &polled {
            // An error leaves the connection unusable; dropping it closes it.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Ready(_) => this.release_if_done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;

    use super::*;
    use crate::body::full;
    use hyper_util::rt::TokioIo;

    /// A keep-alive HTTP/1 backend that counts the connections it accepted; `/big` answers with
    /// a body larger than one read, `/close` closes the connection after answering.
    async fn backend() -> (Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let mut response = match req.uri().path() {
                            "/big" => Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20]))),
                            _ => Response::new(Full::new(Bytes::from_static(b"ok"))),
                        };
                        if req.uri().path() == "/close" {
                            response
                                .headers_mut()
                                .insert(http::header::CONNECTION, "close".parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}/").parse().unwrap(), accepted)
    }

    fn pool(target: &Uri, max_idle: usize, idle_timeout: Duration) -> Pool {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Pool::new(connector, target.clone(), max_idle, idle_timeout)
    }

    fn get(target: &Uri, path: &str) -> Request<ProxyBody> {
        let mut req = Request::new(full(Bytes::new()));
        *req.uri_mut() = format!("{target}{}", path.trim_start_matches('/'))
            .parse()
            .unwrap();
        req.headers_mut().insert(
            http::header::HOST,
            target.authority().unwrap().as_str().parse().unwrap(),
        );
        req
    }

    async fn read(pool: &Pool, target: &Uri, path: &str) -> Bytes {
        let response = pool.request(get(target, path)).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (target, accepted) = backend().await;
        let pool = pool(&target, 8, Duration::from_secs(30));
        for _ in 0..5 {
            assert_eq!(read(&pool, &target, "/").await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_max_idle() {
        let (target, accepted) = backend().await;
        let pool = pool(&target, 2, Duration::from_secs(30));
        // Hold four responses unread at once: each needs its own connection.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.request(get(&target, "/")).await.unwrap());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        for response in held {
            response.into_body().collect().await.unwrap();
        }
        assert_eq!(pool.idle_count(), 2, "back as soon as each body was read");
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_does_not_return_its_connection() {
        let (target, accepted) = backend().await;
        let pool = pool(&target, 8, Duration::from_secs(30));
        let response = pool.request(get(&target, "/big")).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < 1 << 20));
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a new connection for the next request"
        );
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_used_again() {
        let (target, accepted) = backend().await;
        let pool = pool(&target, 8, Duration::from_secs(30));
        assert_eq!(read(&pool, &target, "/close").await, "ok");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_after_the_idle_timeout() {
        let (target, accepted) = backend().await;
        let pool = pool(&target, 8, Duration::from_secs(10));
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(pool.idle_count(), 1);
        tokio::time::advance(Duration::from_secs(16)).await;
        // The sweeper (every 5 s) has run by now.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle_count(), 0, "swept");
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let pool = pool(&target, 8, Duration::from_secs(30));
        let err = pool.request(get(&target, "/")).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert!(crate::error::error_chain(&err).contains("onnect"), "{err}");
    }

    #[tokio::test]
    async fn a_backend_that_closes_idle_connections_never_fails_a_request() {
        // A backend that answers one request per connection and then closes it without saying
        // so (no `Connection: close`), as a backend whose keep-alive timer fired does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropped: closed.
            }
        });
        let pool = pool(&target, 8, Duration::from_secs(30));
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(read(&pool, &target, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
