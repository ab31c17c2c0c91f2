//! Signing keys from a JWKS URL served by a local test server: first use loads them, a new `kid`
//! is picked up by an early refetch (rate-limited), an outage keeps the cached keys working and
//! says so in the metrics. Everything runs on the test's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use mcp_e2e_tests::{
    ACCEPT_BOTH, RunningSidecar, call, client, config, eventually, metric_value, start, upstream,
};
use mcp_fixtures::token::{self, EC_P256, EC_P256_ROTATED, TestKey};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::{AuthConfig, JwtIssuerConfig};
use serde_json::json;

const ISS: &str = "https://idp.test";
const AUD: &str = "https://mcp.example.test/mcp";

#[derive(Debug)]
struct Jwks {
    doc: String,
    up: bool,
    fetches: u64,
}

/// A JWKS endpoint on the test's runtime: serves `doc` (200) while `up`, 503 otherwise.
async fn jwks_server(state: Arc<Mutex<Jwks>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            let service = hyper::service::service_fn(move |_req| {
                let mut s = state.lock().unwrap();
                s.fetches += 1;
                let resp = if s.up {
                    hyper::Response::new(Full::new(Bytes::from(s.doc.clone())))
                } else {
                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"down")));
                    *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    r
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    sidecar: RunningSidecar,
    jwks: Arc<Mutex<Jwks>>,
    _backend: FixtureServer,
}

async fn setup(keys: &[TestKey], up: bool) -> Setup {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let jwks = Arc::new(Mutex::new(Jwks {
        doc: token::jwks(keys).to_string(),
        up,
        fetches: 0,
    }));
    let addr = jwks_server(jwks.clone()).await;
    let mut c = config(vec![upstream(backend.mcp_url(), Some("/mcp"))]);
    let mut issuer = JwtIssuerConfig::new("idp", ISS, vec![Algorithm::ES256]);
    issuer.jwks_url = Some(format!("http://{addr}/jwks.json"));
    issuer.jwks_refresh = Duration::from_secs(300);
    issuer.jwks_min_refresh_interval = Duration::from_secs(30);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        jwt: vec![issuer],
        ..AuthConfig::default()
    };
    Setup {
        sidecar: start(c).await,
        jwks,
        _backend: backend,
    }
}

/// A fresh token (distinct `sub`, so never served from the token cache).
fn token(key: TestKey, sub: &str) -> String {
    key.mint(&token::claims(ISS, AUD, sub, "", Duration::from_secs(3600)))
        .unwrap()
}

async fn status(s: &Setup, token: &str) -> u16 {
    client()
        .post(s.sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .bearer_auth(token)
        .body(call(1, "echo", json!({"text": "x"})))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn fetches(s: &Setup) -> u64 {
    s.jwks.lock().unwrap().fetches
}

#[tokio::test(start_paused = true)]
async fn a_new_kid_is_picked_up_by_a_rate_limited_refetch() {
    let s = setup(&[EC_P256], true).await;
    assert_eq!(status(&s, &token(EC_P256, "a")).await, 200);
    assert_eq!(fetches(&s), 1, "keys load on first use");
    assert_eq!(status(&s, &token(EC_P256, "b")).await, 200);
    assert_eq!(fetches(&s), 1, "and are reused");

    // The IdP rotates: the new key is published.
    s.jwks.lock().unwrap().doc = token::jwks(&[EC_P256, EC_P256_ROTATED]).to_string();
    // Within the minimum refresh interval of the last fetch an unknown kid is refused without a
    // refetch, however many arrive (forged kids cannot drive load to the IdP).
    for i in 0..20 {
        assert_eq!(
            status(&s, &token(EC_P256_ROTATED, &format!("r{i}"))).await,
            401
        );
    }
    assert_eq!(fetches(&s), 1);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        status(&s, &token(EC_P256_ROTATED, "new")).await,
        200,
        "refetched"
    );
    assert_eq!(fetches(&s), 2);
    let m = s.sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_auth_total{method="jwt",outcome="unknown_key"}"#
        ),
        Some(20.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, r#"mcp_sidecar_jwks_keys{issuer="idp"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_jwks_refresh_total{issuer="idp",result="ok"}"#
        ),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_the_cached_keys_working_and_is_reported() {
    let s = setup(&[EC_P256], true).await;
    assert_eq!(status(&s, &token(EC_P256, "a")).await, 200);
    s.jwks.lock().unwrap().up = false;
    tokio::time::advance(Duration::from_secs(301)).await;

    // Keys are due for a refresh; the refresh fails, the request is served with the old keys.
    assert_eq!(status(&s, &token(EC_P256, "b")).await, 200);
    let stale = r#"mcp_sidecar_jwks_stale{issuer="idp"}"#;
    let mut m = String::new();
    for _ in 0..100 {
        m = s.sidecar.metrics().await;
        if metric_value(&m, stale) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric_value(&m, stale), Some(1.0), "{m}");
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_jwks_refresh_total{issuer="idp",result="error"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(status(&s, &token(EC_P256, "c")).await, 200);
    assert_eq!(
        fetches(&s),
        2,
        "failed refresh not retried before the minimum interval"
    );

    // The endpoint comes back: the next due refresh clears the stale flag.
    s.jwks.lock().unwrap().up = true;
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(status(&s, &token(EC_P256, "d")).await, 200);
    let jwks = s.jwks.clone();
    eventually("refetched", || jwks.lock().unwrap().fetches == 3).await;
    let mut m = String::new();
    for _ in 0..100 {
        m = s.sidecar.metrics().await;
        if metric_value(&m, stale) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric_value(&m, stale), Some(0.0), "{m}");
}

#[tokio::test(start_paused = true)]
async fn keys_that_never_loaded_are_401_key_unavailable() {
    let s = setup(&[EC_P256], false).await;
    assert_eq!(status(&s, &token(EC_P256, "a")).await, 401);
    let m = s.sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_auth_total{method="jwt",outcome="key_unavailable"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // Once the endpoint is back (and the retry interval passed) tokens verify.
    s.jwks.lock().unwrap().up = true;
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(status(&s, &token(EC_P256, "b")).await, 200);
}
