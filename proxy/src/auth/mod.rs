//! Authentication and authorization: who is calling (API keys, JWTs validated against JWKS),
//! whether it may call this method or tool (per-upstream rules over scopes), and what the
//! backend sees (the client's credential removed, the backend's own added, claim headers).
//!
//! Its phases ([`crate::exchange`]'s call shape; where each runs is written once, in
//! [`crate::forward`]): [`Auth::metadata`] (protected resource metadata, RFC 9728),
//! [`Auth::check_host_origin`] (Host/Origin allow-lists), [`Auth::authenticate`] (401 without
//! a valid credential, before the body is read) and [`Auth::authorize`] (per message, after
//! classification). The tail calls [`Auth::prepare_upstream_headers`] and
//! [`Auth::tools_filter`] (`tools/list` answers shrink to the tools the caller may call).

pub mod apikey;
pub mod authz;
pub mod cache;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod fetch;
pub mod filter;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod origin;
mod per_upstream;
mod phases;
pub mod prm;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, Uri};
use http_body::Body;
use prometheus::IntCounter;

use crate::body::{BoxError, ProxyBody, read_prefix};
use crate::config::Config;
use crate::error::ProxyError;
use crate::error::StartError;
use crate::mcp::{self, Classified};
use crate::metrics::Metrics;
use crate::upstream::ByName;
use crate::upstream::Upstream;

pub use crate::principal::{self, Principal, Source};

use apikey::ApiKeys;
pub use filter::Viewer;
use jwt::{CacheResult, Clock, JwtValidator};
use metrics::AuthMetrics;
use origin::{HostPolicy, OriginPolicy};
use per_upstream::UpstreamAuth;
use prm::Prm;

/// `X-API-Key`, the other place a client may put an API key.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Longest credential accepted. Real JWTs are well under 4 KiB; checking the length first keeps
/// oversized garbage away from the parsers and the hash.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// A refused POST whose declared body is at most this large is read to put the JSON-RPC request's
/// id in the 401. Small enough that unauthenticated clients cannot make the sidecar buffer much.
pub const UNAUTHENTICATED_PEEK_BYTES: usize = 16 * 1024;

/// Time that peek may wait for the body; after it the 401 goes out with `"id": null`.
pub const UNAUTHENTICATED_PEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters resolved once, so the hot path does not look labels up.
#[derive(Debug)]
struct Hot {
    ok_api_key: IntCounter,
    ok_jwt: IntCounter,
    cache_hit: IntCounter,
    cache_miss: IntCounter,
}

impl Hot {
    fn new(m: &AuthMetrics) -> Self {
        Self {
            ok_api_key: m.outcomes.with_label_values(&["api_key", "ok"]),
            ok_jwt: m.outcomes.with_label_values(&["jwt", "ok"]),
            cache_hit: m.token_cache.with_label_values(&["hit"]),
            cache_miss: m.token_cache.with_label_values(&["miss"]),
        }
    }
}

/// The auth phases' shared state.
#[derive(Debug)]
pub struct Auth {
    enabled: bool,
    hosts: HostPolicy,
    origins: OriginPolicy,
    api_keys: ApiKeys,
    jwt: Option<JwtValidator>,
    upstreams: ByName<String, UpstreamAuth>,
    prm: Prm,
    claim_header_names: Vec<HeaderName>,
    metrics: Option<(AuthMetrics, Hot)>,
}

