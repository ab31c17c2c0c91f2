//! CORS, decided by the sidecar from `[cors]`, like tower-http's `CorsLayer`: preflights are
//! answered here and never forwarded, and answers to an allowed `Origin` (the backend's and the
//! sidecar's own errors alike) carry the headers a browser needs to read them.
//!
//! Why here and not in the backend: a preflight carries no credential by design (Fetch), so
//! forwarding it would hand unauthenticated requests (with any body, query and session id) to a
//! protected backend. CORS is not authentication: it only decides which pages' scripts may read
//! the answers; every actual request is still authenticated.
//!
//! The rules (Fetch's CORS protocol; tower-http's choices where Fetch leaves room):
//! - A preflight is an `OPTIONS` with `Origin` and `Access-Control-Request-Method`. Other `OPTIONS`
//!   requests are ordinary requests (authenticated, forwarded).
//! - An `Origin` refused by the Origin check (`auth.allowed_origins`) got 403 before this runs.
//! - A preflight is answered `204 No Content` (Fetch accepts any 2xx). It grants (echoed
//!   `Access-Control-Allow-Origin`, the allowed methods and headers, `Access-Control-Max-Age`)
//!   only when the origin, the method and every requested header are allowed; otherwise it grants
//!   nothing and the browser refuses the actual request. Not a 403: the answer is the policy, not
//!   an error, and a browser treats both the same (as tower-http and rs-cors do).
//! - The allowed origin is echoed, never `*`, with `Vary: Origin`, so caches keep answers for
//!   different origins apart. `Access-Control-Allow-Credentials` is never sent: the sidecar's
//!   credentials are headers (`Authorization`, `X-API-Key`), which CORS governs through
//!   `Access-Control-Allow-Headers`; cookies and HTTP authentication are never credentials here.
//! - The policy is authoritative: on answers to a request with `Origin`, the backend's own
//!   `Access-Control-*` headers are replaced (allowed origin) or removed (refused origin).
//!   Answers to requests without `Origin` are left untouched (browsers always send `Origin` on
//!   cross-origin requests), so non-browser traffic pays nothing.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::body::{ProxyBody, empty};
use crate::config::CorsConfig;
use crate::exchange::{self, Exchange, Policy, Step};
use crate::glob::Glob;

/// `Vary` of a preflight's answer: what it grants depends on all three request headers.
const PREFLIGHT_VARY: &str =
    "origin, access-control-request-method, access-control-request-headers";

/// The backend's headers that the policy replaces on answers to a request with `Origin`.
const POLICY_HEADERS: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// What the answer to an actual (non-preflight) request with `Origin` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The origin may read the answer: it is echoed in `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
    /// The origin passed the Origin check but not `cors.allowed_origins`: no CORS headers.
    Refused,
}

impl Policy for Cors {
    type State = Option<Grant>;
}

/// The CORS phase's outcome for a request with `Origin`.
#[derive(Debug)]
pub enum Phase {
    /// A preflight: this is its answer; the request ends here.
    Preflight(Response<ProxyBody>),
    /// An actual request: its answer gets this grant ([`Cors::apply`]).
    Actual(Grant),
}

/// How a preflight was answered (the metric's outcome label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    OriginNotAllowed,
    MethodNotAllowed,
    HeadersNotAllowed,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Self::Allowed,
        Self::OriginNotAllowed,
        Self::MethodNotAllowed,
        Self::HeadersNotAllowed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::HeadersNotAllowed => "headers_not_allowed",
        }
    }
}

/// The compiled `[cors]` policy.
#[derive(Debug)]
pub struct Cors {
    /// Lower-cased origin globs; `None`: every origin the Origin check accepted.
    origins: Option<Vec<Glob>>,
    /// Methods, compared exactly (Fetch compares them byte for byte).
    methods: Vec<String>,
    /// Lower-cased request header names.
    headers: Vec<String>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    /// `mcp_sidecar_cors_preflights_total{outcome}`, one counter per outcome in
    /// [`Outcome::ALL`] order, resolved once.
    preflights: Option<[IntCounter; 4]>,
}

impl Cors {
    /// The policy of a validated `config`; `None` when `cors.enabled = false`. Counters go into
    /// `registry` when given.
    pub fn new(
        config: &CorsConfig,
        registry: Option<&Registry>,
    ) -> Result<Option<Self>, prometheus::Error> {
        if !config.enabled {
            return Ok(None);
        }
        let counters = registry.map(Self::register_metric).transpose()?;
        Ok(Self::with_metric(config, counters.as_ref()))
    }

    /// Registers `mcp_sidecar_cors_preflights_total{outcome}` into `registry`; the policies
    /// built on it ([`Cors::with_metric`]), a config reload's included, count there.
    pub fn register_metric(registry: &Registry) -> Result<IntCounterVec, prometheus::Error> {
        let vec = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_cors_preflights_total",
                "CORS preflights answered by the sidecar, by outcome (allowed, \
                 origin_not_allowed, method_not_allowed, headers_not_allowed).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(vec.clone()))?;
        Ok(vec)
    }

