//! CORS through the real sidecar in front of a protected (API key) fixture backend: preflights are
//! answered by the sidecar and never reach the backend, a non-preflight `OPTIONS` is
//! authenticated like any request, and answers to an allowed `Origin` (the backend's and the
//! sidecar's own errors alike) let the browser read what an MCP client needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_e2e_tests::{ACCEPT_BOTH, RunningSidecar, client, config, initialize, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::{ApiKeyConfig, AuthConfig, Config, Secret};

const API_KEY: &str = "ci-key-0123456789abcdef";
/// MCP Inspector's default origin: a loopback origin, accepted by a loopback listener's defaults.
const ORIGIN: &str = "http://localhost:6274";

struct Setup {
    sidecar: RunningSidecar,
    backend: FixtureServer,
}

/// A protected upstream at `/mcp` (API key), its config adjusted by `adjust`.
async fn setup(adjust: impl FnOnce(&mut Config)) -> Setup {
    let backend = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let mut c = config(vec![upstream(backend.mcp_url(), Some("/mcp"))]);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![ApiKeyConfig {
            id: "ci".into(),
            key: Secret(API_KEY.into()),
            scopes: vec![],
        }],
        ..AuthConfig::default()
    };
    adjust(&mut c);
    let sidecar = start(c).await;
    Setup { sidecar, backend }
}

/// The exact attack: an `OPTIONS` dressed as a preflight, with a body, a query and a session id,
/// and no credential.
fn fake_preflight(s: &Setup) -> reqwest::RequestBuilder {
    preflight_from(s, ORIGIN)
}

fn preflight_from(s: &Setup, origin: &str) -> reqwest::RequestBuilder {
    client()
        .request(
            reqwest::Method::OPTIONS,
            s.sidecar.url("/mcp?tool=delete_everything"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-api-key, mcp-session-id",
        )
        .header("mcp-session-id", "stolen-session")
        .header("content-type", "application/json")
        .body(initialize(1))
}

#[tokio::test]
async fn preflight_is_answered_by_the_sidecar_and_never_reaches_the_backend() {
    let s = setup(|_| {}).await;
    let resp = fake_preflight(&s).send().await.unwrap();
    assert_eq!(
        s.backend.stats().http_requests_total,
        0,
        "a preflight must never be forwarded"
    );
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "content-type",
        "x-api-key",
        "mcp-session-id",
        "authorization",
        "traceparent",
        "tracestate",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(h.contains_key("access-control-max-age"));
    assert!(h["vary"].to_str().unwrap().contains("origin"));
}

#[tokio::test]
async fn options_that_is_not_a_preflight_needs_a_credential() {
    let s = setup(|_| {}).await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, s.sidecar.url("/mcp"))
        .header("origin", ORIGIN)
        .header("mcp-session-id", "stolen-session")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(s.backend.stats().http_requests_total, 0);
}

#[tokio::test]
async fn with_cors_disabled_a_preflight_is_an_ordinary_request_and_needs_a_credential() {
    let s = setup(|c| c.cors.enabled = false).await;
    let resp = fake_preflight(&s).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert_eq!(s.backend.stats().http_requests_total, 0);
}

#[tokio::test]
async fn preflight_from_an_origin_the_origin_check_refuses_is_403_without_grants() {
    let s = setup(|_| {}).await;
    let resp = preflight_from(&s, "https://attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert_eq!(s.backend.stats().http_requests_total, 0);
}

/// What a browser MCP client (MCP Inspector, a web app) does: preflight, then `initialize` with
/// its API key; it must be able to read the session id the backend assigned.
#[tokio::test]
async fn browser_client_can_initialize_and_read_the_session_id() {
    let s = setup(|_| {}).await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, s.sidecar.url("/mcp"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);

    let resp = client()
        .post(s.sidecar.url("/mcp"))
        .header("origin", ORIGIN)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert!(h.contains_key("mcp-session-id"));
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("mcp-session-id"), "{exposed}");
    assert!(
        h.get_all("vary").iter().any(|v| v == "origin"),
        "{:?}",
        h.get_all("vary")
    );
    assert!(!h.contains_key("access-control-allow-credentials"));
    assert_eq!(s.backend.stats().http_requests_total, 1);
    let metrics = s.sidecar.metrics().await;
    assert!(
        metrics.contains(r#"mcp_sidecar_cors_preflights_total{outcome="allowed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn cross_origin_401_lets_the_browser_read_the_challenge() {
    let s = setup(|_| {}).await;
    let resp = client()
        .post(s.sidecar.url("/mcp"))
        .header("origin", ORIGIN)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize(7))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let h = resp.headers();
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
    assert_eq!(s.backend.stats().http_requests_total, 0);
}

#[tokio::test]
async fn origin_outside_cors_allowed_origins_gets_answers_without_cors_headers() {
    let s = setup(|c| c.cors.allowed_origins = Some(vec!["http://localhost:9999".into()])).await;
    let resp = fake_preflight(&s).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    let resp = client()
        .post(s.sidecar.url("/mcp"))
        .header("origin", ORIGIN)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert!(
        s.sidecar
            .metrics()
            .await
            .contains(r#"mcp_sidecar_cors_preflights_total{outcome="origin_not_allowed"} 1"#)
    );
}

#[tokio::test(start_paused = true)]
async fn cross_origin_429_exposes_retry_after_and_the_ratelimit_fields() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[rate_limit]]\nname = \"one\"\nkey = [\"principal\"]\nrate = 1\nper = \"60s\"\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n",
        backend.mcp_url()
    );
    let sidecar = start(Config::from_toml_with_env(&text, &|_| None).unwrap()).await;
    let send = || {
        client()
            .post(sidecar.url("/mcp"))
            .header("origin", ORIGIN)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(initialize(1))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert!(h.contains_key("retry-after"));
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    for name in ["retry-after", "ratelimit", "ratelimit-policy"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

/// The sidecar's policy is authoritative for browsers: a backend that grants every origin
/// (credentials included) does not widen it; requests without `Origin` are not touched.
#[tokio::test]
async fn backend_cors_headers_are_replaced_on_answers_to_an_origin() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("access-control-allow-origin", "*")
                .insert_header("access-control-allow-credentials", "true")
                .insert_header("access-control-expose-headers", "x-secret")
                .set_body_string("{}"),
        )
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let send = |origin: Option<&str>| {
        let mut req = client()
            .post(sidecar.url("/mcp"))
            .header("content-type", "application/json")
            .body(initialize(1));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let resp = send(Some(ORIGIN)).await.unwrap();
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert!(!h.contains_key("access-control-allow-credentials"));
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(!exposed.contains("x-secret"), "{exposed}");
    let resp = send(None).await.unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}
