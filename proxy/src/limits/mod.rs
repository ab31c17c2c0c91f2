//! Rate limiting and overload protection. Three phases (the seam's call shape, state [`Held`];
//! where each runs is written once, in `forward`'s `dispatch`):
//!
//! 1. [`Limits::shed`], before the body is read: the global in-flight cap (503 + `Retry-After` at
//!    once, never a queue). Standalone streams (GET) are not requests in flight: they have their
//!    own global cap, checked here too. DELETE is counted but never shed.
//! 2. [`Limits::admit`], once the body is classified: the rate-limit rules, for JSON-RPC requests
//!    only (notifications, client responses, DELETE are never limited); the per-principal cap on
//!    standalone streams for GET. A `subscriptions/listen` request (a standing stream, known only
//!    then) trades its in-flight slot for a slot under both stream caps.
//! 3. [`Limits::reserve_upstream`], the last refusal before the upstream call: the upstream's
//!    in-flight cap. Notifications, client responses and DELETE are counted but never shed there
//!    either.
//!
//! [`Held::attach`] moves every permit into the response body, so a slot is held until the
//! response (an SSE stream included) has ended, and adds the `RateLimit` fields to admitted
//! responses.
//!
//! **Several rules**: the request is counted against every matching rule in config order; when
//! one refuses, the counts the rules before it took are given back (restored unless a concurrent
//! request changed that bucket in between: then the unit stays spent, rare and never in the
//! client's favour), so a refused request consumes nothing. The rules after the refusing one are
//! asked without counting, and the answer names the one that makes the client wait longest.
//! Shadow rules are decided alone, as if each were the only rule, and never affect the answer.
//!
//! **Global rules** (`scope = "global"`, `global.rs`): decided in Redis, shared by the replicas;
//! a sidecar with any calls [`Limits::admit_global`] (async, at most one round trip) instead of
//! [`Limits::admit`].
//!
//! **Batches** (protocol 2025-03-26): each request in the batch is one unit; a batch is admitted
//! or rejected whole. A batch with more requests than a rule's burst can never pass that rule.

mod client_ip;
mod clock;
mod evaluate;
mod global;
mod global_check;
mod inflight;
mod metrics;
mod reload;
mod rule;
mod store;

#[cfg(test)]
#[path = "limits_caps_tests.rs"]
mod caps_tests;
#[cfg(test)]
#[path = "limits_global_tests.rs"]
mod global_tests;
#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Response};
use http_body_util::BodyExt;
use prometheus::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use client_ip::{Cidr, CidrError, client_ip};
pub use clock::{TokioClock, TokioInstant};
pub use global::{Global, LOCAL_BUDGET_MAX_AGE};
pub use inflight::{HeldBody, InFlight, Permit, Permits};
pub use metrics::LimitMetrics;
pub use rule::{Decision, LimitKeyInput, Rule, RuleMetrics, ceil_secs};
pub use store::{CappedStore, Probe, SLOT_BYTES};

use crate::body::ProxyBody;
use crate::config::Config;
pub use crate::config::STREAMS_POLICY;
use crate::error::{ProxyError, Rejection, retry_after_secs};
use crate::exchange::{Exchange, Outcome, Policy, Step};
use crate::headers::{RATELIMIT, RATELIMIT_POLICY};
use crate::mcp::Classified;
use crate::principal::Principal;
use crate::rate_limited_log::{FLOOD_LOG_INTERVAL, RateLimitedLog};
use crate::redis_conn::RedisConn;
use crate::upstream::ByName;
use crate::upstream::Upstream;
use evaluate::header_value;
use inflight::PerKeyStreams;

/// Early sweeps (asked for when a rule meets its key cap) are at least this far apart, so a key
/// flood cannot turn the sweeper into a busy loop.
pub const MIN_EARLY_SWEEP_SPACING: Duration = Duration::from_secs(1);

