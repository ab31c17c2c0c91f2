//! Rate limits through the real sidecar and the fixture MCP server, on tokio's paused clock: a
//! burst and its 429 (headers, JSON-RPC error, Retry-After that really is enough), notifications
//! that pass while requests are limited, rules that interact, shadow mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{ACCEPT_BOTH, RunningSidecar, call, client, metric_value, start};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::Config;
use serde_json::{Value, json};

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// A sidecar in front of `backend` with `extra` TOML (sections before `[[upstream]]`).
async fn sidecar(backend: &FixtureServer, extra: &str) -> RunningSidecar {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n",
        backend.mcp_url()
    );
    start(Config::from_toml_with_env(&text, &|_| None).unwrap()).await
}

/// POSTs `body` as the client at `ip` (the sidecar trusts 127.0.0.1's X-Forwarded-For).
async fn post(sidecar: &RunningSidecar, ip: &str, body: String) -> reqwest::Response {
    client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn echo(id: u64) -> String {
    call(id, "echo", json!({"text": "hi"}))
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn error_of(resp: reqwest::Response) -> Value {
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_object(), "not a JSON-RPC error: {body}");
    body
}

const TRUSTED: &str = "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n";

#[tokio::test(start_paused = true)]
async fn a_burst_gets_exactly_burst_admissions_then_429s_until_retry_after() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[[rate_limit]]\nname = \"burst\"\nkey = [\"principal\"]\nrate = 2\nper = \"10s\"\n\
         burst = 3\n",
    )
    .await;
    for (id, remaining) in [(1, 2), (2, 1), (3, 0)] {
        let resp = post(&sidecar, "203.0.113.1", echo(id)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "ratelimit-policy"),
            "\"burst\";q=2;w=10;mcp-burst=3"
        );
        let state = header(&resp, "ratelimit");
        assert!(
            state.starts_with(&format!("\"burst\";r={remaining};t=")),
            "{state}"
        );
    }
    let resp = post(&sidecar, "203.0.113.1", echo(4)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    // One token every 5 s; the burst was spent just now.
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        header(&resp, "ratelimit-policy"),
        "\"burst\";q=2;w=10;mcp-burst=3"
    );
    assert_eq!(
        header(&resp, "ratelimit"),
        format!("\"burst\";r=0;t={retry}")
    );
    let body = error_of(resp).await;
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["code"], -32014);
    assert_eq!(body["error"]["data"]["reason"], "rate_limited");
    assert_eq!(body["error"]["data"]["rule"], "burst");
    assert_eq!(body["error"]["data"]["retry_after"], retry);
    // Still refused a moment later, and the backend never saw the refused calls.
    assert_eq!(post(&sidecar, "203.0.113.1", echo(5)).await.status(), 429);
    assert_eq!(backend.stats().by_tool.get("echo"), Some(&3));
    // After the advertised Retry-After the next request passes.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(post(&sidecar, "203.0.113.1", echo(6)).await.status(), 200);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_rate_limit_admitted_total{rule=\"burst\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_rate_limit_rejected_total{mode=\"enforce\",rule=\"burst\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_proxy_errors_total{reason=\"rate_limited\"}"
        ),
        Some(2.0)
    );
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn notifications_cancellations_and_responses_pass_while_requests_are_limited() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[[rate_limit]]\nname = \"one\"\nkey = []\nrate = 1\nper = \"60s\"\n",
    )
    .await;
    assert_eq!(post(&sidecar, "203.0.113.1", echo(1)).await.status(), 200);
    assert_eq!(post(&sidecar, "203.0.113.1", echo(2)).await.status(), 429);
    let messages = [
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 2, "reason": "user"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress",
               "params": {"progressToken": "p", "progress": 1}}),
        json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}}),
    ];
    for _ in 0..5 {
        for m in &messages {
            let resp = post(&sidecar, "203.0.113.1", m.to_string()).await;
            assert_eq!(resp.status(), 202, "{m}");
            assert!(resp.headers().get("ratelimit").is_none());
        }
    }
    let stats = backend.stats();
    assert_eq!(stats.notifications_total, 15);
    assert_eq!(stats.responses_total, 5);
    // Session DELETE is never limited either: the backend answers it (405: it is stateless).
    let resp = client()
        .delete(sidecar.url("/mcp"))
        .header("mcp-session-id", "s")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn per_tool_and_per_principal_rules_interact_as_documented() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        &format!(
            "{TRUSTED}\
             [[rate_limit]]\nname = \"per-principal\"\nkey = [\"principal\"]\nrate = 5\n\
             per = \"60s\"\n\
             [[rate_limit]]\nname = \"adds\"\nkey = [\"principal\"]\nrate = 2\nper = \"60s\"\n\
             tools = [\"ad*\"]\n"
        ),
    )
    .await;
    let add = |id| call(id, "add", json!({"a": 1, "b": 2}));
    // Unauthenticated callers are keyed by client IP (from X-Forwarded-For, trusted here).
    for id in 0..2 {
        assert_eq!(post(&sidecar, "203.0.113.1", add(id)).await.status(), 200);
    }
    for id in 2..6 {
        let resp = post(&sidecar, "203.0.113.1", add(id)).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(
            header(&resp, "ratelimit-policy"),
            "\"per-principal\";q=5;w=60, \"adds\";q=2;w=60"
        );
        assert_eq!(error_of(resp).await["error"]["data"]["rule"], "adds");
    }
    // Refused `add` calls consumed nothing from the per-principal rule: 3 other calls remain.
    for id in 6..9 {
        assert_eq!(post(&sidecar, "203.0.113.1", echo(id)).await.status(), 200);
    }
    let resp = post(&sidecar, "203.0.113.1", echo(9)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        error_of(resp).await["error"]["data"]["rule"],
        "per-principal"
    );
    // Another client has its own buckets for both rules.
    assert_eq!(post(&sidecar, "203.0.113.2", add(10)).await.status(), 200);
    // Prepending entries to X-Forwarded-For does not pick the key: the rightmost hop the trusted
    // proxy did not vouch for is the client.
    let resp = post(&sidecar, "198.51.100.7, 203.0.113.1", echo(11)).await;
    assert_eq!(resp.status(), 429);
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_and_never_rejects() {
    let backend = fixture().await;
    let sidecar = sidecar(
        &backend,
        "[[rate_limit]]\nname = \"trial\"\nkey = []\nrate = 1\nper = \"60s\"\nshadow = true\n",
    )
    .await;
    for id in 0..10 {
        let resp = post(&sidecar, "203.0.113.1", echo(id)).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("ratelimit").is_none());
        assert!(resp.headers().get("ratelimit-policy").is_none());
    }
    assert_eq!(backend.stats().by_tool.get("echo"), Some(&10));
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_rate_limit_rejected_total{mode=\"shadow\",rule=\"trial\"}"
        ),
        Some(9.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_rate_limit_admitted_total{rule=\"trial\"}"
        ),
        Some(1.0)
    );
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn per_upstream_rules_only_apply_to_their_upstream() {
    let backend = fixture().await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"a\"\nurl = \"{url}\"\npath = \"/a\"\n\
         [[upstream.rate_limit]]\nname = \"a-only\"\nkey = []\nrate = 1\nper = \"60s\"\n\
         [[upstream]]\nname = \"b\"\nurl = \"{url}\"\npath = \"/b\"\n",
        url = backend.mcp_url()
    );
    let sidecar = start(Config::from_toml_with_env(&text, &|_| None).unwrap()).await;
    let send = |path: &'static str, id| {
        client()
            .post(sidecar.url(path))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(echo(id))
            .send()
    };
    assert_eq!(send("/a", 1).await.unwrap().status(), 200);
    assert_eq!(send("/a", 2).await.unwrap().status(), 429);
    for id in 3..8 {
        assert_eq!(send("/b", id).await.unwrap().status(), 200);
    }
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn authenticated_principals_get_their_own_buckets() {
    let backend = fixture().await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [auth]\npublic_url = \"http://127.0.0.1\"\n[[auth.api_keys]]\nid = \"alice\"\nkey = \"${{KEY_ALICE}}\"\n\
         [[auth.api_keys]]\nid = \"bob\"\nkey = \"${{KEY_BOB}}\"\n\
         [[rate_limit]]\nname = \"per-principal\"\nkey = [\"principal\"]\nrate = 2\nper = \"60s\"\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n",
        backend.mcp_url()
    );
    let env = |name: &str| match name {
        "KEY_ALICE" => Some("alice-key-0123456789abcdef".to_owned()),
        "KEY_BOB" => Some("bob-key-0123456789abcdef".to_owned()),
        _ => None,
    };
    let sidecar = start(Config::from_toml_with_env(&text, &env).unwrap()).await;
    let send = |key: &'static str, id| {
        client()
            .post(sidecar.url("/mcp"))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body(echo(id))
            .send()
    };
    // Same address, two principals: two buckets.
    for id in 0..2 {
        assert_eq!(
            send("alice-key-0123456789abcdef", id)
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let resp = send("alice-key-0123456789abcdef", 2).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(error_of(resp).await["id"], 2);
    assert_eq!(
        send("bob-key-0123456789abcdef", 3).await.unwrap().status(),
        200
    );
    // An unauthenticated request is refused by authentication first (401), never counted.
    let resp = post(&sidecar, "203.0.113.1", echo(4)).await;
    assert_eq!(resp.status(), 401);
    sidecar.stop().await;
}
