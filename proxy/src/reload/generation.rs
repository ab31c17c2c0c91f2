//! One generation of the running config: the [`Proxy`] built from it and the stateful parts a
//! later reload takes over ([`Generation::build`]), and [`Live`], the handle every connection
//! serves through (one atomic load per request picks the generation the request runs on).

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use prometheus::IntCounterVec;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::body::{BodyReadLimits, BoxError, ProxyBody};
use crate::codec::request::HeadError;
use crate::config::{Config, ConfigView};
use crate::conn_info::ConnInfo;
use crate::cors::Cors;
use crate::downstream::Handler;
use crate::error::StartError;
use crate::forward::Proxy;
use crate::health::{self, Readiness};
use crate::job_api::JobApi;
use crate::jobs::Jobs;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::resilience::Resilience;
use crate::tasks::Tasks;
use crate::upstream::{Router, Upstream};

/// What every generation shares: built once at start, never replaced by a reload.
#[derive(Debug)]
pub struct Shared {
    /// The sidecar's metrics registry and request series.
    pub metrics: Metrics,
    /// Readiness (its upstream list follows each generation: [`Readiness::replace`]).
    pub readiness: Arc<Readiness>,
    /// The job engine and its store: never rebuilt by a reload.
    pub jobs: Option<Jobs>,
    /// `mcp_sidecar_cors_preflights_total`, registered once for every generation's policy.
    pub cors_preflights: IntCounterVec,
    /// Parent of every generation's background tasks; cancelled when the sidecar stops.
    pub background: CancellationToken,
    /// The span exporter (`[tracing]`; `None` when off): set at start, like its export task.
    pub tracing: Option<Arc<crate::trace::Tracing>>,
    /// The `[redis]` connection: one per process, kept across reloads.
    pub redis: Option<Arc<crate::redis_conn::RedisConn>>,
}

/// A config and everything built from it that requests use.
pub struct Generation {
    /// The request path over this config.
    pub proxy: Proxy,
    /// The config, as validated.
    pub config: Config,
    /// Its redacted view and hash (`GET /config`, `mcp_sidecar_config_info`).
    pub view: Arc<ConfigView>,
    /// The upstreams, in config order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Breakers, timeouts and retries.
    pub resilience: Arc<Resilience>,
    /// Caps and rate limits.
    pub limits: Arc<Limits>,
    /// Authentication and authorization.
    pub auth: Arc<Auth>,
    /// The TLS acceptor (certificate and key read when the generation was built).
    pub tls: Option<TlsAcceptor>,
    /// Stops this generation's background tasks (limits sweeper, health checks).
    background: CancellationToken,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("hash", &self.view.hash)
            .field("upstreams", &self.upstreams.len())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// Builds the generation of a validated `config`. With `previous` (a reload) the stateful
    /// parts are taken over from it where their settings did not change: upstream connection
    /// pools, in-flight counters and rate-limit buckets, JWKS key stores, breakers and retry
    /// budgets (see [`Upstream::rebuilt`], [`Limits::rebuilt`], [`Auth::rebuilt`],
    /// [`Resilience::rebuilt`]). Building changes nothing `previous` serves with;
    /// [`Generation::start`] puts the new one to work.
    pub async fn build(
        config: Config,
        shared: &Shared,
        previous: Option<&Generation>,
    ) -> Result<Self, StartError> {
        let metrics = &shared.metrics;
        let view = Arc::new(config.view()?);
        let cors = Cors::with_metric(&config.cors, Some(&shared.cors_preflights));
        let tls = config
            .listen
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?;
        let upstreams = config
            .upstream
            .iter()
            .map(|u| {
                let before = previous.and_then(|p| p.upstream(&u.name));
                Upstream::rebuilt(u, metrics, before).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits = Arc::new(match previous {
            Some(p) => Limits::rebuilt(&config, &p.limits, &p.config, shared.redis.clone())?,
            None => Limits::new(&config, metrics.registry(), shared.redis.clone())?,
        });
        // The last two steps set series of what they build new (a JWKS store's key count, a
        // breaker's state): after every step that may still fail on a file, and in that order,
        // because nothing after the breakers may fail.
        let auth = Arc::new(match previous {
            Some(p) => Auth::rebuilt(&config, metrics, &p.auth).await?,
            None => Auth::new(&config, metrics).await?,
        });
        let resilience = Arc::new(match previous {
            Some(p) => Resilience::rebuilt(&upstreams, &p.resilience, &p.config),
            None => Resilience::new(&upstreams, metrics)?,
        });
        let router = Router::new(upstreams.clone());
        let jobs = shared.jobs.as_ref().map(|jobs| {
            JobApi::new(
                jobs.clone(),
                &config.jobs.path,
                router.clone(),
                Some(limits.clone()),
            )
        });
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
            .with_limits(limits.clone())
            .with_auth(auth.clone())
            .with_cors(cors)
            .with_jobs(jobs)
            .with_tasks(tasks)
            .with_tracing(shared.tracing.clone());
        Ok(Self {
            proxy,
            config,
            view,
            upstreams,
            resilience,
            limits,
            auth,
            tls,
            background: shared.background.child_token(),
        })
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|u| &*u.name == name)
            .map(|u| &**u)
    }

    /// Starts this generation's background tasks: the limits' sweep of idle keys and the
    /// health checks (into `readiness`, whose list must already be this generation's).
    pub fn start(&self, shared: &Shared) {
        self.limits.spawn_sweeper(self.background.clone());
        health::spawn_checks(
            shared.readiness.clone(),
            &self.upstreams,
            shared.metrics.clone(),
            Some(self.resilience.clone()),
            self.background.clone(),
        );
    }

    /// Stops this generation's background tasks (a newer one runs its own). Requests and
    /// streams still running on it are not touched.
    pub fn stop(&self) {
        self.background.cancel();
    }
}

/// The running generation, swapped whole by a reload. Connections serve through it: each
/// request loads the generation once, at its start, and runs on it to the end (so a request
/// or stream in flight finishes on the config it started with).
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Generation>,
}

