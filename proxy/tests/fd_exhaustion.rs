//! The `mcp-sidecar` binary under a real, lowered descriptor limit (`ulimit -n 64`, soft and
//! hard): when the table is full the upstream connect fails with EMFILE, and that is the
//! sidecar's shortage, not the backend's: `503 local_resources`, the circuit stays closed, and
//! the next request after descriptors free up is served.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-sidecar");

/// Soft and hard `RLIMIT_NOFILE` of the sidecar: far below what its default caps need.
const LIMIT: usize = 64;

struct Sidecar {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary through `sh -c 'ulimit -n 64; exec ...'` with `config`, and waits for its
/// `listening` line; every log line is kept.
fn start_limited(config: &str, dir: &std::path::Path) -> Sidecar {
    let path = dir.join("sidecar.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        // The job store goes in this test's directory, not the user's.
        .env("STATE_DIRECTORY", dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "mcp-sidecar listening" {
                let addr = |k: &str| v[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
                let _ = tx.send((addr("listen"), addr("admin")));
            }
            kept.lock().unwrap().push(line);
        }
    });
    let (listen, admin) = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no listening line: {:?}", log.lock().unwrap()));
    Sidecar {
        child,
        listen,
        admin,
        log,
    }
}

/// One request on its own connection (`Connection: close`), the whole answer read.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no answer: {e}; read {answer:?}"));
    answer
}

fn tool_call() -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"fd"}}}"#;
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn emfile_on_the_upstream_connect_is_503_local_resources_and_leaves_the_circuit_closed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt
        .block_on(mcp_fixtures::FixtureServer::start(
            mcp_fixtures::FixtureConfig {
                stateless: true,
                response_mode: mcp_fixtures::ResponseMode::Json,
                ..Default::default()
            },
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No idle pooled connections and no periodic health check: every descriptor the sidecar
    // holds is one the test opened. Two consecutive failures would open the circuit.
    let config = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
header_read_timeout = "5m"
[admin]
addr = "127.0.0.1:0"
[[upstream]]
name = "shield"
url = "{}"
pool_max_idle = 0
health_interval = "1h"
[upstream.breaker]
consecutive_failures = 2
"#,
        backend.mcp_url()
    );
    let sidecar = start_limited(&config, dir.path());

    // Each round holds one more descriptor in the sidecar (a connection that sends nothing
    // yet), then proxies one request, which needs two (client and backend) and frees both.
    // When one descriptor is left, the client's connection is accepted and the backend's
    // cannot be opened.
    let mut idle = Vec::new();
    let mut refused = None;
    for _ in 0..LIMIT {
        let answer = exchange(sidecar.listen, &tool_call());
        if !answer.starts_with("HTTP/1.1 200") {
            refused = Some(answer);
            break;
        }
        idle.push(TcpStream::connect(sidecar.listen).unwrap());
        // Let the sidecar accept it (and close the last exchange's descriptors) first.
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused.expect("the descriptor table never filled");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains("\"reason\":\"local_resources\""),
        "{refused}"
    );
    assert!(refused.contains("\"resource\":\"emfile\""), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{refused}"
    );

    // Descriptors free up: the backend is served at once, no circuit to wait out.
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    let answer = exchange(sidecar.listen, &tool_call());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"fd\""), "{answer}");

    let metrics = exchange(
        sidecar.admin,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let series = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}: {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(
        series(r#"mcp_sidecar_local_resource_errors_total{kind="emfile",op="connect"}"#) >= 1.0
    );
    assert_eq!(
        series(r#"mcp_sidecar_breaker_state{tool="",upstream="shield"}"#),
        0.0
    );

    // At start: the limit could not be raised past 64, and the warning names the caps.
    let log = sidecar.log.lock().unwrap().clone();
    let limit_line = log
        .iter()
        .find(|l| l.contains("file descriptor limit (RLIMIT_NOFILE)"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(limit_line.contains("\"soft\":\"64\""), "{limit_line}");
    assert!(
        log.iter()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("limits.max_streams")),
        "{log:#?}"
    );
}
