//! The sidecar's lifecycle: bind both listeners, accept connections (plain or TLS), serve them
//! with the [`Proxy`], and shut down gracefully.
//!
//! Shutdown order: readiness turns 503 at once and the job engine stops taking jobs; the listener
//! keeps accepting for `shutdown.drain_delay` (load balancers and endpoint controllers need that
//! long to stop sending; a second signal cuts it short), then stops; in-flight requests and streams
//! get the grace period to finish, then whatever is left is closed (logged with the outcome
//! `shutdown`, not `client_gone`) and `serve` returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::accept_errors::{ACCEPT_ERROR_BACKOFF, AcceptErrors};
use crate::admin::Admin;
use crate::body::{BodyReadLimits, BoxError};
use crate::config::Config;
use crate::conn_info::ConnInfo;
use crate::downstream::body::READ_BUF_BYTES;
use crate::downstream::{self, drain, drain::Drain};
use crate::error::StartError;
use crate::forward::Proxy;
use crate::health::{self, Readiness};
use crate::job_api::JobApi;
use crate::jobs::{Jobs, Settings};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::redis_conn::RedisConn;
use crate::replay_io::ReplayIo;
use crate::resilience::Resilience;
use crate::tasks::Tasks;
use crate::upstream::{Router, Upstream};

/// A bound, not yet serving, sidecar.
pub struct Sidecar {
    proxy: Arc<Proxy>,
    admin: Admin,
    upstreams: Vec<Arc<Upstream>>,
    listener: TcpListener,
    admin_listener: TcpListener,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
    grace_period: Duration,
    drain_delay: Duration,
    max_result_bytes: usize,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("listener", &self.listener.local_addr().ok())
            .field("admin", &self.admin_listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Validates `config`, builds the upstream clients and binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let view = Arc::new(config.view()?);
        let metrics = Metrics::new()?;
        crate::build_info::register_info_metrics(metrics.registry(), &view.hash)?;
        let upstreams = config
            .upstream
            .iter()
            .map(|u| Upstream::from_config(u, &metrics).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let readiness = Readiness::new(&upstreams);
        readiness.register(metrics.registry())?;
        // The connection shared by the features that span replicas; nothing is dialled yet.
        let redis = config
            .redis
            .as_ref()
            .map(|c| RedisConn::new(c, metrics.registry()))
            .transpose()
            .map_err(|e| StartError::Redis(e.to_string()))?;
        if let Some(redis) = &redis {
            readiness.set_redis(redis.clone());
        }
        let resilience = Arc::new(Resilience::new(&upstreams, &metrics)?);
        let limits = Arc::new(Limits::new(&config, metrics.registry(), redis.clone())?);
        let tls = config
            .listen
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?;
        let listen_addr = config.listen_addr()?;
        let admin_addr = config.admin_addr()?;
        let listener = TcpListener::bind(listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                field: "listen.addr",
                addr: listen_addr,
                source,
            })?;
        let admin_listener =
            TcpListener::bind(admin_addr)
                .await
                .map_err(|source| StartError::Bind {
                    field: "admin.addr",
                    addr: admin_addr,
                    source,
                })?;
        let auth = Arc::new(crate::auth::Auth::new(&config, &metrics).await?);
        let cors = crate::cors::Cors::new(&config.cors, Some(metrics.registry()))?;
        let router = Router::new(upstreams.clone());
        let jobs = if config.jobs.enabled {
            // Opening reads and checks the whole file: off the runtime's threads.
            let jobs_config = config.jobs.clone();
            let store = tokio::task::spawn_blocking(move || Jobs::open_store(&jobs_config))
                .await
                .map_err(|e| StartError::Jobs(format!("opening the store: {e}")))?
                .map_err(|e| {
                    StartError::Jobs(format!(
                        "{e} (jobs.data_dir sets where the store lives; a damaged file is never \
                         replaced: move it away to start empty; jobs.store = \"memory\" or \
                         jobs.enabled = false run without a file)"
                    ))
                })?;
            let names = upstreams.iter().map(|u| u.name.to_string()).collect();
            let jobs = Jobs::new(
                store,
                Settings::from_config(&config.jobs, names),
                metrics.registry(),
            )?;
            // What the store holds from before a restart is taken up before anything is served:
            // an unreadable store stops the start.
            jobs.recover()
                .await
                .map_err(|e| StartError::Jobs(e.to_string()))?;
            Some(JobApi::new(
                jobs,
                &config.jobs.path,
                router.clone(),
                Some(limits.clone()),
            ))
        } else {
            None
        };
        // The MCP Tasks facade runs on the job engine.
        let tasks = jobs
            .as_ref()
            .map(|api| Tasks::new(api.clone(), router.upstreams(), config.jobs.result_ttl));
        let proxy = Proxy::new(router, metrics.clone(), config.listen.max_body_bytes)
            .with_body_read_limits(BodyReadLimits {
                idle: config.listen.body_read_timeout,
                min_rate: config.listen.body_min_rate,
            })
            .with_resilience(resilience.clone())
            .with_limits(limits)
            .with_auth(auth)
            .with_cors(cors)
            .with_jobs(jobs)
            .with_tasks(tasks);
        let jobs = proxy.jobs().map(|api| api.jobs().clone());
        Ok(Self {
            proxy: Arc::new(proxy),
            admin: Admin {
                metrics,
                readiness,
                resilience: Some(resilience),
                jobs,
                token: config
                    .admin
                    .token
                    .as_ref()
                    .map(|t| crate::admin::AdminToken::new(t.expose())),
                config: view,
            },
            upstreams,
            listener,
            admin_listener,
            tls,
            header_read_timeout: config.listen.header_read_timeout,
            grace_period: config.shutdown.grace_period,
            drain_delay: config.shutdown.drain_delay,
            max_result_bytes: config.jobs.max_result_bytes,
        })
    }

