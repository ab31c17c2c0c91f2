//! Readiness: a background task per upstream checks it every `health_interval`, and `/readyz`
//! reads the last results (a probe never waits on a backend).
//!
//! The check is `[upstream.health_check] kind`: `tcp` (the default: a TCP connection opens),
//! `mcp_ping` (a JSON-RPC `ping` POSTed to the MCP endpoint gets an answer below 500) or `http`
//! (a GET of `path` answers 2xx). A passing `mcp_ping`/`http` check also counts as a probe
//! success for the upstream's half-open circuit breaker, so it closes without waiting for clients.
//!
//! The sidecar is ready when it is not shutting down and every upstream passed its last check.
//! Before the first check completes an upstream is `unknown`, which counts as not ready.
//! `mcp_sidecar_ready` and `mcp_sidecar_shutting_down` read the same state at each scrape.
//!
//! A check that could not be made because the sidecar itself is out of descriptors, buffers or
//! ports (`crate::local_resources`) says nothing about the backend: it is counted as such and
//! changes neither the upstream's state nor its health metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use http::{Method, Request, Uri, header};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Registry};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::body::{ProxyBody, full};
use crate::config::HealthCheckKind;
use crate::local_resources::LocalResource;
use crate::metrics::{self, Metrics};
use crate::redis_conn::RedisConn;
use crate::resilience::Resilience;
use crate::upstream::Upstream;

/// The `ping` an `mcp_ping` check sends. Its id cannot collide with a client's: the check has
/// no session and its answer goes nowhere but here.
const PING_BODY: &str = r#"{"jsonrpc":"2.0","id":"mcp-sidecar-health","method":"ping"}"#;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Shared readiness state. The upstreams' list is replaced by a config reload
/// ([`Readiness::replace`]); the shutdown flag outlives every reload.
#[derive(Debug)]
pub struct Readiness {
    shutting_down: AtomicBool,
    upstreams: ArcSwap<Vec<Arc<UpstreamHealth>>>,
    /// Shown in `/readyz`, not part of readiness (see [`RedisConn::report`]).
    redis: std::sync::OnceLock<Arc<RedisConn>>,
}

#[derive(Debug)]
struct UpstreamHealth {
    name: Arc<str>,
    /// What was checked: the backend's URL and the check, so a reload that changes either
    /// starts the upstream over at `unknown`.
    target: (String, HealthCheckKind, Option<String>),
    check: &'static str,
    state: AtomicU8,
    last_error: std::sync::Mutex<Option<String>>,
}

impl UpstreamHealth {
    fn new(u: &Upstream) -> Self {
        Self {
            name: u.name.clone(),
            target: target_of(u),
            check: match u.config.health_check.kind {
                HealthCheckKind::Tcp => "tcp",
                HealthCheckKind::McpPing => "mcp_ping",
                HealthCheckKind::Http => "http",
            },
            state: AtomicU8::new(UNKNOWN),
            last_error: std::sync::Mutex::new(None),
        }
    }
}

fn target_of(u: &Upstream) -> (String, HealthCheckKind, Option<String>) {
    let hc = &u.config.health_check;
    (u.config.url.clone(), hc.kind, hc.path.clone())
}

impl Readiness {
    /// State for these upstreams, all `unknown`.
    pub fn new(upstreams: &[Arc<Upstream>]) -> Arc<Self> {
        Arc::new(Self {
            shutting_down: AtomicBool::new(false),
            upstreams: ArcSwap::from_pointee(
                upstreams
                    .iter()
                    .map(|u| Arc::new(UpstreamHealth::new(u)))
                    .collect(),
            ),
            redis: std::sync::OnceLock::new(),
        })
    }

    /// Shows the `[redis]` connection's state in `/readyz` (once; later calls are ignored).
    pub fn set_redis(&self, redis: Arc<RedisConn>) {
        let _ = self.redis.set(redis);
    }

