//! Authentication and authorization through the real sidecar and the fixture MCP server: what is
//! refused never reaches the backend, refusals carry the right status, challenge and JSON-RPC id,
//! the backend gets its own credential and claim headers (never the client's), `tools/list` is
//! filtered (JSON, SSE, legacy transport), metadata is served tokenless, Host/Origin are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_e2e_tests::{
    ACCEPT_BOTH, EventReader, RunningSidecar, call, client, config, event_json, metric_value,
    raw_http, rpc, start, upstream,
};
use mcp_fixtures::token::{self, EC_P256, RSA_2048};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_sidecar::config::{
    ApiKeyConfig, AuthConfig, CredentialConfig, JwtIssuerConfig, RuleConfig, Secret,
};
use serde_json::{Value, json};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://mcp.example.test/mcp";
const API_KEY: &str = "ci-key-0123456789abcdef";

struct Setup {
    sidecar: RunningSidecar,
    backend: FixtureServer,
    _dir: tempfile::TempDir,
}

fn rules() -> Vec<RuleConfig> {
    let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    vec![
        RuleConfig {
            scopes: v(&["crawl"]),
            methods: v(&["tools/list"]),
            tools: v(&["crawl_*"]),
        },
        RuleConfig {
            scopes: v(&["tools:read"]),
            methods: v(&["tools/list"]),
            tools: v(&["echo", "add", "progress"]),
        },
    ]
}

async fn setup(mode: ResponseMode) -> Setup {
    let backend = FixtureServer::start(FixtureConfig {
        response_mode: mode,
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, token::JWKS_JSON).unwrap();

    let mut protected = upstream(backend.mcp_url(), Some("/mcp"));
    protected.auth.rules = rules();
    protected.auth.credential = Some(CredentialConfig {
        header: "Authorization".into(),
        value: Secret("Bearer backend-secret".into()),
    });
    let mut public = upstream(backend.mcp_url(), Some("/public"));
    public.name = "pub".into();
    public.auth.public = true;
    let mut legacy = upstream(format!("http://{}/", backend.addr()), Some("/legacy"));
    legacy.name = "legacy".into();
    legacy.auth.rules = rules();

    let mut c = config(vec![protected, public, legacy]);
    let mut issuer = JwtIssuerConfig::new("idp", ISS, vec![Algorithm::ES256, Algorithm::RS256]);
    issuer.jwks_file = Some(jwks);
    issuer.audiences = vec![]; // only each upstream's own resource
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![ApiKeyConfig {
            id: "ci".into(),
            key: Secret(API_KEY.into()),
            scopes: vec!["tools:read".into()],
        }],
        jwt: vec![issuer],
        claim_headers: BTreeMap::from([
            ("sub".to_owned(), "X-Auth-Subject".to_owned()),
            ("scope".to_owned(), "X-Auth-Scopes".to_owned()),
        ]),
        ..AuthConfig::default()
    };
    let sidecar = start(c).await;
    Setup {
        sidecar,
        backend,
        _dir: dir,
    }
}

fn jwt(scope: &str) -> String {
    EC_P256
        .mint(&token::claims(
            ISS,
            AUD,
            "alice",
            scope,
            Duration::from_secs(3600),
        ))
        .unwrap()
}

