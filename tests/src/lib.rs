//! Shared helpers for the end-to-end tests: start a sidecar in-process on ephemeral ports, talk
//! to it, read its metrics and readiness.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_sidecar::Sidecar;
use mcp_sidecar::config::{AdminConfig, Config, ListenConfig, ShutdownConfig, UpstreamConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod attack;
pub mod raw;
/// A real `redis-server` per test (the fixtures crate's, shared with the binary's tests).
pub use mcp_fixtures::redis_server;

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

/// The fixture MCP server answering in JSON, stateless (no session needed): the plain backend
/// most tests put behind the sidecar.
pub async fn json_fixture() -> mcp_fixtures::FixtureServer {
    mcp_fixtures::FixtureServer::start(mcp_fixtures::FixtureConfig {
        response_mode: mcp_fixtures::ResponseMode::Json,
        stateless: true,
        ..mcp_fixtures::FixtureConfig::default()
    })
    .await
    .unwrap()
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
            ..AdminConfig::default()
        },
        // No drain delay: nothing balances load onto an in-process sidecar, and tests of the
        // delay set their own.
        shutdown: ShutdownConfig {
            drain_delay: Duration::ZERO,
            ..ShutdownConfig::default()
        },
        upstream: upstreams,
        limits: mcp_sidecar::config::LimitsConfig::default(),
        rate_limit: Vec::new(),
        auth: mcp_sidecar::config::AuthConfig::default(),
        cors: mcp_sidecar::config::CorsConfig::default(),
        // In memory: in-process sidecars run side by side, and a durable store is one file per
        // directory (the job tests give theirs a directory of its own).
        jobs: mcp_sidecar::config::JobsConfig::in_memory(),
        redis: None,
        tracing: mcp_sidecar::config::TracingConfig::default(),
    }
}

/// One upstream named `u` at `url` mounted at `path` (the URL's own path when `None`).
pub fn upstream(url: impl Into<String>, path: Option<&str>) -> UpstreamConfig {
    UpstreamConfig::new("u", url, path.map(str::to_owned))
}

/// Binds and serves `config` on the current runtime. A durable job store without a
/// `jobs.data_dir` becomes an in-memory one: in-process sidecars run side by side, and the
/// default directory (the user's) holds one store at a time.
pub async fn start(mut config: Config) -> RunningSidecar {
    if config.jobs.store == mcp_sidecar::config::StoreKind::Redb && config.jobs.data_dir.is_none() {
        config.jobs.store = mcp_sidecar::config::StoreKind::Memory;
    }
    let sidecar = Sidecar::bind(config).await.expect("sidecar binds");
    serve(sidecar)
}

/// Binds and serves the config in the file at `path` on the current runtime, as `run --config`
/// does: `POST /config/reload` on the admin listener reads the file again.
pub async fn start_from_file(path: &std::path::Path) -> RunningSidecar {
    let source = mcp_sidecar::reload::ConfigSource::file(path);
    let sidecar = Sidecar::bind_source(source).await.expect("sidecar binds");
    serve(sidecar)
}