impl Auth {
    /// No authentication and no Host/Origin checks (a `Proxy` built without config).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            hosts: HostPolicy::Any,
            origins: OriginPolicy::new(Some(&["*".to_owned()]), None, None),
            api_keys: ApiKeys::default(),
            jwt: None,
            upstreams: ByName::default(),
            prm: Prm::default(),
            claim_header_names: Vec::new(),
            metrics: None,
        }
    }

    /// Builds the auth state from validated `config`, loading JWKS files now (a broken file is a
    /// start-up error naming the field; URLs load on first use).
    pub async fn new(config: &Config, metrics: &Metrics) -> Result<Self, StartError> {
        Self::with_clock(config, metrics, jwt::system_clock()).await
    }

    /// [`Auth::new`] with an explicit clock for token times. Each authenticator is built by its
    /// own module, in this order (the first broken `[[auth.jwt]]` names the error).
    pub async fn with_clock(
        config: &Config,
        metrics: &Metrics,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let auth_metrics = AuthMetrics::new(metrics.registry())?;
        Self::build(config, auth_metrics, clock, None).await
    }

    /// The auth state of a reloaded `config`, on the metrics `previous` registered. An issuer
    /// whose `jwks_url` and refresh settings are unchanged keeps its keys; JWKS and CA files are
    /// read again, as at start.
    pub async fn rebuilt(
        config: &Config,
        metrics: &Metrics,
        previous: &Auth,
    ) -> Result<Self, StartError> {
        match &previous.metrics {
            Some((auth_metrics, _)) => {
                let clock = jwt::system_clock();
                Self::build(config, auth_metrics.clone(), clock, Some(previous)).await
            }
            None => Self::new(config, metrics).await,
        }
    }

    async fn build(
        config: &Config,
        auth_metrics: AuthMetrics,
        clock: Clock,
        previous: Option<&Auth>,
    ) -> Result<Self, StartError> {
        let auth = &config.auth;
        let hot = Hot::new(&auth_metrics);
        let listen = config.listen_addr().ok();
        let claim_headers = principal::claim_header_names(&auth.claim_headers);
        let api_keys = ApiKeys::from_config(&auth.api_keys, &claim_headers);
        let before = previous.and_then(|p| p.jwt.as_ref());
        let jwt =
            JwtValidator::from_config(auth, clock, &claim_headers, &auth_metrics, before).await?;
        let (upstreams, resources) = per_upstream::compile(config);
        Ok(Self {
            enabled: auth.enabled(),
            hosts: HostPolicy::new(auth.allowed_hosts.as_deref(), listen),
            origins: OriginPolicy::new(
                auth.allowed_origins.as_deref(),
                listen,
                auth.public_url.as_deref(),
            ),
            api_keys,
            jwt,
            upstreams,
            prm: Prm::from_config(auth, &resources),
            claim_header_names: claim_headers.into_iter().map(|(_, n)| n).collect(),
            metrics: Some((auth_metrics, hot)),
        })
    }

    /// Whether the issuer `id`'s key store is the very one it is in `other` (tests).
    #[cfg(test)]
    pub(crate) fn shares_keys(&self, other: &Auth, id: &str) -> bool {
        let keys = |a: &Auth| {
            a.jwt
                .as_ref()
                .and_then(|j| j.issuer(id))
                .and_then(|i| i.keys.clone())
        };
        matches!((keys(self), keys(other)), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b))
    }

    fn count(&self, method: &str, outcome: &str) {
        if let Some((m, _)) = &self.metrics {
            m.outcome(method, outcome);
        }
    }

    /// The protected resource metadata documents ([`Auth::metadata`]).
    pub fn metadata_answer(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<Result<Response<ProxyBody>, ProxyError>> {
        if !self.enabled || !path.starts_with(prm::WELL_KNOWN) {
            return None;
        }
        self.prm.handle(method, path)
    }

    /// `Host` (421) and `Origin` (403) allow-lists ([`Auth::check_host_origin`]). Returns the
    /// request's `Origin` when it has one (it passed), for the CORS phase.
    pub fn host_and_origin<'h>(
        &self,
        headers: &'h HeaderMap,
        uri: &Uri,
    ) -> Result<Option<&'h HeaderValue>, ProxyError> {
        let host = match headers.get(header::HOST) {
            Some(v) => Some(v.to_str().map_err(|_| ProxyError::HostNotAllowed {
                host: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })?),
            None => uri.authority().map(|a| a.as_str()),
        };
        if let Some(h) = host
            && !self.hosts.allows(h)
        {
            return Err(ProxyError::HostNotAllowed { host: h.to_owned() });
        }
        let origin = headers.get(header::ORIGIN);
        if let Some(origin) = origin {
            let text = origin.to_str().unwrap_or_default();
            if text.is_empty() || !self.origins.allows(text, host) {
                return Err(ProxyError::OriginNotAllowed {
                    origin: String::from_utf8_lossy(origin.as_bytes()).into_owned(),
                });
            }
        }
        Ok(origin)
    }

    fn unauthorized(
        &self,
        ua: &UpstreamAuth,
        method: &str,
        outcome: &'static str,
        description: Option<String>,
    ) -> ProxyError {
        self.count(method, outcome);
        let challenge = match &description {
            None => format!("Bearer {}", ua.challenge_tail),
            Some(d) => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", {}",
                d.replace(['"', '\\'], "'"),
                ua.challenge_tail
            ),
        };
        ProxyError::Unauthorized {
            outcome,
            detail: description.unwrap_or_else(|| "no credential was presented".into()),
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        }
    }

    /// The caller's principal ([`Auth::authenticate`]); `None` for public upstreams and when
    /// no authenticator is configured. Every method needs a credential on a protected upstream,
    /// `OPTIONS` too: CORS preflights never get here ([`crate::cors`] answers them), and with
    /// `cors.enabled = false` a preflight is an ordinary request.
    pub async fn authenticate_headers(
        &self,
        upstream: &Upstream,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Principal>>, ProxyError> {
        if !self.enabled {
            return Ok(None);
        }
        let Some(ua) = self.upstreams.get(&*upstream.name).filter(|u| u.protected) else {
            return Ok(None);
        };
        let mut bearer = headers.get_all(header::AUTHORIZATION).iter();
        let mut api_key = headers.get_all(&X_API_KEY).iter();
        let (value, is_bearer) = match (bearer.next(), api_key.next()) {
            (None, None) => return Err(self.unauthorized(ua, "none", "missing", None)),
            (Some(v), None) if bearer.next().is_none() => (v, true),
            (None, Some(v)) if api_key.next().is_none() => (v, false),
            _ => {
                return Err(self.unauthorized(
                    ua,
                    "none",
                    "malformed",
                    Some("send exactly one credential".into()),
                ));
            }
        };
        if value.len() > MAX_CREDENTIAL_BYTES + 7 {
            return Err(self.unauthorized(
                ua,
                "none",
                "too_large",
                Some("the credential is too large".into()),
            ));
        }
        let text = value.to_str().unwrap_or_default().trim();
        let credential = if is_bearer {
            match text.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => {
                    return Err(self.unauthorized(
                        ua,
                        "none",
                        "malformed",
                        Some("use `Authorization: Bearer <token>`".into()),
                    ));
                }
            }
        } else {
            text
        };
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_BYTES {
            let outcome = if credential.is_empty() {
                "malformed"
            } else {
                "too_large"
            };
            return Err(self.unauthorized(
                ua,
                "none",
                outcome,
                Some("the credential is empty or too large".into()),
            ));
        }
        let digest = apikey::digest(credential);
        if !self.api_keys.is_empty()
            && let Some(p) = self.api_keys.lookup(&digest)
        {
            if let Some((_, hot)) = &self.metrics {
                hot.ok_api_key.inc();
            }
            return Ok(Some(p));
        }
        let jwt = match (&self.jwt, is_bearer) {
            (Some(jwt), true) => jwt,
            _ => {
                return Err(self.unauthorized(
                    ua,
                    "api_key",
                    "unknown_api_key",
                    Some("the API key is not valid".into()),
                ));
            }
        };
        match jwt.validate(credential, &digest).await {
            Ok((p, cached)) => {
                if let Some((_, hot)) = &self.metrics {
                    match cached {
                        CacheResult::Hit => hot.cache_hit.inc(),
                        CacheResult::Miss => hot.cache_miss.inc(),
                    }
                }
                if !p.audience_ok(&ua.resource) {
                    return Err(self.unauthorized(
                        ua,
                        "jwt",
                        "wrong_audience",
                        Some("the token was issued for another resource".into()),
                    ));
                }
                if let Some((_, hot)) = &self.metrics {
                    hot.ok_jwt.inc();
                }
                Ok(Some(p))
            }
            Err(e) => {
                if let Some((_, hot)) = &self.metrics {
                    hot.cache_miss.inc();
                }
                Err(self.unauthorized(ua, "jwt", e.outcome(), Some(e.description())))
            }
        }
    }

    /// Every message of the body against the upstream's rules ([`Auth::authorize`]).
    pub fn authorize_messages(
        &self,
        upstream: &Upstream,
        principal: Option<&Arc<Principal>>,
        classified: Option<&Classified>,
    ) -> Result<(), ProxyError> {
        let (Some(p), Some(c)) = (principal, classified) else {
            return Ok(());
        };
        let Some(ua) = self.upstreams.get(&*upstream.name) else {
            return Ok(());
        };
        let Some(rules) = &ua.rules else {
            return Ok(());
        };
        for msg in &c.messages {
            if let Err(denied) = rules.check(p, msg) {
                let method = match p.source {
                    principal::Source::ApiKey(_) => "api_key",
                    principal::Source::Jwt(_) => "jwt",
                };
                self.count(method, denied.outcome);
                let scope = if denied.scopes.is_empty() {
                    String::new()
                } else {
                    format!(", scope=\"{}\"", denied.scopes)
                };
                let challenge = format!(
                    "Bearer error=\"insufficient_scope\"{scope}, {}",
                    ua.metadata_param
                );
                return Err(ProxyError::Forbidden {
                    detail: format!("`{}` may not call {}", p.subject, denied.what),
                    challenge: HeaderValue::from_str(&challenge)
                        .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
                });
            }
        }
        Ok(())
    }

    /// In the tail, before the send: claim headers are always removed first; on protected upstreams the
    /// client's credential is removed; the backend's credential and the principal's claim headers
    /// are added.
    pub fn prepare_upstream_headers(
        &self,
        upstream: &Upstream,
        principal: Option<&Principal>,
        headers: &mut HeaderMap,
    ) {
        for name in &self.claim_header_names {
            headers.remove(name);
        }
        let ua = self.upstreams.get(&*upstream.name);
        if ua.is_some_and(|u| u.protected) {
            headers.remove(header::AUTHORIZATION);
            headers.remove(&X_API_KEY);
        }
        if let Some((name, value)) = ua.and_then(|u| u.credential.as_ref()) {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(p) = principal {
            for (name, value) in &p.claim_headers {
                headers.append(name.clone(), value.clone());
            }
        }
    }

    /// In the tail, on the answer: the rewrite that keeps a `tools/list` answer to the tools
    /// `principal` may call (none for an upstream without rules, or without a principal).
    pub fn tools_filter(
        &self,
        upstream: &Upstream,
        principal: Option<&Arc<Principal>>,
    ) -> Option<Viewer> {
        let p = principal?;
        let rules = self
            .upstreams
            .get(&*upstream.name)
            .and_then(|u| u.rules.clone())?;
        Some(Viewer {
            rules,
            principal: p.clone(),
        })
    }
}

/// For a refused POST: reads a small body (declared at most [`UNAUTHENTICATED_PEEK_BYTES`], within
/// [`UNAUTHENTICATED_PEEK_TIMEOUT`]) and classifies it, so the 401 can carry the request's id.
pub async fn peek_classified<B>(headers: &HeaderMap, body: B) -> Option<Classified>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<usize>()
        .ok()?;
    if declared > UNAUTHENTICATED_PEEK_BYTES {
        return None;
    }
    let read = read_prefix(body, UNAUTHENTICATED_PEEK_BYTES + 1);
    let (bytes, _) = tokio::time::timeout(UNAUTHENTICATED_PEEK_TIMEOUT, read)
        .await
        .ok()?
        .ok()?;
    mcp::classify(&bytes).ok()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "auth_start_tests.rs"]
mod start_tests;