/// What a request holds from the limits while it is served: the [`Policy::State`] of [`Limits`].
#[derive(Debug, Default)]
pub struct Held {
    permits: Permits,
    /// A standalone stream (GET): stream caps instead of in-flight caps.
    stream: bool,
    /// Counted but never shed (DELETE).
    exempt: bool,
    /// `RateLimit-Policy` and `RateLimit` for an admitted response.
    headers: Option<(HeaderValue, HeaderValue)>,
}

impl Held {
    /// Adds the `RateLimit` fields of an admitted request and moves the permits into the body,
    /// so they are given back when the response ends.
    pub fn attach(&mut self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        match self.take_for(response.headers_mut()) {
            Some(permits) => response.map(|body| HeldBody::new(body, permits).boxed_unsync()),
            None => response,
        }
    }

    /// [`Held::attach`] in two halves, for a caller that wraps the body itself (and so boxes it
    /// once): adds the `RateLimit` fields to `headers` and hands over the permits, if any.
    pub fn take_for(&mut self, headers: &mut http::HeaderMap) -> Option<Permits> {
        let held = std::mem::take(self);
        if let Some((policy, state)) = held.headers {
            headers.append(&RATELIMIT_POLICY, policy);
            headers.append(&RATELIMIT, state);
        }
        (!held.permits.is_empty()).then_some(held.permits)
    }
}

impl Policy for Limits {
    type State = Held;
}

#[derive(Debug)]
struct UpstreamLimits {
    in_flight: Arc<InFlight>,
    rules: Vec<Rule>,
}

/// The limits of one sidecar.
#[derive(Debug)]
pub struct Limits {
    global: Arc<InFlight>,
    streams: Arc<InFlight>,
    principal_streams: Option<Arc<PerKeyStreams>>,
    streams_policy: HeaderValue,
    shed_retry_after: Duration,
    trusted: Vec<Cidr>,
    rules: Vec<Rule>,
    upstreams: ByName<Arc<str>, UpstreamLimits>,
    hasher: RandomState,
    policy_cache: evaluate::PolicyCache,
    sweep_interval: Duration,
    sweep_early: Arc<Notify>,
    metrics: LimitMetrics,
    /// The connection of the global rules; `Some` only when the config has one.
    redis: Option<Arc<RedisConn>>,
    gcra: redis::Script,
    /// One line per interval while global rules fall back.
    fallback_log: RateLimitedLog,
}

impl Limits {
    /// Builds the limits of a validated config and registers their metrics into `registry`.
    /// `redis` is the `[redis]` connection, which the global rules (`scope = "global"`) use.
    pub fn new(
        config: &Config,
        registry: &Registry,
        redis: Option<Arc<RedisConn>>,
    ) -> Result<Self, crate::StartError> {
        let metrics = LimitMetrics::new()?;
        metrics.register(registry)?;
        Self::build(config, metrics, None, redis)
    }