async fn post(url: String, auth: Option<&str>, body: String) -> reqwest::Response {
    let mut req = client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn unauthenticated_requests_are_401_and_never_reach_the_backend() {
    let s = setup(ResponseMode::Json).await;
    let resp = post(
        s.sidecar.url("/mcp"),
        None,
        call(42, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        challenge(&resp),
        "Bearer resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\", scope=\"crawl tools:read\""
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 42, "the 401 names the request");
    assert_eq!(v["error"]["code"], -32010);
    assert_eq!(v["error"]["data"]["reason"], "unauthorized");

    for bad in [
        "garbage",
        &"a".repeat(16 * 1024),
        &RSA_2048
            .mint(&token::claims(
                ISS,
                "https://other.test/mcp",
                "alice",
                "tools:read",
                Duration::from_secs(60),
            ))
            .unwrap(),
    ] {
        let resp = post(s.sidecar.url("/mcp"), Some(bad), call(1, "echo", json!({}))).await;
        assert_eq!(resp.status(), 401);
        assert!(
            challenge(&resp).starts_with("Bearer error=\"invalid_token\""),
            "{}",
            challenge(&resp)
        );
    }
    // Bodies above the 16 KiB peek are not read for an unauthenticated client: `id` is null.
    let big = call(43, "echo", json!({"text": "x".repeat(20 * 1024)}));
    let resp = post(s.sidecar.url("/mcp"), None, big).await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].is_null(), "{v}");
    let get = client()
        .get(s.sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 401);
    let delete = client().delete(s.sidecar.url("/mcp")).send().await.unwrap();
    assert_eq!(delete.status(), 401);
    let legacy = client()
        .get(s.sidecar.url("/legacy/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 401);

    assert_eq!(
        s.backend.stats().http_requests_total,
        0,
        "nothing reached the backend"
    );
    let m = s.sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_auth_total{method="none",outcome="missing"}"#
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_auth_total{method="jwt",outcome="wrong_audience"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_proxy_errors_total{reason="unauthorized"}"#
        ),
        Some(8.0),
        "{m}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_backend_gets_its_own_credential_and_claims_never_the_clients() {
    let s = setup(ResponseMode::Json).await;
    let token = jwt("tools:read");
    let resp = client()
        .post(s.sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-auth-subject", "mallory")
        .bearer_auth(&token)
        .body(call(1, "echo", json!({"text": "hi"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "hi");
    let seen = s.backend.stats().last_request_headers;
    assert_eq!(seen["authorization"], "Bearer backend-secret");
    assert_eq!(
        seen["x-auth-subject"], "alice",
        "spoofed claim header replaced"
    );
    assert_eq!(seen["x-auth-scopes"], "tools:read");
    assert!(
        !seen.values().any(|v| v.contains(&token)),
        "token passthrough"
    );

    // API keys, as X-API-Key, are consumed the same way.
    let resp = client()
        .post(s.sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(call(2, "add", json!({"a": 1, "b": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.backend.stats().last_request_headers;
    assert!(!seen.contains_key("x-api-key"));
    assert_eq!(seen["x-auth-subject"], "ci");
}

#[tokio::test(start_paused = true)]
async fn a_token_without_the_tools_scope_is_403_with_insufficient_scope() {
    let s = setup(ResponseMode::Json).await;
    let resp = post(
        s.sidecar.url("/mcp"),
        Some(&jwt("crawl")),
        call(7, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        challenge(&resp),
        "Bearer error=\"insufficient_scope\", scope=\"tools:read\", resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\""
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32011);
    // A batch with one forbidden element is refused whole.
    let batch = format!(
        "[{},{}]",
        call(1, "add", json!({"a": 1, "b": 1})),
        call(2, "sleep", json!({"ms": 1}))
    );
    let resp = post(s.sidecar.url("/mcp"), Some(&jwt("tools:read")), batch).await;
    assert_eq!(resp.status(), 403);
    assert!(
        s.backend.stats().by_tool.is_empty(),
        "{:?}",
        s.backend.stats().by_tool
    );
    let m = s.sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_auth_total{method="jwt",outcome="forbidden_tool"}"#
        ),
        Some(2.0),
        "{m}"
    );
}

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn tools_list_shows_only_callable_tools_as_json_and_sse() {
    for mode in [ResponseMode::Json, ResponseMode::Sse] {
        let s = setup(mode).await;
        let resp = post(
            s.sidecar.url("/mcp"),
            Some(&jwt("tools:read")),
            rpc(3, "tools/list", json!({})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v = if mode == ResponseMode::Sse {
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let mut events = EventReader::new(resp);
            event_json(&events.next_event().await.unwrap())
        } else {
            assert!(
                resp.headers()
                    .get("content-length")
                    .is_none_or(|l| l != "0")
            );
            resp.json().await.unwrap()
        };
        assert_eq!(tool_names(&v), vec!["echo", "add", "progress"], "{mode:?}");
        // Without rules (public upstream) the full list passes.
        let resp = post(
            s.sidecar.url("/public"),
            None,
            rpc(4, "tools/list", json!({})),
        )
        .await;
        let v: Value = if mode == ResponseMode::Sse {
            event_json(&EventReader::new(resp).next_event().await.unwrap())
        } else {
            resp.json().await.unwrap()
        };
        assert_eq!(tool_names(&v).len(), 6, "{mode:?}");
        // A principal that may call no tool at all is refused tools/list.
        let crawl_only = EC_P256
            .mint(&token::claims(
                ISS,
                AUD,
                "bob",
                "other",
                Duration::from_secs(60),
            ))
            .unwrap();
        let resp = post(
            s.sidecar.url("/mcp"),
            Some(&crawl_only),
            rpc(5, "tools/list", json!({})),
        )
        .await;
        assert_eq!(resp.status(), 403);
    }
}

#[tokio::test]
async fn legacy_transport_answers_are_filtered_on_the_stream() {
    let s = setup(ResponseMode::Json).await;
    let token = EC_P256
        .mint(&token::claims(
            ISS,
            "https://mcp.example.test/legacy",
            "alice",
            "tools:read",
            Duration::from_secs(3600),
        ))
        .unwrap();
    let resp = client()
        .get(s.sidecar.url("/legacy/sse"))
        .header("accept", "text/event-stream")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = EventReader::new(resp);
    let endpoint = events.next_event().await.unwrap();
    let url = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_owned();
    let resp = client()
        .post(s.sidecar.url(&url))
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(rpc(9, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let v = event_json(&events.next_event().await.unwrap());
    assert_eq!(v["id"], 9);
    assert_eq!(tool_names(&v), vec!["echo", "add", "progress"]);
}

#[tokio::test(start_paused = true)]
async fn public_upstreams_need_no_token_and_keep_the_clients_headers() {
    let s = setup(ResponseMode::Json).await;
    let resp = client()
        .post(s.sidecar.url("/public"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("authorization", "Bearer for-the-backend")
        .header("x-auth-subject", "mallory")
        .body(call(1, "echo", json!({"text": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.backend.stats().last_request_headers;
    assert_eq!(seen["authorization"], "Bearer for-the-backend");
    assert!(
        !seen.contains_key("x-auth-subject"),
        "claim headers are always stripped"
    );
}

#[tokio::test(start_paused = true)]
async fn protected_resource_metadata_is_served_without_a_token() {
    let s = setup(ResponseMode::Json).await;
    // Per mount, and at the root (two protected mounts: the root describes `public_url`).
    for (path, resource) in [
        ("/.well-known/oauth-protected-resource/mcp", AUD),
        (
            "/.well-known/oauth-protected-resource",
            "https://mcp.example.test",
        ),
    ] {
        let resp = client().get(s.sidecar.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["resource"], resource, "{path}");
        assert_eq!(v["authorization_servers"], json!([ISS]));
        assert_eq!(v["scopes_supported"], json!(["crawl", "tools:read"]));
    }
    let v: Value = client()
        .get(
            s.sidecar
                .url("/.well-known/oauth-protected-resource/legacy"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["resource"], "https://mcp.example.test/legacy");
    let resp = client()
        .get(
            s.sidecar
                .url("/.well-known/oauth-protected-resource/public"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "public upstreams have no metadata");
    assert_eq!(s.backend.stats().http_requests_total, 0);
}

#[tokio::test(start_paused = true)]
async fn foreign_hosts_are_421_and_foreign_origins_403() {
    let s = setup(ResponseMode::Json).await;
    let body = call(5, "echo", json!({"text": "x"}));
    let request = |host: &str, origin: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {host}\r\n{origin}content-type: application/json\r\naccept: {ACCEPT_BOTH}\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            jwt("tools:read"),
            body.len()
        )
    };
    let answer = raw_http(s.sidecar.addr, &request("rebind.attacker.example:8080", "")).await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert!(answer.contains("-32013"), "{answer}");
    let answer = raw_http(
        s.sidecar.addr,
        &request("127.0.0.1", "origin: http://attacker.example\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("-32012"), "{answer}");
    let answer = raw_http(
        s.sidecar.addr,
        &request("localhost:8080", "origin: http://localhost:3000\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.backend.stats().by_tool.get("echo"), Some(&1));
}

/// Filtering changes an answer's length: a `tools/list` SSE answer the backend framed by
/// `Content-Length` goes out re-framed (chunked), whole, not cut at the backend's length.
#[tokio::test]
async fn a_filtered_sse_answer_with_a_content_length_is_rechunked() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let tools: Vec<Value> = ["echo", "add", "secret"]
        .iter()
        .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
        .collect();
    let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools}});
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(format!("data: {answer}\n\n"), "text/event-stream"),
        )
        .mount(&backend)
        .await;
    let mut protected = upstream(format!("{}/mcp", backend.uri()), None);
    protected.auth.rules = rules();
    let mut c = config(vec![protected]);
    c.auth = AuthConfig {
        public_url: Some("https://mcp.example.test".into()),
        api_keys: vec![ApiKeyConfig {
            id: "ci".into(),
            key: Secret(API_KEY.into()),
            scopes: vec!["tools:read".into()],
        }],
        ..AuthConfig::default()
    };
    let sidecar = start(c).await;
    let body = rpc(3, "tools/list", json!({}));
    let raw = raw_http(
        sidecar.addr,
        &format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\nx-api-key: {API_KEY}\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            sidecar.addr,
            body.len()
        ),
    )
    .await;
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(head.contains("transfer-encoding: chunked"), "{raw}");
    assert!(!head.contains("content-length"), "{raw}");
    assert!(rest.ends_with("0\r\n\r\n"), "{raw}");
    let data = rest.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(tool_names(&v), vec!["echo", "add"]);
}
