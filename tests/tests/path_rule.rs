//! The path rule through the real sidecar: a path a backend could resolve outside its mount
//! (`/public/..\mcp` is `/mcp` to Node's URL parser) is refused with 400 before routing or
//! authentication, and the backend never sees it. Sent over a raw socket: HTTP client libraries
//! normalise such paths before sending.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_e2e_tests::{ACCEPT_BOTH, RunningSidecar, call, config, raw_http, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::{ApiKeyConfig, AuthConfig, Secret};
use serde_json::json;

/// A public upstream at `/public` and an API-key protected one at `/mcp`, both on one backend
/// (the set-up of the finding).
async fn setup() -> (RunningSidecar, FixtureServer) {
    let backend = FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Json,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let protected = upstream(backend.mcp_url(), Some("/mcp"));
    let mut public = upstream(format!("http://{}/public", backend.addr()), Some("/public"));
    public.name = "pub".into();
    public.auth.public = true;
    let mut c = config(vec![protected, public]);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![ApiKeyConfig {
            id: "ci".into(),
            key: Secret("ci-key-0123456789abcdef".into()),
            scopes: vec![],
        }],
        ..AuthConfig::default()
    };
    (start(c).await, backend)
}

fn post(path: &str) -> String {
    let body = call(1, "echo", json!({"text": "x"}));
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: {ACCEPT_BOTH}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_path_escaping_a_public_mount_is_400_and_never_reaches_the_backend() {
    let (sidecar, backend) = setup().await;
    // Without a credential the protected mount is closed...
    let answer = raw_http(sidecar.addr, &post("/mcp")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // ... and no spelling of "up one segment" through the public mount reaches it.
    for (path, named) in [
        ("/public/..\\mcp", "backslash"),
        ("/public/..%5cmcp", "encoded backslash"),
        ("/public/%2e%2e/mcp", "`..` segment"),
        ("/public/..%2fmcp", "encoded slash"),
        ("/public/%252e%252e/mcp", "%25"),
        ("/public/..;/mcp", "`..` segment"),
    ] {
        let answer = raw_http(sidecar.addr, &post(path)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains(named), "{path}: {answer}");
        assert!(answer.contains("-32006"), "{path}: {answer}");
    }
    assert_eq!(backend.stats().http_requests_total, 0);
    // The public mount itself still works.
    let answer = raw_http(sidecar.addr, &post("/public")).await;
    assert!(!answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(backend.stats().http_requests_total, 1);
}
