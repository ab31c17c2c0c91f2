//! Shared helpers for the end-to-end tests: start a sidecar in-process on ephemeral ports, talk
//! to it, read its metrics and readiness.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_sidecar::Sidecar;
use mcp_sidecar::config::{AdminConfig, Config, ListenConfig, ShutdownConfig, UpstreamConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A sidecar running on the test's runtime.
#[derive(Debug)]
pub struct RunningSidecar {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl RunningSidecar {
    /// `http://ADDR` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADMIN` + path.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Starts graceful shutdown (like SIGTERM).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        (&mut self.task).await.unwrap();
    }

    /// The Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (on the test's clock) until `/readyz` answers `status`.
    pub async fn wait_readyz(&self, status: u16) -> serde_json::Value {
        for _ in 0..200 {
            let resp = reqwest::get(self.admin_url("/readyz")).await.unwrap();
            if resp.status().as_u16() == status {
                return resp.json().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/readyz never answered {status}");
    }
}

/// A config on ephemeral loopback ports with these upstreams.
pub fn config(upstreams: Vec<UpstreamConfig>) -> Config {
    Config {
        listen: ListenConfig {
            addr: "127.0.0.1:0".into(),
            ..ListenConfig::default()
        },
        admin: AdminConfig {
            addr: "127.0.0.1:0".into(),
        },
        shutdown: ShutdownConfig::default(),
        upstream: upstreams,
    }
}

/// One upstream named `u` at `url` mounted at `path` (the URL's own path when `None`).
pub fn upstream(url: impl Into<String>, path: Option<&str>) -> UpstreamConfig {
    UpstreamConfig::new("u", url, path.map(str::to_owned))
}

/// Binds and serves `config` on the current runtime.
pub async fn start(config: Config) -> RunningSidecar {
    let sidecar = Sidecar::bind(config).await.expect("sidecar binds");
    let addr = sidecar.local_addr().unwrap();
    let admin = sidecar.admin_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sidecar.serve(async move {
        let _ = rx.await;
    }));
    RunningSidecar {
        addr,
        admin,
        shutdown: Some(tx),
        task,
    }
}

/// A reqwest client that never pools connections across tests and speaks HTTP/1.1.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .unwrap()
}

/// JSON-RPC request body.
pub fn rpc(id: u64, method: &str, params: serde_json::Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// `tools/call` body.
pub fn call(id: u64, tool: &str, arguments: serde_json::Value) -> String {
    rpc(
        id,
        "tools/call",
        serde_json::json!({"name": tool, "arguments": arguments}),
    )
}

/// The `initialize` body.
pub fn initialize(id: u64) -> String {
    rpc(
        id,
        "initialize",
        serde_json::json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}
        }),
    )
}

/// The value of a sample line `name{labels} value` in Prometheus text, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Accept header MCP clients send on POST.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// Sends raw bytes as one HTTP/1.1 request (with `Connection: close`) and returns the raw answer.
/// For requests an HTTP client library would normalise (dot segments, odd headers).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a streaming response event by event (split on blank lines), recording when each arrived.
#[derive(Debug)]
pub struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next complete event or comment block (without the blank line), `None` at the end of the
    /// stream; `Err` if the stream broke.
    pub async fn next(&mut self) -> Result<Option<String>, reqwest::Error> {
        loop {
            if let Some(pos) = self.buffer.find("\n\n") {
                let event = self.buffer[..pos].to_owned();
                self.buffer.drain(..pos + 2);
                return Ok(Some(event));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Ok(None),
            }
        }
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self) -> Option<String> {
        loop {
            let event = self.next().await.unwrap()?;
            if !event.lines().all(|l| l.starts_with(':')) {
                return Some(event);
            }
        }
    }
}

/// The `data:` payload of an SSE event, parsed as JSON.
pub fn event_json(event: &str) -> serde_json::Value {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    serde_json::from_str(&data.join("\n"))
        .unwrap_or_else(|e| panic!("bad event data {event:?}: {e}"))
}

/// Polls `check` on the test's clock until it is true (bounded).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
