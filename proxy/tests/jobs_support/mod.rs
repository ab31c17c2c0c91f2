//! What the job end-to-end tests share: the `mcp-sidecar` binary started with a TOML config in
//! its own directory (its job store included), the fixture backend, JSON-RPC bodies, a bounded
//! wait for a job's status, and an SSE reader for `GET /jobs/{id}/events`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use serde_json::{Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mcp-sidecar");

/// Longest a test waits for anything (start, a status, an event): far above what any step
/// takes, so a loaded machine slows a test down instead of failing it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);
/// Interval of the bounded poll loops.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A running sidecar binary; killed (SIGKILL) when dropped.
pub(crate) struct Sidecar {
    child: Child,
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    pub(crate) client: reqwest::Client,
    /// The directory of a sidecar made by [`Sidecar::for_backend`], removed with it.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    /// Writes `config` to `dir/sidecar.toml`, starts `mcp-sidecar run` on it with `env`, and
    /// waits for its `listening` log line (the ports it bound).
    pub(crate) async fn start(config: &str, dir: &Path, env: &[(&str, &str)]) -> Sidecar {
        let path = dir.join("sidecar.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            // The default data directory is this test's too, should a config leave it out.
            .env("STATE_DIRECTORY", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "mcp-sidecar listening"
                    && let Some(tx) = tx.take()
                {
                    let addr = |k: &str| v[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
                    let _ = tx.send((addr("listen"), addr("admin")));
                }
                kept.lock().unwrap().push(line);
            }
        });
        let (listen, admin) = match tokio::time::timeout(PATIENCE, rx).await {
            Ok(Ok(addrs)) => addrs,
            _ => panic!(
                "the sidecar did not start listening: {:#?}",
                log.lock().unwrap()
            ),
        };
        let client = reqwest::Client::builder()
            .timeout(PATIENCE)
            .no_proxy()
            .build()
            .unwrap();
        Sidecar {
            child,
            listen,
            admin,
            log,
            client,
            dir: None,
        }
    }

