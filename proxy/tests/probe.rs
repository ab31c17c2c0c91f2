//! `mcp-sidecar probe URL`, the health check of deploy/Dockerfile: exit 0 on a 2xx answer from
//! a running sidecar's admin listener, exit 1 (never 2, which Docker reserves) with a message
//! naming the cause for a non-2xx answer, a closed port, a silent server and a bad URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-sidecar");

fn probe(args: &[&str]) -> Output {
    Command::new(BIN).arg("probe").args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Longest a test server waits for the probe: bounded, so a probe that never connects fails the
/// test instead of hanging it.
const SERVER_PATIENCE: Duration = Duration::from_secs(20);

/// A one-connection HTTP server on loopback that reads the request head and writes `answer`
/// (or, with `None`, never answers and holds the connection until the probe closes it). Returns
/// its address and the request head it read (empty if the probe never came).
fn one_shot_server(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + SERVER_PATIENCE;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return String::new(),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        match answer {
            Some(answer) => conn.write_all(answer.as_bytes()).unwrap(),
            // Silent: hold the connection until the probe gives up and closes it.
            None => while conn.read(&mut byte).map(|n| n > 0).unwrap_or(false) {},
        }
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, handle)
}

#[test]
fn probe_of_a_running_sidecars_healthz_and_readyz_exits_0() {
    let state = tempfile::tempdir().unwrap();
    // The backend is a closed port: the sidecar is alive (healthz) but not ready (readyz).
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let mut child = Command::new(BIN)
        .env("STATE_DIRECTORY", state.path())
        .args(["--log-format", "json", "run", "--upstream", &backend])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line = lines
            .next()
            .expect("sidecar exited before listening")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "mcp-sidecar listening" {
            break v["admin"].as_str().unwrap().to_owned();
        }
    };
    let healthz = probe(&[&format!("http://{admin}/healthz")]);
    let readyz = probe(&["--timeout", "5s", &format!("http://{admin}/readyz")]);
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(healthz.status.code(), Some(0), "{}", stderr(&healthz));
    let stdout = String::from_utf8_lossy(&healthz.stdout);
    assert!(stdout.contains("/healthz: 200 OK"), "{stdout}");
    // Not ready: exit 1, the status and /readyz's report (naming the upstream) on stderr.
    assert_eq!(readyz.status.code(), Some(1));
    let err = stderr(&readyz);
    assert!(err.contains("503 Service Unavailable"), "{err}");
    assert!(
        err.contains("default"),
        "the report names the upstream: {err}"
    );
}

#[test]
fn probe_of_a_non_2xx_answer_exits_1_naming_the_status_and_sends_a_plain_get() {
    let (addr, server) = one_shot_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\nboom\n",
    ));
    let out = probe(&[&format!("http://{addr}/healthz?verbose=1")]);
    let head = server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("500 Internal Server Error") && err.contains("boom"),
        "{err}"
    );
    assert!(
        head.starts_with("GET /healthz?verbose=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {addr}\r\n")),
        "{head}"
    );
}

#[test]
fn probe_of_a_closed_port_exits_1_saying_it_cannot_connect() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = probe(&[&format!("http://{addr}/healthz")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn probe_of_a_silent_server_exits_1_at_its_timeout() {
    let (addr, server) = one_shot_server(None);
    let started = Instant::now();
    let out = probe(&["--timeout", "300ms", &format!("http://{addr}/healthz")]);
    let waited = started.elapsed();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no answer within 300ms"), "{err}");
    // Bounded by --timeout (plus process start), not by the server.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn probe_of_a_bad_or_non_http_url_exits_1_not_2() {
    for (url, says) in [
        ("127.0.0.1:9090/healthz", "not a URL"),
        ("https://127.0.0.1:9090/healthz", "only http://"),
    ] {
        let out = probe(&[url]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert!(stderr(&out).contains(says), "{url}: {}", stderr(&out));
    }
}

#[test]
fn probe_has_help_naming_its_exit_codes() {
    let out = Command::new(BIN)
        .args(["probe", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage") && help.contains("--timeout"),
        "{help}"
    );
    assert!(help.contains("exit 0 on a 2xx answer, 1 on"), "{help}");
}
