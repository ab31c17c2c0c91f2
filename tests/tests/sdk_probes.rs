//! Protocol probes against real backends (`@modelcontextprotocol/server-everything` and the Python
//! SDK's `MCPServer`), sent byte for byte the same directly and through the sidecar: newer-protocol
//! probes (`server/discover` with the 2026-07-28 headers) and unsupported `MCP-Protocol-Version`
//! values must reach the backend and come back unchanged, so a client sees the backend's own 4xx
//! (and falls back) rather than a 5xx from the sidecar.
//!
//! Needs `scripts/test-deps.sh`; without it the tests fail with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_e2e_tests::sdk::Backend;
use mcp_e2e_tests::{
    ACCEPT_BOTH, RunningSidecar, client, config, initialize, rpc, start, upstream,
};
use serde_json::{Value, json};

/// Status, content type and JSON body of one POST.
async fn post(url: &str, headers: &[(&str, &str)], body: String) -> (u16, String, Value) {
    let mut request = client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

/// A session on `url` (initialize + initialized); its id.
async fn session(url: &str) -> String {
    let response = client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(response.bytes().await);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let (status, ..) = post(
        url,
        &[
            ("mcp-session-id", &id),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        note,
    )
    .await;
    assert_eq!(status, 202);
    id
}

async fn sidecar_for(backend: &Backend) -> RunningSidecar {
    start(config(vec![upstream(backend.url("/mcp"), None)])).await
}

const DISCOVER_HEADERS: [(&str, &str); 2] = [
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "server/discover"),
];

/// `server/discover` as a 2026-07-28 client sends it (the envelope rides in `_meta`).
fn discover() -> String {
    rpc(
        1,
        "server/discover",
        json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }}),
    )
}

#[tokio::test]
async fn server_discover_probe_gets_server_everythings_own_4xx_through_the_sidecar() {
    let backend = Backend::everything("streamableHttp").await;
    let sidecar = sidecar_for(&backend).await;
    let direct = post(&backend.url("/mcp"), &DISCOVER_HEADERS, discover()).await;
    let proxied = post(&sidecar.url("/mcp"), &DISCOVER_HEADERS, discover()).await;
    assert_eq!(proxied, direct);
    assert!((400..500).contains(&proxied.0), "{proxied:?}");
    sidecar.stop().await;
}

#[tokio::test]
async fn server_discover_probe_reaches_a_2026_capable_python_backend_through_the_sidecar() {
    let backend = Backend::python(&["streamable"]).await;
    let sidecar = sidecar_for(&backend).await;
    let direct = post(&backend.url("/mcp"), &DISCOVER_HEADERS, discover()).await;
    let proxied = post(&sidecar.url("/mcp"), &DISCOVER_HEADERS, discover()).await;
    assert_eq!(proxied, direct);
    assert_eq!(proxied.0, 200, "{proxied:?}");
    assert!(
        proxied.2["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28"))),
        "{proxied:?}"
    );
    // Without the 2026 headers the same probe is the stateful server's 400, also unchanged.
    let direct = post(&backend.url("/mcp"), &[], discover()).await;
    let proxied = post(&sidecar.url("/mcp"), &[], discover()).await;
    assert_eq!(proxied, direct);
    assert_eq!(proxied.0, 400, "{proxied:?}");
    sidecar.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_version_gets_the_backends_own_400_through_the_sidecar() {
    for backend in [
        Backend::everything("streamableHttp").await,
        Backend::python(&["streamable"]).await,
    ] {
        let sidecar = sidecar_for(&backend).await;
        let mut seen = Vec::new();
        for url in [backend.url("/mcp"), sidecar.url("/mcp")] {
            let id = session(&url).await;
            let headers = [
                ("mcp-session-id", id.as_str()),
                ("mcp-protocol-version", "1999-01-01"),
            ];
            let (status, content_type, body) =
                post(&url, &headers, rpc(2, "tools/list", json!({}))).await;
            let body =
                serde_json::from_str::<Value>(&body.to_string().replace(&id, "<session>")).unwrap();
            seen.push((status, content_type, body));
        }
        assert_eq!(seen[1], seen[0], "through the sidecar vs direct");
        assert_eq!(seen[0].0, 400, "{:?}", seen[0]);
        sidecar.stop().await;
    }
}

#[tokio::test]
async fn ended_session_gets_the_backends_own_answer_through_the_sidecar() {
    for backend in [
        Backend::everything("streamableHttp").await,
        Backend::python(&["streamable"]).await,
    ] {
        let sidecar = sidecar_for(&backend).await;
        let mut seen = Vec::new();
        for url in [backend.url("/mcp"), sidecar.url("/mcp")] {
            let id = session(&url).await;
            let headers = [
                ("mcp-session-id", id.as_str()),
                ("mcp-protocol-version", "2025-06-18"),
            ];
            let deleted = client()
                .delete(&url)
                .header("mcp-session-id", &id)
                .header("mcp-protocol-version", "2025-06-18")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let after = post(&url, &headers, rpc(3, "tools/list", json!({}))).await;
            seen.push((deleted, after));
        }
        assert_eq!(seen[1], seen[0], "through the sidecar vs direct");
        assert_eq!(seen[0].0, 200);
        assert!(
            matches!(seen[0].1.0, 400 | 404),
            "an ended session is refused: {:?}",
            seen[0]
        );
        sidecar.stop().await;
    }
}
