//! The official MCP Python SDK client through the sidecar with a bearer token: the token is
//! accepted, `tools/list` comes back filtered to the tools the token's scope allows, and a call
//! outside the scope fails at the client without reaching the backend.
//!
//! Needs `<repo>/.venv` from `scripts/test-deps.sh` (or `MCP_TEST_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_e2e_tests::{config, start, upstream};
use mcp_fixtures::token::{self, EC_P256};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::{AuthConfig, JwtIssuerConfig, RuleConfig};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn python() -> PathBuf {
    std::env::var_os("MCP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

#[tokio::test]
async fn official_python_client_works_with_a_token_and_sees_only_its_tools() {
    let backend = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, token::JWKS_JSON).unwrap();
    let mut up = upstream(backend.mcp_url(), Some("/mcp"));
    up.auth.rules = vec![RuleConfig {
        scopes: vec!["tools:read".into()],
        methods: vec!["tools/list".into()],
        tools: vec!["echo".into(), "add".into()],
    }];
    let mut c = config(vec![up]);
    let mut issuer = JwtIssuerConfig::new("idp", "https://idp.test", vec![Algorithm::ES256]);
    issuer.jwks_file = Some(jwks);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        jwt: vec![issuer],
        ..AuthConfig::default()
    };
    let sidecar = start(c).await;
    let token = EC_P256
        .mint(&token::claims(
            "https://idp.test",
            "https://mcp.example.test/mcp",
            "alice",
            "tools:read",
            Duration::from_secs(600),
        ))
        .unwrap();

    let child = tokio::process::Command::new(python())
        .arg(repo_root().join("tests/sdk/auth_client.py"))
        .arg(sidecar.url("/mcp"))
        .arg(&token)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python from scripts/test-deps.sh");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        report["tools"],
        serde_json::json!(["add", "echo"]),
        "{report}"
    );
    assert_eq!(report["echo"], "hello with a token");
    assert_ne!(report["forbidden"]["type"], "none", "{report}");
    let stats = backend.stats();
    assert_eq!(stats.by_tool.get("echo"), Some(&1));
    assert_eq!(stats.by_tool.get("sleep"), None, "{stats:?}");
}
