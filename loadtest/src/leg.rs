//! The HTTP leg a [`Target`](crate::client::Target) sends on.
//!
//! - **HTTP/1.1** (the default): the sidecar library's own pooled client leg
//!   (`mcp_sidecar::upstream::build_client`), one request per kept-alive connection at a time, up
//!   to the run's connection count.
//! - **HTTP/2** (`--http2`): hyper-util's client over the same TLS settings
//!   (`mcp_sidecar::upstream::tls_config`): ALPN `h2` for `https://`, prior knowledge (h2c) for
//!   `http://`. Every request of a run is a stream of one connection, as an HTTP/2 client keeps
//!   it; the server's `SETTINGS_MAX_CONCURRENT_STREAMS` bounds what is in flight, and requests
//!   past it wait (counted in their latency, as a real client's would be).
//!
//! The sidecar's own pool speaks HTTP/1.1 only (towards backends it keeps one request per
//! connection on purpose), so HTTP/2 here is hyper's, not a second hand-written codec.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_sidecar::body::ProxyBody;
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::upstream::{Pool, PoolError, PooledBody, build_client, tls_config};

/// Which HTTP version a target is spoken to in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 on the sidecar library's pool.
    #[default]
    Http1,
    /// HTTP/2 on hyper's client.
    Http2,
}

/// A pooled client of either version.
#[derive(Debug, Clone)]
pub(crate) enum Leg {
    Http1(Pool),
    // Boxed: hyper's client is ~40 times the pool's handle, and targets are cloned per worker.
    Http2(Box<Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>>),
}

/// Why an exchange failed, in the classes the report counts; the text says what happened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LegError {
    /// No connection (refused, unreachable, TLS or HTTP/2 handshake failed): nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed once the request was on its way.
    #[error("the connection failed: {0}")]
    Reset(String),
    /// The response head did not come in time.
    #[error("no response in time")]
    Timeout,
}

/// `e` and its sources, `: `-separated (what `connection refused` hides behind).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A response body of either leg.
#[derive(Debug)]
pub(crate) enum LegBody {
    /// From the HTTP/1.1 pool.
    Http1(PooledBody),
    /// From an HTTP/2 stream.
    Http2(Incoming),
}

/// A body's failure (the stream broke off).
pub(crate) type LegBodyError = Box<dyn std::error::Error + Send + Sync>;

impl Leg {
    /// A client for `origin` (`scheme://authority`) with `config`'s TLS and connect settings,
    /// keeping at most `config.pool_max_idle` idle HTTP/1.1 connections.
    pub(crate) fn new(
        version: Version,
        config: &UpstreamConfig,
        origin: http::Uri,
    ) -> anyhow::Result<Self> {
        match version {
            Version::Http1 => Ok(Self::Http1(
                build_client(config, origin).map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            Version::Http2 => {
                let mut http = HttpConnector::new();
                // Nagle's algorithm would hold small frames back by up to 40 ms.
                http.set_nodelay(true);
                http.set_connect_timeout(Some(config.connect_timeout));
                http.enforce_http(false);
                let tls = tls_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http2()
                    .wrap_connector(http);
                let client = Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .pool_idle_timeout(IDLE_TIMEOUT)
                    .build(connector);
                Ok(Self::Http2(Box::new(client)))
            }
        }
    }

    /// Sends `req`; the response head or the failure's class.
    pub(crate) async fn request(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<LegBody>, LegError> {
        match self {
            Self::Http1(pool) => match pool.request(req).await {
                Ok(r) => Ok(r.map(LegBody::Http1)),
                Err(PoolError::Timeout) => Err(LegError::Timeout),
                Err(e @ PoolError::Connect(_)) => Err(LegError::Connect(chain(&e))),
                Err(e) => Err(LegError::Reset(chain(&e))),
            },
            Self::Http2(client) => match client.request(req).await {
                Ok(r) => Ok(r.map(LegBody::Http2)),
                Err(e) if e.is_connect() => Err(LegError::Connect(chain(&e))),
                Err(e) => Err(LegError::Reset(chain(&e))),
            },
        }
    }
}

/// How long an HTTP/2 connection with no stream is kept: the same minute the HTTP/1.1 pool
/// keeps an idle connection for (`Target::new`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Body for LegBody {
    type Data = Bytes;
    type Error = LegBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Http1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(b) => b.is_end_stream(),
            Self::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http1(b) => b.size_hint(),
            Self::Http2(b) => b.size_hint(),
        }
    }
}
