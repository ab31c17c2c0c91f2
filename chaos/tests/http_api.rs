//! The HTTP fault proxy's control API over loopback, against the in-process fixture: each
//! endpoint does what it says, a fault added over the API fires on proxied requests, a bad body
//! is refused naming the key, and reset clears every fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mcp_chaos::http::{HttpFaultProxy, api};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(5);

struct Rig {
    _fixture: FixtureServer,
    proxy: Arc<HttpFaultProxy>,
    api: SocketAddr,
    client: reqwest::Client,
}

impl Rig {
    async fn new() -> Self {
        let fixture = FixtureServer::start(FixtureConfig {
            stateless: true,
            ..FixtureConfig::default()
        })
        .await
        .unwrap();
        let upstream = format!("http://{}", fixture.addr());
        let proxy = HttpFaultProxy::start(([127, 0, 0, 1], 0).into(), &upstream, 19)
            .await
            .unwrap();
        let proxy = Arc::new(proxy);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(api::serve(Arc::clone(&proxy), listener));
        Self {
            _fixture: fixture,
            proxy,
            api,
            client: reqwest::Client::builder().timeout(BOUND).build().unwrap(),
        }
    }

    /// One API request: status, `Allow` header and body (JSON, or `Null` when empty).
    async fn api(&self, method: &str, path: &str, body: &str) -> (u16, Option<String>, Value) {
        let res = self
            .client
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.api),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let allow = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, allow, body)
    }

    /// A JSON-RPC `ping` through the fault proxy: its status.
    async fn ping(&self, id: u64) -> u16 {
        self.client
            .post(format!("http://{}/mcp", self.proxy.local_addr()))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The `error` message of an error body.
fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap()
}

const STORM: &str = r#"{"name":"storm","match":{"rpc_method":"ping"},"status":503}"#;

#[tokio::test]
async fn a_fault_added_over_the_api_fires_on_proxied_requests_and_counts_its_decisions() {
    let rig = Rig::new().await;
    assert_eq!(rig.ping(1).await, 200);

    let (status, _, body) = rig.api("POST", "/faults", STORM).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"name": "storm", "percent": 100.0, "match": {"rpc_method": "ping"},
            "action": {"status": 503}, "counts": {"matched": 0, "fired": 0}})
    );
    for id in 2..5 {
        assert_eq!(rig.ping(id).await, 503);
    }
    let (status, _, body) = rig.api("GET", "/faults/storm", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counts"], json!({"matched": 3, "fired": 3}));

    let (status, _, _) = rig.api("DELETE", "/faults/storm", "").await;
    assert_eq!(status, 204);
    assert_eq!(rig.ping(5).await, 200);
    assert!(rig.proxy.faults().is_empty());
}

#[tokio::test]
async fn get_faults_lists_every_fault_in_the_order_they_are_checked() {
    let rig = Rig::new().await;
    let (status, _, body) = rig.api("GET", "/faults", "").await;
    assert_eq!((status, body), (200, json!([])));
    rig.api("POST", "/faults", STORM).await;
    let slow = r#"{"name":"slow","percent":25,"match":{"path":"/mcp","http_method":"post"},"delay":"1500ms"}"#;
    assert_eq!(rig.api("POST", "/faults", slow).await.0, 201);

    let (status, _, body) = rig.api("GET", "/faults", "").await;
    assert_eq!(status, 200);
    let faults = body.as_array().unwrap();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0]["name"], "storm");
    assert_eq!(
        faults[1],
        json!({"name": "slow", "percent": 25.0,
            "match": {"path": "/mcp", "http_method": "POST"},
            "action": {"delay": "1s 500ms"}, "counts": {"matched": 0, "fired": 0}})
    );
}

