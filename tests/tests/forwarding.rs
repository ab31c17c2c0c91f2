//! Forwarding against wiremock: headers in and out, bodies and statuses unchanged, errors the
//! sidecar generates itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_e2e_tests::{client, config, start, upstream};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn request_headers_are_rewritten_and_mcp_headers_pass_unchanged() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    let mut c = config(vec![upstream(format!("{}/mcp", backend.uri()), None)]);
    // A loopback listener only serves loopback host names unless told otherwise (DNS rebinding).
    c.auth.allowed_hosts = Some(vec!["sidecar.example".into()]);
    let sidecar = start(c).await;

    let resp = client()
        .post(sidecar.url("/mcp?x=1"))
        .header("host", "sidecar.example")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "Sess-ABC_123")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", "41")
        .header("x-request-id", "client-rid-1")
        .header("x-forwarded-for", "192.0.2.7")
        .header("connection", "keep-alive, x-hop-secret")
        .header("x-hop-secret", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .body(mcp_e2e_tests::rpc(1, "ping", serde_json::json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-rid-1");

    let received = &backend.received_requests().await.unwrap()[0];
    let h = &received.headers;
    let backend_authority = backend.address().to_string();
    assert_eq!(h["host"], backend_authority.as_str());
    assert_eq!(received.url.query(), Some("x=1"));
    assert_eq!(h["accept"], "application/json, text/event-stream");
    assert_eq!(h["mcp-session-id"], "Sess-ABC_123");
    assert_eq!(h["mcp-protocol-version"], "2025-06-18");
    assert_eq!(h["last-event-id"], "41");
    assert_eq!(h["x-request-id"], "client-rid-1");
    assert_eq!(h["x-forwarded-for"], "192.0.2.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    for hop in ["x-hop-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(!h.contains_key(hop), "{hop} reached the backend");
    }
    assert_ne!(
        h.get("connection").map(|v| v.to_str().unwrap()),
        Some("keep-alive, x-hop-secret")
    );
}

#[tokio::test]
async fn request_id_is_generated_when_missing() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(405))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let resp = client().get(sidecar.url("/mcp")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(rid.len(), 36, "uuid expected, got {rid}");
    let received = &backend.received_requests().await.unwrap()[0];
    assert_eq!(received.headers["x-request-id"], rid.as_str());
}

#[tokio::test]
async fn response_status_body_and_headers_pass_unchanged() {
    let backend = MockServer::start().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"Session not found"}}"#;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("mcp-session-id", "sess-9")
                .insert_header("x-custom", "kept")
                .insert_header("content-type", "application/json")
                .set_body_string(body),
        )
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .body(mcp_e2e_tests::rpc(1, "ping", serde_json::json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["mcp-session-id"], "sess-9");
    assert_eq!(resp.headers()["x-custom"], "kept");
    assert_eq!(resp.text().await.unwrap(), body);
}

#[tokio::test]
async fn accepted_notification_keeps_empty_202() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.bytes().await.unwrap().is_empty());
    let received = &backend.received_requests().await.unwrap()[0];
    assert_eq!(
        received.body,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
}

#[tokio::test]
async fn large_request_body_streams_through_unchanged() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    // A large but valid JSON-RPC request (close to the 4 MiB limit) arrives byte for byte.
    let filler = "x".repeat(3_000_000);
    let big = mcp_e2e_tests::call(1, "echo", json!({ "text": filler })).into_bytes();
    let resp = client()
        .post(sidecar.url("/mcp"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.received_requests().await.unwrap()[0].body, big);
}