    /// The client listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains (see the module docs) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        self.serve_with(shutdown, std::future::pending()).await;
    }

    /// [`Sidecar::serve`], where `hurry` resolving during the drain delay cuts it short (a second
    /// SIGTERM or Ctrl-C: whoever sends it wants the process gone, not the load balancer served).
    pub async fn serve_with(
        self,
        shutdown: impl Future<Output = ()> + Send,
        hurry: impl Future<Output = ()> + Send,
    ) {
        let background = CancellationToken::new();
        let readiness = self.admin.readiness.clone();
        if let Some(limits) = self.proxy.limits() {
            limits.spawn_sweeper(background.clone());
        }
        let jobs = self.admin.jobs.clone();
        if let Some(jobs) = &jobs {
            jobs.start(Arc::new(self.proxy.job_runner(self.max_result_bytes)));
        }
        health::spawn_checks(
            readiness.clone(),
            &self.upstreams,
            self.admin.metrics.clone(),
            self.admin.resilience.clone(),
            background.clone(),
        );
        tokio::spawn(
            self.admin
                .clone()
                .serve(self.admin_listener, background.clone()),
        );

        let closing = Arc::new(AtomicBool::new(false));
        let protocols = Protocols::new(closing.clone());
        // HTTP/2 connections are hyper's and drain through its graceful shutdown; HTTP/1 ones
        // are the sidecar's own and drain through `downstream::drain`.
        let graceful = GracefulShutdown::new();
        let drain = Drain::new();
        let mut connections = JoinSet::new();
        let listener = self.listener;
        let accept_errors = AcceptErrors::new("listen", &self.admin.metrics);
        let grace_period = self.grace_period;
        let drain_delay = self.drain_delay;
        // Running jobs get the grace period from the signal on: a job taken now would almost
        // surely be interrupted, so submissions are refused at once (503 with Retry-After, which
        // a client retries on another instance) while plain requests are still served.
        let mut jobs_drained = None;
        let stop = async {
            shutdown.await;
            readiness.begin_shutdown();
            if let Some(jobs) = jobs.clone() {
                jobs_drained = Some(tokio::spawn(async move { jobs.drain(grace_period).await }));
            }
            if drain_delay.is_zero() {
                return;
            }
            tracing::info!(
                ?drain_delay,
                ?grace_period,
                "shutting down: readiness off; still accepting for the drain delay (signal again to skip it)"
            );
            tokio::select! {
                _ = tokio::time::sleep(drain_delay) => {}
                _ = hurry => tracing::info!("second signal: drain delay cut short"),
            }
        };
        {
            tokio::pin!(stop);
            loop {
                let (stream, remote) = tokio::select! {
                    _ = &mut stop => break,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            accept_errors.record(&e);
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                            continue;
                        }
                    },
                };
                // Reap finished connection tasks so the set stays as large as the open connections.
                while connections.try_join_next().is_some() {}
                let _ = stream.set_nodelay(true);
                // Standing streams have no idle timeout: a client that vanished is found by probes.
                if let Err(e) = crate::tcp_keepalive::enable(&stream) {
                    tracing::debug!(%remote, error = %e, "cannot enable TCP keepalive");
                }
                connections.spawn(crate::observe::CLOSING.scope(
                    closing.clone(),
                    serve_connection(
                        stream,
                        remote,
                        self.tls.clone(),
                        self.header_read_timeout,
                        protocols.clone(),
                        self.proxy.clone(),
                        Watchers {
                            hyper: graceful.watcher(),
                            h1: drain.watch(),
                        },
                    ),
                ));
            }
        }

        tracing::info!(
            ?grace_period,
            "shutting down: listener closed, draining connections"
        );
        drop(listener);
        tokio::select! {
            _ = async { tokio::join!(graceful.shutdown(), drain.drain()) } => {
                tracing::info!("all connections drained");
            }
            _ = tokio::time::sleep(grace_period) => {
                tracing::warn!(open = connections.len(), "grace period over; closing remaining connections");
            }
        }
        closing.store(true, Ordering::Relaxed);
        if let Some(jobs_drained) = jobs_drained {
            let _ = jobs_drained.await;
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        background.cancel();
    }
}