impl Live {
    /// Serving `first`.
    pub fn new(first: Generation) -> Self {
        Self {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The generation new requests run on.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Makes `next` the generation new requests run on; the previous one is returned.
    pub(super) fn swap(&self, next: Arc<Generation>) -> Arc<Generation> {
        self.current.swap(next)
    }
}

impl Handler for Live {
    fn call<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        // One load and one reference count per request: the request owns its generation.
        let generation = self.current.load_full();
        async move { generation.proxy.serve(req, conn).await }
    }

    fn refuse(&self, err: HeadError) -> Response<ProxyBody> {
        Handler::refuse(&self.current.load().proxy, err)
    }

    fn max_body_bytes(&self) -> u64 {
        Handler::max_body_bytes(&self.current.load().proxy)
    }
}

/// Runs jobs' calls on the generation running when each call starts: a job queued before a
/// reload runs against the upstreams, credentials and breakers of the config after it.
#[derive(Debug)]
pub struct LiveRunner {
    /// The running generation.
    pub live: Arc<Live>,
    /// `jobs.max_result_bytes` (fixed: the job engine is never rebuilt).
    pub max_result_bytes: usize,
}

impl LiveRunner {
    fn runner(&self) -> crate::forward::JobRunner {
        self.live
            .current
            .load()
            .proxy
            .job_runner(self.max_result_bytes)
    }
}

impl crate::jobs::Runner for LiveRunner {
    fn run(
        &self,
        job: &crate::jobs::Job,
        progress: crate::jobs::ProgressSink,
    ) -> futures_util::future::BoxFuture<'static, crate::jobs::RunOutcome> {
        self.runner().run(job, progress)
    }

    fn cancel(
        &self,
        job: &crate::jobs::Job,
        reason: &str,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        self.runner().cancel(job, reason)
    }

    fn send(
        &self,
        job: &crate::jobs::Job,
        message: String,
    ) -> futures_util::future::BoxFuture<'static, Result<(), crate::error::ProxyError>> {
        self.runner().send(job, message)
    }
}