    /// A sidecar in a directory of its own (its job store included) for `backend_url`, with
    /// [`config`]'s `jobs`, `upstream` and `top` additions and `env`.
    pub(crate) async fn for_backend(
        backend_url: &str,
        jobs: &str,
        upstream: &str,
        top: &str,
        env: &[(&str, &str)],
    ) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(backend_url, &data_dir(dir.path()), jobs, upstream, top);
        let mut sidecar = Sidecar::start(&cfg, dir.path(), env).await;
        sidecar.dir = Some(dir);
        sidecar
    }

    /// The job store directory of a sidecar made by [`Sidecar::for_backend`].
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.as_ref().unwrap().path().join("jobs")
    }

    /// `http://<listen><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// `http://<admin><path>`.
    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The log lines written so far (for failure messages).
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `kill -9`: no shutdown of any kind.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (the process goes on through its shutdown).
    pub(crate) fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`TERM`, `HUP`, ...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The log lines, as they keep coming (also after the process exited).
    pub(crate) fn log_handle(&self) -> Arc<Mutex<Vec<String>>> {
        self.log.clone()
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub(crate) async fn wait_exit(mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the sidecar did not exit");
            tokio::time::sleep(POLL).await;
        }
    }

    /// POSTs `body` to `path` as an MCP client would, with `headers` added.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// Submits `body` to the mount `/mcp` with `Prefer: respond-async`; asserts the 202 and
    /// returns the job document.
    pub(crate) async fn submit(&self, body: &str, headers: &[(&str, &str)]) -> Value {
        let mut all = vec![("prefer", "respond-async")];
        all.extend_from_slice(headers);
        let resp = self.post("/mcp", body, &all).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 202, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// [`Sidecar::submit`] of an owned body without extra headers (for many at once).
    pub(crate) async fn submit_owned(&self, body: String) -> Value {
        self.submit(&body, &[]).await
    }

    /// `method` on a job API path, with `headers`: (status, headers, body).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self.client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let head = resp.headers().clone();
        (status, head, resp.text().await.unwrap())
    }

    /// `GET /jobs/{id}` as JSON (asserting 200).
    pub(crate) async fn job(&self, id: &str, headers: &[(&str, &str)]) -> Value {
        let (status, _, body) = self
            .call(reqwest::Method::GET, &format!("/jobs/{id}"), headers)
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /jobs/{id}/result` as JSON (asserting 200).
    pub(crate) async fn result(&self, id: &str, headers: &[(&str, &str)]) -> Value {
        let (status, _, body) = self
            .call(reqwest::Method::GET, &format!("/jobs/{id}/result"), headers)
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls the job every [`POLL`] until its status is `want` (panics after [`PATIENCE`],
    /// or when it reaches another terminal status).
    pub(crate) async fn wait_status(
        &self,
        id: &str,
        want: &str,
        headers: &[(&str, &str)],
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.job(id, headers).await;
            let status = job["status"].as_str().unwrap_or_default().to_owned();
            if status == want {
                return job;
            }
            let terminal = matches!(status.as_str(), "completed" | "failed" | "cancelled");
            assert!(!terminal, "job ended {status}, not {want}: {job:#}");
            assert!(
                Instant::now() < deadline,
                "job still {status}, not {want}: {job:#}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the job every [`POLL`] until it has ended (panics after [`PATIENCE`]); the job.
    pub(crate) async fn wait_end(&self, id: &str, headers: &[(&str, &str)]) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.job(id, headers).await;
            if !matches!(job["status"].as_str(), Some("queued" | "working")) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never ended: {job:#}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// `POST` on the admin listener (`/breakers/...`).
    pub(crate) async fn admin_post(&self, path: &str) -> (u16, String) {
        let resp = self.client.post(self.admin_url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// The calls of `tool` the fixture has seen.
pub(crate) fn calls(backend: &FixtureServer, tool: &str) -> u64 {
    backend.stats().by_tool.get(tool).copied().unwrap_or(0)
}

/// `error.data.reason` of a sidecar error answer.
pub(crate) fn reason(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The fixture backend: stateless, JSON answers (SSE when a call carries a progress token).
pub(crate) async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        response_mode: ResponseMode::Json,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A sidecar config: one upstream `shield` at `/mcp` for `backend_url`, jobs in `data_dir`,
/// `jobs` added to `[jobs]` and `upstream` to the `[[upstream]]` table (which may end with
/// `[[upstream.tool]]` tables), `top` before everything (e.g. `[auth]`).
pub(crate) fn config(
    backend_url: &str,
    data_dir: &Path,
    jobs: &str,
    upstream: &str,
    top: &str,
) -> String {
    format!(
        r#"{top}
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[shutdown]
grace_period = "2s"
[jobs]
data_dir = "{dir}"
{jobs}
[[upstream]]
name = "shield"
url = "{backend_url}"
path = "/mcp"
health_interval = "1h"
{upstream}
"#,
        dir = data_dir.display()
    )
}

/// A store directory inside `dir`.
pub(crate) fn data_dir(dir: &Path) -> PathBuf {
    let data = dir.join("jobs");
    std::fs::create_dir_all(&data).unwrap();
    data
}

/// A `tools/call` request body.
pub(crate) fn tool_call(id: u64, tool: &str, arguments: Value) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
    .to_string()
}

/// The JSON-RPC response in a live answer: the JSON body, or the SSE event that carries the
/// response (the one with `result` or `error`).
pub(crate) fn jsonrpc_response(content_type: &str, body: &str) -> Value {
    if content_type.starts_with("application/json") {
        return serde_json::from_str(body).unwrap();
    }
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}: {body}"
    );
    parse_sse(body)
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC response in the stream: {body}"))
}

/// One SSE event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

impl Event {
    /// `data` as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Events in a whole SSE text (comments and `retry:` skipped).
pub(crate) fn parse_sse(text: &str) -> Vec<Event> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n").filter_map(parse_block).collect()
}

fn parse_block(block: &str) -> Option<Event> {
    let mut id = None;
    let mut event = "message".to_owned();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (!data.is_empty()).then(|| Event {
        id,
        event,
        data: data.join("\n"),
    })
}

/// An open `GET /jobs/{id}/events` stream, read event by event.
pub(crate) struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    /// Opens the job's event stream (asserting 200 and `text/event-stream`).
    pub(crate) async fn open(sidecar: &Sidecar, id: &str, headers: &[(&str, &str)]) -> Events {
        let mut req = sidecar
            .client
            .get(sidecar.url(&format!("/jobs/{id}/events")))
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            stream: resp.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, `None` when the stream ended; panics after [`PATIENCE`].
    pub(crate) async fn next(&mut self) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.buffer = self.buffer.replace("\r\n", "\n");
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("no event within the patience");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes.unwrap()).unwrap()),
                None => return None,
            }
        }
    }
}