    /// After a config reload: state for these upstreams. One with the same name, URL and check
    /// as before keeps its state (`/readyz` does not flap to `unknown` for a reload that did not
    /// touch it); a new or changed one starts `unknown`, and a removed one is forgotten.
    pub fn replace(&self, upstreams: &[Arc<Upstream>]) {
        let old = self.upstreams.load_full();
        let next = upstreams
            .iter()
            .map(|u| {
                old.iter()
                    .find(|h| h.name == u.name && h.target == target_of(u))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(UpstreamHealth::new(u)))
            })
            .collect();
        self.upstreams.store(Arc::new(next));
    }

    fn entry(&self, name: &str) -> Option<Arc<UpstreamHealth>> {
        self.upstreams
            .load()
            .iter()
            .find(|h| &*h.name == name)
            .cloned()
    }

    /// Marks the start of shutdown: readiness fails from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether the sidecar can serve.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down()
            && self
                .upstreams
                .load()
                .iter()
                .all(|u| u.state.load(Ordering::SeqCst) == UP)
    }

    /// Each component's state, for the `/readyz` body.
    pub fn report(&self) -> Value {
        let upstreams: serde_json::Map<String, Value> = self
            .upstreams
            .load()
            .iter()
            .map(|u| {
                let state = match u.state.load(Ordering::SeqCst) {
                    UP => "up",
                    DOWN => "down",
                    _ => "unknown",
                };
                let mut entry = json!({ "state": state, "check": u.check });
                if let Ok(err) = u.last_error.lock()
                    && let Some(err) = err.as_ref()
                {
                    entry["error"] = Value::String(err.clone());
                }
                (u.name.to_string(), entry)
            })
            .collect();
        let mut report = json!({
            "ready": self.is_ready(),
            "shutting_down": self.is_shutting_down(),
            "upstreams": upstreams,
        });
        if let Some(redis) = self.redis.get() {
            report["redis"] = redis.report();
        }
        report
    }

    /// Registers `mcp_sidecar_ready` (1 while `/readyz` answers 200) and
    /// `mcp_sidecar_shutting_down` into `registry`, read from this state at each scrape.
    pub fn register(self: &Arc<Self>, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(ReadinessCollector {
            readiness: self.clone(),
            ready: IntGauge::new(
                "mcp_sidecar_ready",
                "1 while /readyz answers 200 (every upstream passed its last check, no shutdown).",
            )?,
            shutting_down: IntGauge::new(
                "mcp_sidecar_shutting_down",
                "1 once shutdown has begun (readiness fails, open streams drain).",
            )?,
        }))
    }
}

impl UpstreamHealth {
    fn record(&self, result: Result<(), String>) {
        let u = self;
        let was = u
            .state
            .swap(if result.is_ok() { UP } else { DOWN }, Ordering::SeqCst);
        match (&result, was) {
            (Ok(()), UP) | (Err(_), DOWN) => {}
            (Ok(()), _) => tracing::info!(upstream = %u.name, "upstream reachable"),
            (Err(e), _) => tracing::warn!(upstream = %u.name, error = %e, "upstream unreachable"),
        }
        if let Ok(mut slot) = u.last_error.lock() {
            *slot = result.err();
        }
    }
}

/// The readiness gauges, set from [`Readiness`] when scraped: nothing to keep in step.
#[derive(Debug)]
struct ReadinessCollector {
    readiness: Arc<Readiness>,
    ready: IntGauge,
    shutting_down: IntGauge,
}

impl Collector for ReadinessCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.ready.desc();
        descs.extend(self.shutting_down.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.ready.set(i64::from(self.readiness.is_ready()));
        self.shutting_down
            .set(i64::from(self.readiness.is_shutting_down()));
        let mut families = self.ready.collect();
        families.extend(self.shutting_down.collect());
        families
    }
}

/// Spawns one check loop per upstream; they stop when `cancel` fires. Passing active checks are
/// reported to `resilience` (half-open breakers).
pub fn spawn_checks(
    readiness: Arc<Readiness>,
    upstreams: &[Arc<Upstream>],
    metrics: Metrics,
    resilience: Option<Arc<Resilience>>,
    cancel: CancellationToken,
) {
    for upstream in upstreams {
        // The entry, not an index: a check still running when a reload replaced the list
        // records into the entry it was started for, never into another upstream's.
        let Some(entry) = readiness.entry(&upstream.name) else {
            continue;
        };
        let upstream = upstream.clone();
        let metrics = metrics.clone();
        let resilience = resilience.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(upstream.config.health_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let kind = upstream.config.health_check.kind;
                let checked = async {
                    match kind {
                        HealthCheckKind::Tcp => check(&upstream).await,
                        HealthCheckKind::McpPing | HealthCheckKind::Http => {
                            active_check(&upstream).await
                        }
                    }
                };
                // A check cut short by the cancel records nothing: after a reload, the
                // upstream's series and state belong to the new generation's checks.
                let result = tokio::select! {
                    _ = cancel.cancelled() => return,
                    result = checked => result,
                };
                let result = match result {
                    Err(Failed::Local(resource)) => {
                        metrics
                            .local_resource_errors
                            .with_label_values(&[resource.label(), metrics::OP_CONNECT])
                            .inc();
                        // At most one line per interval per upstream already.
                        tracing::warn!(
                            upstream = %upstream.name,
                            "health check not made: {}", resource.describe()
                        );
                        continue;
                    }
                    Err(Failed::Backend(e)) => Err(e),
                    Ok(()) => Ok(()),
                };
                metrics
                    .upstream_up
                    .with_label_values(&[&upstream.name])
                    .set(i64::from(result.is_ok()));
                if let Some(r) = &resilience {
                    let label = if result.is_ok() { "ok" } else { "fail" };
                    r.metrics()
                        .health_checks
                        .with_label_values(&[&upstream.name, label])
                        .inc();
                    if result.is_ok() && kind != HealthCheckKind::Tcp {
                        r.health_ok(&upstream.name);
                    }
                }
                entry.record(result);
            }
        });
    }
}