    /// The limits of `config` on registered `metrics`; after a reload, keeping from `previous`
    /// what must survive it ([`reload::Previous`]: the counters in flight, unchanged rules'
    /// buckets, the key hasher).
    fn build(
        config: &Config,
        metrics: LimitMetrics,
        previous: Option<&reload::Previous<'_>>,
        redis: Option<Arc<RedisConn>>,
    ) -> Result<Self, crate::StartError> {
        let trusted = config
            .limits
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Cidr::parse(c).map_err(|e| {
                    crate::config::ConfigError::invalid(
                        format!("limits.trusted_proxies[{i}]"),
                        e.to_string(),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kept = previous.map(|p| p.limits);
        let sweep_early = kept.map_or_else(|| Arc::new(Notify::new()), |p| p.sweep_early.clone());
        let next_index = std::cell::Cell::new(0);
        let rule = |scope: Option<&str>, c: &crate::config::RateLimitRule| {
            let m = metrics.rule(&c.name, c.shadow);
            let index = next_index.replace(next_index.get() + 1);
            let rule = match previous.and_then(|p| p.store(scope, c)) {
                Some(store) => Rule::with_store(c, index, TokioClock, m, store),
                None => Rule::new(c, index, TokioClock, m, sweep_early.clone()),
            };
            match (&redis, c.scope) {
                (Some(conn), crate::config::Scope::Global) => {
                    let mode = c.redis_failure().as_str();
                    let fallback = metrics.fallback.with_label_values(&[&c.name, mode]);
                    rule.with_global(Global::new(c, conn, fallback))
                }
                _ => rule,
            }
        };
        let rules: Vec<Rule> = config.rate_limit.iter().map(|c| rule(None, c)).collect();
        let upstreams = config
            .upstream
            .iter()
            .map(|u| {
                let in_flight = kept
                    .and_then(|p| p.upstreams.get(u.name.as_str()))
                    .map(|p| p.in_flight.clone())
                    .unwrap_or_else(|| {
                        let gauge = metrics.upstream_in_flight.with_label_values(&[&u.name]);
                        InFlight::new(u.max_in_flight, gauge)
                    });
                let limits = UpstreamLimits {
                    in_flight,
                    rules: u
                        .rate_limit
                        .iter()
                        .map(|c| rule(Some(&u.name), c))
                        .collect(),
                };
                (Arc::from(u.name.as_str()), limits)
            })
            .collect::<ByName<_, UpstreamLimits>>();
        let any_global = rules
            .iter()
            .chain(upstreams.values().flat_map(|u| &u.rules))
            .any(|r| r.global.is_some());
        let per_principal = config.limits.max_streams_per_principal;
        let streams_policy =
            format!("\"{STREAMS_POLICY}\";q={per_principal};qu=\"concurrent-requests\"");
        Ok(Self {
            global: kept.map_or_else(
                || InFlight::new(config.limits.max_in_flight, metrics.in_flight.clone()),
                |p| p.global.clone(),
            ),
            streams: kept.map_or_else(
                || InFlight::new(config.limits.max_streams, metrics.streams_open.clone()),
                |p| p.streams.clone(),
            ),
            principal_streams: (per_principal > 0).then(|| {
                kept.and_then(|p| p.principal_streams.clone())
                    .unwrap_or_else(|| PerKeyStreams::new(per_principal))
            }),
            streams_policy: HeaderValue::from_str(&streams_policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"streams-per-principal\"")),
            shed_retry_after: config.limits.shed_retry_after,
            trusted,
            rules,
            upstreams,
            // Rule keys are digests under this hasher: a new one would orphan every bucket.
            hasher: kept.map_or_else(RandomState::new, |p| p.hasher.clone()),
            policy_cache: evaluate::PolicyCache::default(),
            sweep_interval: config.limits.sweep_interval,
            sweep_early,
            metrics,
            redis: redis.filter(|_| any_global),
            gcra: global::gcra_script(),
            fallback_log: RateLimitedLog::new(FLOOD_LOG_INTERVAL),
        })
    }

    /// Whether some rule is global: then the request path calls [`Limits::admit_global`]
    /// instead of [`Limits::admit`].
    #[inline]
    pub fn has_global_rules(&self) -> bool {
        self.redis.is_some()
    }

    /// Phase 1, right after routing: the global in-flight cap (or the global stream cap for a
    /// standalone stream). Refuses at once, before the body is read.
    #[inline]
    pub fn shed(&self, ex: &mut Exchange, held: &mut Held) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        self.shed_request(upstream, &ex.head.method, held)?;
        Ok(Step::Next)
    }

    /// Phase 2, right after classification: rate-limit rules for JSON-RPC requests, the
    /// per-principal stream cap for standalone streams.
    #[inline]
    pub fn admit(&self, ex: &mut Exchange, held: &mut Held) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        self.admit_request(
            upstream,
            &ex.head.headers,
            ex.conn.remote.ip(),
            ex.principal.as_deref(),
            ex.classified.as_ref(),
            held,
        )?;
        Ok(Step::Next)
    }