#[tokio::test]
async fn a_bad_fault_body_is_refused_naming_the_key() {
    let rig = Rig::new().await;
    for (body, names) in [
        (r#"{"name":"x","statuss":500}"#, "unknown field `statuss`"),
        (
            r#"{"name":"x","match":{"path":5},"status":500}"#,
            "match.path: invalid type",
        ),
        (
            r#"{"name":"x","percent":"half","status":500}"#,
            "percent: invalid type",
        ),
        (r#"{"name":"x","status":null}"#, "status: null"),
        (r#"{"name":"x","delay":"soon"}"#, "`delay` = \"soon\""),
        (
            r#"{"name":"x","status":500,"delay":"1s"}"#,
            "exactly one action",
        ),
        (r#"{"status":500}"#, "missing field `name`"),
        (
            r#"{"name":"x","percent":150,"status":500}"#,
            "percent must be between 0 and 100",
        ),
        (r#"{"name":"x","status":101}"#, "status 101"),
        (r#"{"name":"","status":500}"#, "a fault needs a name"),
        (r#"[1]"#, "expected a JSON object"),
        ("{", "body: invalid JSON"),
        ("", "body: invalid JSON"),
    ] {
        let (status, _, answer) = rig.api("POST", "/faults", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error(&answer).contains(names), "{body}: {answer}");
        assert_eq!(answer["status"], 400);
    }
    assert!(rig.proxy.faults().is_empty());
}

#[tokio::test]
async fn a_duplicate_name_is_a_conflict_and_leaves_the_first_fault() {
    let rig = Rig::new().await;
    assert_eq!(rig.api("POST", "/faults", STORM).await.0, 201);
    let other = r#"{"name":"storm","status":500}"#;
    let (status, _, body) = rig.api("POST", "/faults", other).await;
    assert_eq!(status, 409, "{body}");
    assert!(error(&body).contains("`storm` exists already"), "{body}");
    assert_eq!(rig.proxy.faults().len(), 1);
    assert_eq!(rig.ping(1).await, 503);
}

#[tokio::test]
async fn an_unknown_fault_is_404_naming_it() {
    let rig = Rig::new().await;
    for method in ["GET", "DELETE"] {
        let (status, _, body) = rig.api(method, "/faults/ghost", "").await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(error(&body), "fault `ghost` not found");
    }
}

#[tokio::test]
async fn a_name_is_addressed_percent_encoded() {
    let rig = Rig::new().await;
    let spaced = r#"{"name":"open circuit","status":503}"#;
    assert_eq!(rig.api("POST", "/faults", spaced).await.0, 201);
    let (status, _, body) = rig.api("GET", "/faults/open%20circuit", "").await;
    assert_eq!((status, &body["name"]), (200, &json!("open circuit")));
    assert_eq!(rig.api("DELETE", "/faults/open%20circuit", "").await.0, 204);
    let (status, _, body) = rig.api("GET", "/faults/%ff", "").await;
    assert_eq!(status, 400);
    assert!(error(&body).contains("not UTF-8"), "{body}");
}

#[tokio::test]
async fn reset_removes_every_fault() {
    let rig = Rig::new().await;
    rig.api("POST", "/faults", STORM).await;
    let other = r#"{"name":"other","malformed_body":true}"#;
    assert_eq!(rig.api("POST", "/faults", other).await.0, 201);
    assert_eq!(rig.ping(1).await, 503);

    let (status, _, body) = rig.api("POST", "/reset", "").await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(rig.api("GET", "/faults", "").await.2, json!([]));
    assert_eq!(rig.ping(2).await, 200);
}

#[tokio::test]
async fn version_unknown_paths_and_wrong_methods_are_answered_clearly() {
    let rig = Rig::new().await;
    let (status, _, body) = rig.api("GET", "/version", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    for path in ["/", "/nope", "/faults/a/b", "/proxies"] {
        let (status, _, body) = rig.api("GET", path, "").await;
        assert_eq!(status, 404, "{path}");
        assert!(
            error(&body).starts_with("no such endpoint"),
            "{path}: {body}"
        );
    }
    for (method, path, allow) in [
        ("PUT", "/faults", "GET, POST"),
        ("DELETE", "/faults", "GET, POST"),
        ("POST", "/faults/storm", "GET, DELETE"),
        ("GET", "/reset", "POST"),
        ("POST", "/version", "GET"),
    ] {
        let (status, got, body) = rig.api(method, path, "").await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
        assert!(error(&body).contains(method), "{body}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let rig = Rig::new().await;
    let big = format!(r#"{{"name":"x","tool_error":"{}"}}"#, "a".repeat(64 * 1024));
    let (status, _, body) = rig.api("POST", "/faults", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(error(&body).contains("larger than 65536 bytes"), "{body}");
    // Just under the bound is read and taken.
    let fits = format!(r#"{{"name":"x","tool_error":"{}"}}"#, "a".repeat(60 * 1024));
    assert_eq!(rig.api("POST", "/faults", &fits).await.0, 201);
}

/// Sends raw bytes to the API; the status line's code, or `None` when the connection closed
/// without one.
async fn raw(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut res = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut res))
        .await
        .unwrap()
        .ok()?;
    let res = String::from_utf8_lossy(&res);
    res.get(9..12)?.parse().ok()
}

#[tokio::test]
async fn malformed_requests_get_an_error_and_the_api_keeps_serving() {
    let rig = Rig::new().await;
    let bad: [&[u8]; 4] = [
        b"NOT HTTP\r\n\r\n",
        b"POST /faults HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\n\xff\xfe\x00\x01\x02",
        b"POST /faults HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\n",
        b"GET /faults/%e2%82 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ];
    for request in bad {
        if let Some(status) = raw(rig.api, request).await {
            assert!((400..500).contains(&status), "{status}");
        }
    }
    assert_eq!(rig.api("GET", "/faults", "").await.0, 200);
}