/// Why a check failed.
#[derive(Debug)]
enum Failed {
    /// The backend failed it (the message for `/readyz`).
    Backend(String),
    /// The sidecar could not make it: out of descriptors, buffers or ports.
    Local(LocalResource),
}

impl From<String> for Failed {
    fn from(message: String) -> Self {
        Self::Backend(message)
    }
}

/// One check: can a TCP connection be opened to the upstream within its connect timeout?
async fn check(upstream: &Upstream) -> Result<(), Failed> {
    let host = upstream
        .url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = upstream.url.port_or_known_default().unwrap_or(80);
    let timeout: Duration = upstream.config.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(match LocalResource::of_io(&e) {
            Some(resource) => Failed::Local(resource),
            None => Failed::Backend(format!("connect {host}:{port}: {e}")),
        }),
        Err(_) => Err(Failed::Backend(format!(
            "connect {host}:{port}: timed out after {timeout:?}"
        ))),
    }
}

/// One `mcp_ping` or `http` check through the upstream's pooled client, bounded by
/// `health_check.timeout`.
async fn active_check(upstream: &Upstream) -> Result<(), Failed> {
    let hc = &upstream.config.health_check;
    let (method, uri, body, what): (_, Uri, ProxyBody, _) = match hc.kind {
        HealthCheckKind::Http => {
            let path = hc.path.as_deref().unwrap_or("/");
            let uri = Uri::builder()
                .scheme(upstream.url.scheme())
                .authority(upstream.authority.as_bytes())
                .path_and_query(path)
                .build()
                .map_err(|e| format!("health_check.path `{path}`: {e}"))?;
            (Method::GET, uri, full(bytes::Bytes::new()), "GET")
        }
        HealthCheckKind::McpPing | HealthCheckKind::Tcp => {
            let uri: Uri = upstream
                .url
                .as_str()
                .parse()
                .map_err(|e| format!("url: {e}"))?;
            (Method::POST, uri, full(PING_BODY), "ping")
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(header::HOST, upstream.authority.clone());
    if hc.kind == HealthCheckKind::McpPing {
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            http::HeaderValue::from_static("application/json, text/event-stream"),
        );
    }
    let status = match tokio::time::timeout(hc.timeout, upstream.client.request(req)).await {
        Ok(Ok(resp)) => resp.status(),
        Ok(Err(e)) => {
            if let Some(resource) = e.is_connect().then(|| LocalResource::find(&e)).flatten() {
                return Err(Failed::Local(resource));
            }
            return Err(format!("{what}: {}", crate::error::error_chain(&e)).into());
        }
        Err(_) => return Err(format!("{what}: no answer within {:?}", hc.timeout).into()),
    };
    // A server that requires a session answers a session-less ping with 400 or 404: it is up and
    // parsing requests. Only 5xx means it cannot serve.
    let ok = match hc.kind {
        HealthCheckKind::Http => status.is_success(),
        _ => !status.is_server_error(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: status {status}").into())
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use crate::upstream::Pool;

    fn upstream(errno: i32, metrics: &Metrics) -> Arc<Upstream> {
        let mut config = UpstreamConfig::new("u", "http://127.0.0.1:9/mcp", None);
        config.health_check.kind = HealthCheckKind::McpPing;
        let mut upstream = Upstream::from_config(&config, metrics).unwrap();
        upstream.client = Pool::failing("http://127.0.0.1:9/".parse().unwrap(), errno);
        Arc::new(upstream)
    }

    async fn run_one_check(errno: i32) -> (Arc<Readiness>, Metrics) {
        let metrics = Metrics::new().unwrap();
        let upstreams = [upstream(errno, &metrics)];
        let readiness = Readiness::new(&upstreams);
        let cancel = CancellationToken::new();
        spawn_checks(
            readiness.clone(),
            &upstreams,
            metrics.clone(),
            None,
            cancel.clone(),
        );
        // The first tick is at once; the check fails at once.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        (readiness, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_the_sidecar_could_not_make_leaves_the_upstream_as_it_was() {
        let emfile = LocalResource::Emfile.to_io_error().raw_os_error().unwrap();
        let (readiness, metrics) = run_one_check(emfile).await;
        assert_eq!(readiness.report()["upstreams"]["u"]["state"], "unknown");
        let counted = metrics
            .local_resource_errors
            .with_label_values(&["emfile", metrics::OP_CONNECT])
            .get();
        assert_eq!(counted, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_check_marks_the_upstream_down() {
        let refused = rustix::io::Errno::CONNREFUSED.raw_os_error();
        let (readiness, _) = run_one_check(refused).await;
        assert_eq!(readiness.report()["upstreams"]["u"]["state"], "down");
    }
}