    /// The policy of `config` (`None` when CORS is off), counting preflights in `counters`.
    pub fn with_metric(config: &CorsConfig, counters: Option<&IntCounterVec>) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let preflights =
            counters.map(|vec| Outcome::ALL.map(|o| vec.with_label_values(&[o.label()])));
        let lower = |list: &[String]| -> Vec<String> {
            list.iter().map(|s| s.to_ascii_lowercase()).collect()
        };
        Some(Self {
            origins: config.allowed_origins.as_ref().map(|list| {
                list.iter()
                    .map(|o| Glob::new(&o.trim_end_matches('/').to_ascii_lowercase()))
                    .collect()
            }),
            methods: config.allowed_methods.clone(),
            headers: lower(&config.allowed_headers),
            allow_methods: joined(&config.allowed_methods),
            allow_headers: joined(&lower(&config.allowed_headers)),
            expose_headers: joined(&lower(&config.exposed_headers)),
            max_age: HeaderValue::from(config.max_age.as_secs()),
            preflights,
        })
    }

    /// Whether `headers` make an `OPTIONS` a CORS preflight (the caller knows `Origin` is there).
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        *method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The CORS phase: answers a preflight (never forwarded: it carries no credential by design,
    /// so forwarding it would hand unauthenticated requests to a protected backend); for any
    /// other request with an allowed `Origin`, keeps the grant its answer gets
    /// ([`Cors::apply`]).
    #[inline]
    pub fn preflight(&self, ex: &mut Exchange, grant: &mut Option<Grant>) -> exchange::Outcome {
        let Some(origin) = &ex.origin else {
            return Ok(Step::Next);
        };
        match self.on_request(&ex.head.method, &ex.head.headers, origin) {
            Phase::Preflight(answer) => Ok(Step::Answer(answer)),
            Phase::Actual(g) => {
                *grant = Some(g);
                Ok(Step::Next)
            }
        }
    }

    /// What CORS does with a request whose `origin` passed the Origin check.
    pub fn on_request(&self, method: &Method, headers: &HeaderMap, origin: &HeaderValue) -> Phase {
        let grant = self.grant(origin);
        if Self::is_preflight(method, headers) {
            Phase::Preflight(self.preflight_answer(grant, headers))
        } else {
            Phase::Actual(grant)
        }
    }

    fn grant(&self, origin: &HeaderValue) -> Grant {
        let Some(globs) = &self.origins else {
            return Grant::Allowed(origin.clone());
        };
        let text = origin
            .to_str()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !text.is_empty() && globs.iter().any(|g| g.matches(&text)) {
            Grant::Allowed(origin.clone())
        } else {
            Grant::Refused
        }
    }

    /// A preflight's answer: 204, with grants only when everything asked for is allowed.
    fn preflight_answer(&self, grant: Grant, headers: &HeaderMap) -> Response<ProxyBody> {
        let outcome = match &grant {
            Grant::Refused => Outcome::OriginNotAllowed,
            Grant::Allowed(_) if !self.method_allowed(headers) => Outcome::MethodNotAllowed,
            Grant::Allowed(_) if !self.headers_allowed(headers) => Outcome::HeadersNotAllowed,
            Grant::Allowed(_) => Outcome::Allowed,
        };
        if let Some(counters) = &self.preflights {
            // `ALL` lists the variants in declaration order, so the discriminant is the index.
            counters[outcome as usize].inc();
        }
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static(PREFLIGHT_VARY));
        match grant {
            Grant::Allowed(origin) if outcome == Outcome::Allowed => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    self.allow_methods.clone(),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    self.allow_headers.clone(),
                );
                h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
            }
            _ => tracing::debug!(
                outcome = outcome.label(),
                "CORS preflight answered without grants"
            ),
        }
        response
    }

    fn method_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| self.methods.iter().any(|a| a.as_bytes() == m.as_bytes()))
    }

    /// Every name in `Access-Control-Request-Headers` (all its fields, comma-separated,
    /// case-insensitive) is allowed.
    fn headers_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .all(|value| {
                value.to_str().is_ok_and(|text| {
                    text.split(',')
                        .map(|name| name.trim_matches([' ', '\t']))
                        .filter(|name| !name.is_empty())
                        .all(|name| self.headers.iter().any(|a| a.eq_ignore_ascii_case(name)))
                })
            })
    }

    /// Puts `grant` on the answer to an actual request: the backend's `Access-Control-*`
    /// headers are replaced by the policy's, `Vary: Origin` is added.
    pub fn apply(&self, grant: Grant, headers: &mut HeaderMap) {
        for name in &POLICY_HEADERS {
            headers.remove(name);
        }
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if let Grant::Allowed(origin) = grant {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                self.expose_headers.clone(),
            );
        }
    }
}

/// `a, b, c` as one header value (the names were validated at start).
fn joined(list: &[String]) -> HeaderValue {
    HeaderValue::from_str(&list.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