/// hyper's HTTP/2 server, configured once. Plain connections that open with the h2c preface
/// and TLS connections that chose `h2` by ALPN are served by it; every other connection by the
/// sidecar's own HTTP/1 server ([`downstream`]).
#[derive(Clone)]
struct Protocols {
    http2: hyper::server::conn::http2::Builder<StreamExecutor>,
}

impl Protocols {
    fn new(closing: Arc<AtomicBool>) -> Self {
        let mut http2 = hyper::server::conn::http2::Builder::new(StreamExecutor { closing });
        http2.timer(TokioTimer::new());
        Self { http2 }
    }
}

/// hyper's HTTP/2 server runs each stream in a task of its own: spawned with
/// [`crate::observe::CLOSING`] set, so
/// a stream cut at the end of the grace period is logged as closed by the shutdown there too.
#[derive(Clone)]
struct StreamExecutor {
    closing: Arc<AtomicBool>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(crate::observe::CLOSING.scope(self.closing.clone(), fut));
    }
}

/// What tells a connection that shutdown began, and waits for it to end: hyper's for its HTTP/2
/// connections, the sidecar's own for HTTP/1.
struct Watchers {
    hyper: hyper_util::server::graceful::Watcher,
    h1: drain::Watch,
}

/// HTTP/2 with prior knowledge (h2c) opens with this preface (RFC 9113 §3.4); no HTTP/1
/// request does (a `PRI` request line has an origin-form target, not `*` with `HTTP/2.0`).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a plain connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    Http1,
    Http2,
}

/// Reads the start of a plain connection into `read` until it settles the protocol: HTTP/1 as
/// soon as a byte differs from the h2c preface, HTTP/2 once the whole preface is there. On
/// complete evidence, never on the first segment alone: the same bytes get the same parser
/// however TCP split them. `None`: the client closed first.
async fn read_protocol(
    stream: &mut TcpStream,
    read: &mut BytesMut,
) -> std::io::Result<Option<Plain>> {
    loop {
        let seen = read.len().min(H2_PREFACE.len());
        if read[..seen] != H2_PREFACE[..seen] {
            return Ok(Some(Plain::Http1));
        }
        if seen == H2_PREFACE.len() {
            return Ok(Some(Plain::Http2));
        }
        if stream.read_buf(read).await? == 0 {
            return Ok(None);
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    protocols: Protocols,
    proxy: Arc<Proxy>,
    watchers: Watchers,
) {
    let Watchers {
        hyper: watcher,
        h1: drain,
    } = watchers;
    let conn = ConnInfo::new(remote, tls.is_some());
    let hyper_service = |proxy: Arc<Proxy>, conn: ConnInfo| {
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(proxy.serve(req, conn).await) }
        })
    };
    let result: Result<(), BoxError> = match tls {
        None => {
            // What is read here is the start of the first request (or the preface), handed
            // to whichever leg serves the connection.
            let mut read = BytesMut::with_capacity(READ_BUF_BYTES);
            let protocol =
                tokio::time::timeout(handshake_timeout, read_protocol(&mut stream, &mut read))
                    .await;
            match protocol {
                Ok(Ok(Some(Plain::Http1))) => {
                    downstream::serve(stream, read, proxy, conn, handshake_timeout, drain).await;
                    Ok(())
                }
                Ok(Ok(Some(Plain::Http2))) => {
                    let io = TokioIo::new(ReplayIo::new(read.freeze(), stream));
                    watcher
                        .watch(
                            protocols
                                .http2
                                .serve_connection(io, hyper_service(proxy, conn)),
                        )
                        .await
                        .map_err(Into::into)
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    tracing::debug!(%remote, "connection closed before a request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, read = read.len(), "no request within the header read timeout: closing");
                    return;
                }
            }
        }
        Some(acceptor) => {
            let tls_stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            // The protocol was chosen during the handshake: no sniffing needed.
            if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let io = TokioIo::new(tls_stream);
                watcher
                    .watch(
                        protocols
                            .http2
                            .serve_connection(io, hyper_service(proxy, conn)),
                    )
                    .await
                    .map_err(Into::into)
            } else {
                let read = BytesMut::new();
                downstream::serve(tls_stream, read, proxy, conn, handshake_timeout, drain).await;
                Ok(())
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
