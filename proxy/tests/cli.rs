//! The `mcp-sidecar` binary as a user runs it: `check` exit codes and messages, `run` with a
//! quick-start upstream, SIGTERM ending it with exit code 0, and `demo` with and without the
//! `demo` feature (the tests see the binary's features: `cargo test -p mcp-sidecar` checks the
//! default build, `cargo test --workspace` the demo build).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-sidecar");

fn check(toml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("SHIELD_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
[listen]
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:9090"
[[upstream]]
name = "shield"
url = "${SHIELD_URL}"
path = "/mcp"
response_timeout = "10m"
"#;

#[test]
fn check_accepts_a_valid_config_with_env_reference() {
    let (code, stdout, stderr) = check(GOOD, &[("SHIELD_URL", "http://127.0.0.1:8000/mcp")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn check_names_a_missing_env_var() {
    let (code, _, stderr) = check(GOOD, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("upstream[0].url") && stderr.contains("SHIELD_URL"),
        "{stderr}"
    );
}

#[test]
fn check_names_an_unknown_field() {
    let (code, _, stderr) = check(
        "[[upstream]]\nname = \"a\"\nurl = \"http://h:1/mcp\"\nretries = 3\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("retries"), "{stderr}");
}

#[test]
fn check_names_a_bad_url() {
    let (code, _, stderr) = check(
        "[[upstream]]\nname = \"a\"\nurl = \"127.0.0.1:8000\"\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("upstream[0].url"), "{stderr}");
}

#[test]
fn check_names_a_duplicate_path() {
    let toml = "[[upstream]]\nname = \"a\"\nurl = \"http://h:1/mcp\"\n\
                [[upstream]]\nname = \"b\"\nurl = \"http://h:2/mcp\"\n";
    let (code, _, stderr) = check(toml, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("upstream[1].path") && stderr.contains("/mcp"),
        "{stderr}"
    );
}

#[test]
fn check_reports_an_unreadable_file() {
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/sidecar.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn run_without_config_or_upstream_is_a_usage_error() {
    let out = Command::new(BIN).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
    ] {
        let out = Command::new(BIN).args(sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub:?}"
        );
    }
}

/// The default build leaves the mock server out: `demo` is a usage error (exit code 2, as clap's
/// own) that says how to build it in, not a panic and not a silent success.
#[cfg(not(feature = "demo"))]
#[test]
fn demo_in_a_build_without_the_feature_says_how_to_build_it_and_exits_2() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no demo") && stderr.contains("--features demo -- demo"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A build with the `demo` feature (as `cargo test --workspace` makes it: see tests/Cargo.toml)
/// runs the fixture behind the sidecar, prints where, serves, and stops cleanly on SIGTERM.
#[cfg(feature = "demo")]
#[test]
fn demo_serves_the_fixture_through_the_sidecar_and_exits_zero_on_sigterm() {
    // The demo's job store is durable, in the default data directory: this test's own.
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("STATE_DIRECTORY", state.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The banner's `sidecar  http://127.0.0.1:<port>/mcp  (legacy SSE: ...)` line.
    let url = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("sidecar")).then(|| words.next().map(str::to_owned))?
        })
        .expect("demo printed no sidecar URL");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"cli-test","version":"1"}}}"#;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, answer) = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    });
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("serverInfo"), "{answer}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Runs `mcp-sidecar --log-format json run --upstream <fixture>` with `RUST_LOG=rust_log`, sends
/// one `tools/call` (with a bearer credential), SIGTERMs it, checks exit code 0, and returns the
/// log lines it wrote after the `listening` line.
fn run_one_call(rust_log: &str) -> Vec<String> {
    run_one_call_with(rust_log, &[])
}

/// [`run_one_call`] with more `run` arguments.
fn run_one_call_with(rust_log: &str, extra: &[&str]) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt
        .block_on(mcp_fixtures::FixtureServer::start(
            mcp_fixtures::FixtureConfig {
                stateless: true,
                ..Default::default()
            },
        ))
        .unwrap();
    // A quick start keeps jobs in the default data directory: each run gets its own.
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("STATE_DIRECTORY", state.path())
        .args([
            "--log-format",
            "json",
            "run",
            "--upstream",
            &backend.mcp_url(),
        ])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listen = loop {
        let line = lines
            .next()
            .expect("sidecar exited before listening")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "mcp-sidecar listening" {
            break v["listen"].as_str().unwrap().to_owned();
        }
    };
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"cli"}}}"#;
    let resp = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{listen}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", "Bearer secret-token-xyz")
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(resp.contains("\"cli\""), "{resp}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    lines.map_while(Result::ok).collect()
}

#[test]
fn run_quick_start_serves_and_exits_zero_on_sigterm() {
    let rest = run_one_call("info");
    // One access-log event named the request (written out at exit, although batched); the
    // credential it carried was never logged.
    let access: Vec<serde_json::Value> = rest
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 1, "{rest:?}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["path"], "/mcp");
    assert_eq!(access[0]["outcome"], "complete");
    assert_eq!(access[0]["upstream"], "default");
    assert!(access[0]["request_id"].is_string());
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains("secret-token-xyz")),
        "credential leaked into logs"
    );
}

#[test]
fn one_worker_thread_serves_on_a_single_threaded_runtime_and_exits_zero() {
    let rest = run_one_call_with("info", &["--worker-threads", "1"]);
    assert!(
        rest.iter()
            .any(|l| l.contains("\"target\":\"access\"") && l.contains("\"status\":200")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn access_log_obeys_rust_log_like_any_target() {
    let rest = run_one_call("info,access=off");
    assert!(
        !rest.iter().any(|l| l.contains("\"target\":\"access\"")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn a_bad_log_flush_interval_is_a_usage_error_naming_the_flag() {
    let out = Command::new(BIN)
        .args([
            "--log-flush-interval",
            "soon",
            "run",
            "--upstream",
            "http://127.0.0.1:1/mcp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-flush-interval"), "{stderr}");
}

#[test]
fn shipped_example_configs_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("check")
                .arg("--config")
                .arg(&path)
                .env("SHIELD_URL", "http://127.0.0.1:8000/mcp")
                .env("FIXTURE_URL", "http://127.0.0.1:8000/mcp")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no example configs found in {}",
        examples.display()
    );
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("mcp-sidecar {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim_end()
        .trim_start_matches(&expected)
        .trim_end_matches(')');
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}