#[tokio::test]
async fn paths_below_the_mount_map_to_the_backend_prefix() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/sse"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/", backend.uri()),
        Some("/legacy"),
    )]))
    .await;
    assert_eq!(
        client()
            .get(sidecar.url("/legacy/sse"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = client()
        .get(sidecar.url("/legacyx/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn unmounted_path_and_bad_method_and_dot_segments_are_refused() {
    let backend = MockServer::start().await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let resp = client()
        .post(sidecar.url("/other"))
        .body(mcp_e2e_tests::rpc(5, "ping", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32004);

    let resp = client().put(sidecar.url("/mcp")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE, OPTIONS");

    let raw = mcp_e2e_tests::raw_http(
        sidecar.addr,
        "GET /mcp/%2e%2e/admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(
        backend.received_requests().await.unwrap().is_empty(),
        "refused requests reached the backend"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_the_jsonrpc_id() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sidecar = start(config(vec![upstream(
        format!("http://127.0.0.1:{port}/mcp"),
        None,
    )]))
    .await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .body(mcp_e2e_tests::call(42, "echo", json!({"text": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 42);
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(v["error"]["data"]["reason"], "upstream_unreachable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    // One attempt and two retries: a refused connection sent nothing, so any request is retried.
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(
            r#"mcp_sidecar_upstream_connection_errors_total{kind="connect",upstream="u"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn options_and_delete_are_forwarded() {
    let backend = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(ResponseTemplate::new(204).insert_header("access-control-allow-origin", "*"))
        .mount(&backend)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, sidecar.url("/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = client()
        .delete(sidecar.url("/mcp"))
        .header("mcp-session-id", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reqs = backend.received_requests().await.unwrap();
    assert_eq!(reqs[1].headers["mcp-session-id"], "s1");
}

#[tokio::test]
async fn bodies_that_are_not_jsonrpc_are_refused_before_the_backend() {
    let backend = MockServer::start().await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let cases = [
        ("{\"jsonrpc\":\"2.0\",\"id\":1,", 400, -32700),
        ("[]", 400, -32600),
        ("{\"id\":1,\"method\":\"ping\"}", 400, -32600),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
            400,
            -32600,
        ),
    ];
    for (body, status, code) in cases {
        let resp = client()
            .post(sidecar.url("/mcp"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    assert!(backend.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_its_id_unknown() {
    let backend = MockServer::start().await;
    let mut cfg = config(vec![upstream(format!("{}/mcp", backend.uri()), None)]);
    cfg.listen.max_body_bytes = 1024;
    let sidecar = start(cfg).await;
    let body = mcp_e2e_tests::call(1, "echo", json!({ "text": "x".repeat(2048) }));
    // Announced length over the limit: refused without reading the body.
    let resp = client()
        .post(sidecar.url("/mcp"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32007);
    // Chunked, no length announced: refused once the limit is crossed.
    let stream = futures_util::stream::iter(
        body.into_bytes()
            .chunks(256)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = client()
        .post(sidecar.url("/mcp"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(backend.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_plain_listener_speaks_http1_and_http2_with_prior_knowledge() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&backend)
        .await;
    let sidecar = start(config(vec![upstream(
        format!("{}/mcp", backend.uri()),
        None,
    )]))
    .await;
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (client(), reqwest::Version::HTTP_11),
        (h2c, reqwest::Version::HTTP_2),
    ] {
        let resp = client
            .post(sidecar.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .body(mcp_e2e_tests::rpc(1, "ping", json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "{}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_or_half_a_head_is_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = MockServer::start().await;
    let mut c = config(vec![upstream(format!("{}/mcp", backend.uri()), None)]);
    c.listen.header_read_timeout = std::time::Duration::from_secs(3);
    let sidecar = start(c).await;
    for sent in [&b""[..], b"POST /mcp HTTP/1.1\r\nhost: x\r\n"] {
        let mut s = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let opened = tokio::time::Instant::now();
        let mut buf = [0u8; 256];
        // Whatever hyper says before closing (nothing, or a 408), the connection ends.
        while s.read(&mut buf).await.unwrap_or(0) > 0 {}
        let waited = opened.elapsed();
        assert!(
            waited >= std::time::Duration::from_secs(3)
                && waited < std::time::Duration::from_secs(4),
            "{sent:?}: closed after {waited:?}"
        );
    }
}

#[tokio::test]
async fn a_backend_that_answers_garbage_is_a_502_that_says_so() {
    // Answers every request with something that is not HTTP, and keeps accepting (the
    // reachability check connects too).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
                }
            });
        }
    });
    let sidecar = start(config(vec![upstream(format!("http://{addr}/mcp"), None)])).await;
    let resp = mcp_e2e_tests::post(
        &sidecar,
        "/mcp",
        mcp_e2e_tests::call(7, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["data"]["reason"], "upstream_failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("invalid response from the backend"),
        "{message}"
    );
}