fn serve(sidecar: Sidecar) -> RunningSidecar {
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

/// Real MCP SDK peers for the `sdk_*` tests: backends (server-everything, the Python SDK's
/// `MCPServer`) and client scripts (TypeScript and Python SDKs) from `tests/sdk`, installed by
/// `scripts/test-deps.sh`. Missing dependencies fail the test with a message naming that script.
pub mod sdk {
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
    use tokio::process::{Child, Command};

    const INSTALL_HINT: &str = "run scripts/test-deps.sh to install the pinned MCP SDKs";

    /// The repository root (this package lives in `<repo>/tests`).
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// `<repo>/tests/sdk`: the scripts, package.json and requirements.txt.
    pub fn sdk_dir() -> PathBuf {
        repo_root().join("tests/sdk")
    }

    /// The venv's Python (or `MCP_TEST_PYTHON`); panics with the install hint when it is missing.
    pub fn python() -> PathBuf {
        let python = std::env::var_os("MCP_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
        assert!(
            python.exists(),
            "{} not found: {INSTALL_HINT} (or set MCP_TEST_PYTHON)",
            python.display()
        );
        python
    }

    /// `node` (or `MCP_TEST_NODE`); panics with the install hint when the pinned packages are
    /// not in `tests/sdk/node_modules`.
    pub fn node() -> PathBuf {
        for package in ["sdk", "server-everything"] {
            let manifest = sdk_dir().join(format!(
                "node_modules/@modelcontextprotocol/{package}/package.json"
            ));
            assert!(
                manifest.exists(),
                "{} not found: {INSTALL_HINT}",
                manifest.display()
            );
        }
        std::env::var_os("MCP_TEST_NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("node"))
    }

    /// Collects a child's output lines (so its pipe never fills) for later assertions.
    fn drain(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                into.lock().unwrap().push(line);
            }
        });
    }

    /// A backend process on a loopback port it picked itself; killed when dropped.
    #[derive(Debug)]
    pub struct Backend {
        _child: Child,
        pub port: u16,
        output: Arc<Mutex<Vec<String>>>,
    }

    impl Backend {
        /// `@modelcontextprotocol/server-everything` in `streamableHttp` or `sse` mode.
        pub async fn everything(mode: &str) -> Self {
            let mut cmd = Command::new(node());
            cmd.arg(sdk_dir().join("everything.mjs")).arg(mode);
            Self::spawn(cmd, &format!("server-everything {mode}")).await
        }

        /// `tests/sdk/py_server.py` with these arguments (see its docstring).
        pub async fn python(args: &[&str]) -> Self {
            let mut cmd = Command::new(python());
            cmd.arg(sdk_dir().join("py_server.py")).args(args);
            Self::spawn(cmd, &format!("py_server.py {}", args.join(" "))).await
        }

        async fn spawn(mut cmd: Command, what: &str) -> Self {
            let mut child = cmd
                .current_dir(sdk_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e} ({INSTALL_HINT})"));
            let output = Arc::new(Mutex::new(Vec::new()));
            drain(child.stderr.take().unwrap(), output.clone());
            let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
            let port = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(line) = stdout.next_line().await.unwrap() {
                    if let Some(json) = line.strip_prefix("LISTENING ") {
                        let v: Value = serde_json::from_str(json).unwrap();
                        return v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                    }
                    output.lock().unwrap().push(line);
                }
                None
            })
            .await
            .ok()
            .flatten();
            let Some(port) = port else {
                panic!(
                    "{what} did not start listening within 30 s ({INSTALL_HINT}):\n{}",
                    output.lock().unwrap().join("\n")
                );
            };
            drain(stdout.into_inner(), output.clone());
            Self {
                _child: child,
                port,
                output,
            }
        }

        /// `http://127.0.0.1:PORT` + path.
        pub fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        /// Everything the backend printed so far (after its `LISTENING` line too).
        pub fn output(&self) -> String {
            self.output.lock().unwrap().join("\n")
        }
    }

    /// Runs a client script to completion (bounded) and returns the JSON line it printed last.
    pub async fn run_client(mut cmd: Command, what: &str) -> Value {
        let child = cmd
            .current_dir(sdk_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e} ({INSTALL_HINT})"));
        let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within 90 s"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{stderr}\n{stdout}",
            output.status
        );
        let line = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("{what} printed nothing:\n{stderr}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"))
    }

    /// Asserts two client reports' `compare` sections are equal, naming the first differing key.
    pub fn assert_same_observations(direct: &Value, other: &Value, what: &str) {
        let (a, b) = (&direct["compare"], &other["compare"]);
        assert!(
            a.is_object(),
            "{what}: direct run has no observations: {direct}"
        );
        if a == b {
            return;
        }
        let keys: std::collections::BTreeSet<&String> = a
            .as_object()
            .into_iter()
            .chain(b.as_object())
            .flat_map(|m| m.keys())
            .collect();
        for key in keys {
            assert_eq!(
                a.get(key),
                b.get(key),
                "{what}: `{key}` differs from the direct run (left: direct, right: {what})"
            );
        }
    }
}

/// POSTs an MCP body (with the headers MCP clients send) to `path` on the sidecar.
pub async fn post(sidecar: &RunningSidecar, path: &str, body: String) -> reqwest::Response {
    client()
        .post(sidecar.url(path))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// How many `tools/call`s of `tool` reached the fixture.
pub fn tool_calls(backend: &mcp_fixtures::FixtureServer, tool: &str) -> u64 {
    backend.stats().by_tool.get(tool).copied().unwrap_or(0)
}