    /// [`Limits::admit`] for a sidecar with global rules: the same decisions, with at most one
    /// Redis round trip (bounded by `redis.command_timeout` and the Redis breaker).
    pub async fn admit_global(&self, ex: &mut Exchange, held: &mut Held) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        let who = LimitKeyInput {
            principal: ex.principal.as_deref(),
            client_ip: client_ip(ex.conn.remote.ip(), &ex.head.headers, &self.trusted),
        };
        let Some(upstream_rules) =
            self.admit_prelude(upstream, &who, ex.classified.as_ref(), held)?
        else {
            return Ok(Step::Next);
        };
        let Some(classified) = ex.classified.as_ref() else {
            return Ok(Step::Next);
        };
        match &self.redis {
            Some(redis) => {
                self.check_rules_global(redis, classified, &who, upstream_rules, held)
                    .await?
            }
            None => self.check_rules(classified, &who, upstream_rules, held)?,
        }
        Ok(Step::Next)
    }

    /// Phase 3, right before the upstream call: the upstream's in-flight cap.
    #[inline]
    pub fn reserve_upstream(&self, ex: &mut Exchange, held: &mut Held) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        self.reserve_upstream_slot(upstream, ex.classified.as_ref(), held)?;
        Ok(Step::Next)
    }

    /// [`Limits::shed`] for a routed request.
    pub fn shed_request(
        &self,
        upstream: &Upstream,
        method: &Method,
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        let (cap, scope) = match *method {
            Method::GET => {
                held.stream = true;
                (&self.streams, "streams")
            }
            Method::DELETE => {
                held.exempt = true;
                held.permits.global = Some(self.global.acquire_anyway());
                return Ok(());
            }
            _ => (&self.global, "global"),
        };
        held.permits.global = Some(
            cap.try_acquire()
                .ok_or_else(|| self.overloaded(upstream, scope))?,
        );
        Ok(())
    }

    /// The client's address: the peer, or the address a trusted proxy forwarded for
    /// (`limits.trusted_proxies`), as the rate limits see it.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.trusted)
    }

    /// [`Limits::admit`] for a routed request from `peer` (the client IP is found behind
    /// trusted proxies).
    pub fn admit_request(
        &self,
        upstream: &Upstream,
        headers: &http::HeaderMap,
        peer: IpAddr,
        principal: Option<&Principal>,
        classified: Option<&Classified>,
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        let who = LimitKeyInput {
            principal,
            client_ip: client_ip(peer, headers, &self.trusted),
        };
        match (
            self.admit_prelude(upstream, &who, classified, held)?,
            classified,
        ) {
            (Some(upstream_rules), Some(classified)) => {
                self.check_rules(classified, &who, upstream_rules, held)
            }
            _ => Ok(()),
        }
    }

    /// What comes before the rate-limit rules: the per-principal stream cap for a standing
    /// stream. Returns the upstream's rules when the request goes on to the rules.
    fn admit_prelude(
        &self,
        upstream: &Upstream,
        who: &LimitKeyInput<'_>,
        classified: Option<&Classified>,
        held: &mut Held,
    ) -> Result<Option<&[Rule]>, ProxyError> {
        if held.stream {
            self.admit_stream(who, held)?;
            return Ok(None);
        }
        let Some(classified) = classified else {
            return Ok(None);
        };
        if classified.opens_subscription() {
            // A listen stream stands open like a GET stream (no idle timeout): it would hold a
            // request slot for as long as it lives, so it trades that slot for a stream slot.
            self.become_stream(upstream, held)?;
            self.admit_stream(who, held)?;
        }
        Ok(Some(
            self.upstreams
                .get(&upstream.name)
                .map_or(&[][..], |u| &u.rules[..]),
        ))
    }

    /// [`Limits::reserve_upstream`] for a routed request.
    pub fn reserve_upstream_slot(
        &self,
        upstream: &Upstream,
        classified: Option<&Classified>,
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        if held.stream {
            return Ok(());
        }
        let Some(limits) = self.upstreams.get(&upstream.name) else {
            return Ok(());
        };
        let exempt = held.exempt || classified.is_some_and(|c| !c.has_request());
        let permit = if exempt {
            limits.in_flight.acquire_anyway()
        } else {
            limits
                .in_flight
                .try_acquire()
                .ok_or_else(|| self.overloaded(upstream, "upstream"))?
        };
        held.permits.upstream = Some(permit);
        Ok(())
    }

    fn overloaded(&self, upstream: &Upstream, scope: &'static str) -> ProxyError {
        self.metrics
            .shed
            .with_label_values(&[&upstream.name, scope])
            .inc();
        let limit = match scope {
            "streams" => self.streams.cap(),
            "upstream" => self
                .upstreams
                .get(&upstream.name)
                .map_or(0, |u| u.in_flight.cap()),
            _ => self.global.cap(),
        };
        ProxyError::Overloaded {
            scope,
            upstream: upstream.name.to_string(),
            limit,
            retry_after: self.shed_retry_after,
        }
    }

    /// Moves a request admitted by [`Limits::shed`] from the global in-flight cap to the global
    /// stream cap (a `subscriptions/listen` request, known only once its body is classified).
    fn become_stream(&self, upstream: &Upstream, held: &mut Held) -> Result<(), ProxyError> {
        held.permits.global = None;
        held.stream = true;
        held.permits.global = Some(
            self.streams
                .try_acquire()
                .ok_or_else(|| self.overloaded(upstream, "streams"))?,
        );
        Ok(())
    }

    fn admit_stream(&self, who: &LimitKeyInput<'_>, held: &mut Held) -> Result<(), ProxyError> {
        let Some(streams) = &self.principal_streams else {
            return Ok(());
        };
        let mut h = self.hasher.build_hasher();
        who.hash_principal(&mut h);
        let key = std::hash::Hasher::finish(&h);
        if let Some(permit) = streams.try_acquire(key) {
            held.permits.principal_stream = Some(permit);
            return Ok(());
        }
        self.metrics
            .rejected
            .with_label_values(&[STREAMS_POLICY, "enforce"])
            .inc();
        let secs = retry_after_secs(self.shed_retry_after);
        Err(ProxyError::RateLimited(Box::new(Rejection {
            rule: Arc::from(STREAMS_POLICY),
            retry_after: self.shed_retry_after,
            policy: self.streams_policy.clone(),
            state: header_value(format!("\"{STREAMS_POLICY}\";r=0;t={secs}")),
            detail: "too many standalone streams open for this principal \
                     (limits.max_streams_per_principal)"
                .to_owned(),
        })))
    }

    /// Starts the background sweep of idle keys (every `limits.sweep_interval`, and early when
    /// a rule meets its key cap); it ends when `stop` is cancelled.
    pub fn spawn_sweeper(self: &Arc<Self>, stop: CancellationToken) {
        if self.all_rules().next().is_none() {
            return;
        }
        let limits = self.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(last + limits.sweep_interval) => {}
                    () = limits.sweep_early.notified() => {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep_until(last + MIN_EARLY_SWEEP_SPACING) => {}
                        }
                    }
                }
                limits.sweep();
                last = Instant::now();
            }
        });
    }

    /// Evicts idle keys of every rule now.
    pub fn sweep(&self) {
        for rule in self.all_rules() {
            rule.sweep();
            rule.take_full();
        }
    }

    fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .chain(self.upstreams.values().flat_map(|u| &u.rules))
    }

    /// Keys tracked by the rule named `name`.
    pub fn tracked_keys(&self, name: &str) -> Option<usize> {
        self.rule(name).map(Rule::tracked_keys)
    }

    /// Heap bytes of the key table of the rule named `name`.
    pub fn table_bytes(&self, name: &str) -> Option<usize> {
        self.rule(name).map(Rule::table_bytes)
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.all_rules().find(|r| &*r.name == name)
    }
}
