//! The admin listener: `/metrics` (Prometheus text), `/healthz` (liveness), `/readyz`
//! (readiness, with each component's state), `/config` (the running config, secrets redacted,
//! and its hash; `POST /config/reload` re-reads the file, [`crate::reload`]) and `/breakers` (circuit breakers; `POST
//! /breakers/{upstream}[/{tool}]/open|close` forces one) and `/jobs` (the job engine's
//! read-only operator view: jobs per status, the oldest queued job's age). It runs on its own port, loopback by
//! default, so scraping and probing never compete with (or are exposed like) client traffic;
//! since it can force circuits, it must stay unreachable from clients.
//!
//! With `admin.token` set, every request but the probes (`/healthz`, `/readyz`: kubelets and
//! load balancers send no credentials) must carry `Authorization: Bearer TOKEN`, else 401 with
//! `WWW-Authenticate: Bearer`. The token is kept as its SHA-256 digest and compared in constant
//! time, as the API keys are.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::apikey::{CredentialDigest, digest};
use crate::body::{ProxyBody, full};
use crate::config::ConfigView;
use crate::health::Readiness;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::reload::{Generation, ReloadError, Reloader};
use crate::resilience::{Resilience, percent_decode};

/// State the admin endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Readiness to report.
    pub readiness: Arc<Readiness>,
    /// The job engine, for its operator view (`None` when `jobs.enabled = false`).
    pub jobs: Option<Jobs>,
    /// What a config reload replaces, read once per admin request.
    pub view: Arc<ArcSwap<AdminView>>,
    /// Re-reads the config file for `POST /config/reload` (`None`: no reloads, as for a
    /// sidecar started without a file).
    pub reloader: Option<Reloader>,
}

/// The part of the admin state that follows the running config.
#[derive(Debug)]
pub struct AdminView {
    /// Circuit breakers to report and force.
    pub resilience: Option<Arc<Resilience>>,
    /// The digest of `admin.token`, when one is required.
    pub token: Option<AdminToken>,
    /// The running config, redacted, and its hash (`GET /config`).
    pub config: Arc<ConfigView>,
}

impl AdminView {
    /// What the admin listener shows while `generation` runs.
    pub fn of(generation: &Generation) -> Self {
        Self {
            resilience: Some(generation.resilience.clone()),
            token: generation
                .config
                .admin
                .token
                .as_ref()
                .map(|t| AdminToken::new(t.expose())),
            config: generation.view.clone(),
        }
    }
}

/// `admin.token`, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct AdminToken(CredentialDigest);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    /// From the configured token's text.
    pub fn new(token: &str) -> Self {
        Self(digest(token))
    }

    /// Whether `presented` is the token: digests compared in constant time, so timing reveals
    /// neither the token's length nor how much of it matched.
    fn matches(&self, presented: &str) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            &self.0[..],
            &digest(presented)[..],
        ))
    }
}

/// The probes: answered without a token (kubelets and load balancers send none, and they
/// disclose nothing but up/ready and each upstream's state).
fn is_probe(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// The realm named in the `WWW-Authenticate` challenge.
const REALM: &str = "mcp-sidecar-admin";

impl Admin {
    /// The 401 to send when `admin.token` is set and `req` (not a probe) does not carry it as
    /// `Authorization: Bearer TOKEN`; `None` lets the request through.
    pub fn refusal<B>(&self, req: &Request<B>) -> Option<Response<ProxyBody>> {
        let view = self.view.load();
        let token = view.token.as_ref()?;
        if is_probe(req.uri().path()) {
            return None;
        }
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let presented = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().and_then(bearer),
            _ => None,
        };
        let (challenge, message) = match presented {
            Some(t) if token.matches(t) => return None,
            Some(_) => (
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
                "the admin token is not valid\n",
            ),
            None => (
                format!("Bearer realm=\"{REALM}\""),
                "this admin endpoint requires admin.token: send Authorization: Bearer TOKEN \
                 (/healthz and /readyz need none)\n",
            ),
        };
        let mut resp = text(StatusCode::UNAUTHORIZED, message);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        Some(resp)
    }

    /// Answers one admin request: the token check, then the endpoint.
    pub async fn respond<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        if let Some(refused) = self.refusal(req) {
            return refused;
        }
        match req.uri().path() {
            "/jobs" => self.jobs_view(req.method()).await,
            "/config/reload" => self.reload(req.method()).await,
            _ => self.handle(req),
        }
    }

    /// `POST /config/reload`: re-reads the config file. 200 with the new hash and what changed;
    /// 400 when the file is not a valid config (the error names the field, file, line and
    /// column), 409 when it changes what only a restart can (or there is no file to re-read);
    /// in both the running config stays.
    pub async fn reload(&self, method: &Method) -> Response<ProxyBody> {
        if method != Method::POST {
            return with_allow(text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"), "POST");
        }
        let Some(reloader) = &self.reloader else {
            return json_response(
                StatusCode::CONFLICT,
                &serde_json::json!({
                    "result": "error",
                    "error": ReloadError::NoFile.to_string(),
                }),
            );
        };
        match reloader.reload("admin").await {
            Ok(report) => json_response(StatusCode::OK, &report.to_json()),
            Err(e) => {
                let status = match e {
                    ReloadError::NeedsRestart(_) | ReloadError::NoFile => StatusCode::CONFLICT,
                    ReloadError::Invalid(_) => StatusCode::BAD_REQUEST,
                };
                json_response(
                    status,
                    &serde_json::json!({ "result": "error", "error": e.to_string() }),
                )
            }
        }
    }

    /// `GET /jobs`: the job engine's operator view (read-only: jobs belong to their owners,
    /// and the admin listener does not act on them).
    pub async fn jobs_view(&self, method: &Method) -> Response<ProxyBody> {
        if method != Method::GET && method != Method::HEAD {
            return with_allow(
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
                "GET, HEAD",
            );
        }
        match &self.jobs {
            Some(jobs) => json_response(StatusCode::OK, &jobs.operator_view().await),
            None => text(
                StatusCode::NOT_FOUND,
                "jobs are disabled (jobs.enabled = false)\n",
            ),
        }
    }

    /// Answers one admin request (`/jobs` is answered by [`Admin::jobs_view`]).
    pub fn handle<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        let path = req.uri().path();
        if path == "/breakers" || path.starts_with("/breakers/") {
            return self.breakers(req.method(), path);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "admin endpoints take GET\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/config" => {
                let config = self.view.load().config.clone();
                let mut resp = json_response(StatusCode::OK, &config.document());
                // The hash is the document's identity: caches and scripts can compare it.
                if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", config.hash)) {
                    resp.headers_mut().insert(header::ETAG, etag);
                }
                resp
            }
            "/readyz" => {
                let status = if self.readiness.is_ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let mut resp = Response::new(full(self.readiness.report().to_string()));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            "/metrics" => match self.metrics.render() {
                Ok(bytes) => {
                    let mut resp = Response::new(full(bytes));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    resp
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("metrics: {e}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz, /readyz, /config, /config/reload, /breakers \
                 or /jobs\n",
            ),
        }
    }

    /// `GET /breakers` and `POST /breakers/{id}/open|close`.
    fn breakers(&self, method: &Method, path: &str) -> Response<ProxyBody> {
        let view = self.view.load();
        let Some(resilience) = &view.resilience else {
            return text(
                StatusCode::NOT_FOUND,
                "no circuit breakers in this sidecar\n",
            );
        };
        if path == "/breakers" {
            if method != Method::GET && method != Method::HEAD {
                return with_allow(
                    text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
                    "GET, HEAD",
                );
            }
            return json_response(StatusCode::OK, &resilience.report());
        }
        let rest = path.trim_start_matches("/breakers/");
        let (id, open) = match rest.rsplit_once('/') {
            Some((id, "open")) => (id, true),
            Some((id, "close")) => (id, false),
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "use POST /breakers/{upstream}[/{tool}]/open or /close\n",
                );
            }
        };
        if method != Method::POST {
            return with_allow(text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"), "POST");
        }
        let Some(id) = percent_decode(id) else {
            return text(StatusCode::BAD_REQUEST, "malformed percent-encoding\n");
        };
        match resilience.force(&id, open) {
            Some(state) => json_response(StatusCode::OK, &state),
            None => text(
                StatusCode::NOT_FOUND,
                &format!("no breaker `{id}`; GET /breakers lists them\n"),
            ),
        }
    }

    /// Serves admin requests on `listener` until `cancel` fires.
    pub async fn serve(self, listener: TcpListener, cancel: CancellationToken) {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let accept_errors = crate::accept_errors::AcceptErrors::new("admin", &self.metrics);
        loop {
            let (stream, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        accept_errors.record(&e);
                        tokio::time::sleep(crate::accept_errors::ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            let builder = builder.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.respond(&req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = cancel.cancelled() => {}
                }
            });
        }
    }
}

/// The credential of an `Authorization: Bearer TOKEN` value (scheme case-insensitive, RFC 7235
/// 2.1), `None` for any other scheme or an empty token.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn with_allow(mut resp: Response<ProxyBody>, allow: &'static str) -> Response<ProxyBody> {
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
