//! The fixture MCP server against the official MCP Python SDK client (tests/sdk/fixture_client.py),
//! in each response mode and without sessions: proves the fixture is a server real clients accept,
//! so that what the other tests learn through it holds for real traffic. The SDK (mcp 2.3) takes
//! the fixture's 2026-07-28 offer: stateless requests after one `server/discover`. The
//! 2025-11-25 session lifecycle through the sidecar is driven by the SDK clients of
//! `sdk_clients.rs`.
//!
//! Needs `<repo>/.venv` from `scripts/test-deps.sh` (or `MCP_TEST_PYTHON` pointing at a Python with
//! the pinned `mcp` package). Without it the tests fail, on purpose: a silently skipped check is no check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode, Stats};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    // This package lives in <repo>/tests.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn python() -> anyhow::Result<PathBuf> {
    let python = match std::env::var_os("MCP_TEST_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => repo_root().join(".venv/bin/python"),
    };
    if !python.exists() {
        bail!(
            "{} not found: run scripts/test-deps.sh to install the official MCP Python SDK \
             (or set MCP_TEST_PYTHON to a Python that has it)",
            python.display()
        );
    }
    Ok(python)
}

/// Runs the official client against `url` and returns the JSON line it printed.
async fn run_official_client(url: &str) -> anyhow::Result<Value> {
    let script = repo_root().join("tests/sdk/fixture_client.py");
    let child = tokio::process::Command::new(python()?)
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("the official client did not finish within 120 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "official client failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .last()
        .context("official client printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("not JSON: {line}\n{stderr}"))
}

/// Stats settle after the client exits (hyper notices the closed GET stream asynchronously).
async fn settled_stats(server: &FixtureServer) -> anyhow::Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = server.stats();
        if stats.get_streams_open == 0 && stats.in_flight == 0 {
            return Ok(stats);
        }
        if Instant::now() > deadline {
            bail!("streams or requests still open after the client left: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn official_client_round_trip(
    response_mode: ResponseMode,
    stateless: bool,
    through_sidecar: bool,
) -> anyhow::Result<()> {
    let config = FixtureConfig {
        response_mode,
        stateless,
        ..FixtureConfig::default()
    };
    let server = FixtureServer::start(config).await?;
    let sidecar = if through_sidecar {
        let up = mcp_e2e_tests::upstream(server.mcp_url(), None);
        Some(mcp_e2e_tests::start(mcp_e2e_tests::config(vec![up])).await)
    } else {
        None
    };
    let url = match &sidecar {
        Some(sidecar) => sidecar.url("/mcp"),
        None => server.mcp_url(),
    };
    let report = run_official_client(&url).await?;

    assert_eq!(report["server_name"], "mcp-fixture");
    assert_eq!(report["protocol_version"], "2026-07-28");
    assert_eq!(
        report["tools"],
        json!(["add", "echo", "fail", "large", "progress", "sleep"])
    );
    assert_eq!(report["echo"], "hello from the official client");
    assert_eq!(report["add"], "42");
    assert_eq!(report["progress_result"], "completed 3 steps");
    let progress: Vec<f64> = report["progress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["progress"].as_f64())
        .collect();
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0],
        "progress notifications reached the client's callback"
    );

    let stats = settled_stats(&server).await?;
    let count = |map: &std::collections::BTreeMap<String, u64>, key: &str| {
        map.get(key).copied().unwrap_or(0)
    };
    // The fixture offers 2026-07-28 (`server/discover`), which the SDK takes: one discovery, no
    // initialize handshake, no session.
    assert_eq!(count(&stats.by_method, "server/discover"), 1, "{stats:?}");
    assert_eq!(count(&stats.by_method, "initialize"), 0, "{stats:?}");
    assert_eq!(count(&stats.by_method, "tools/list"), 1, "{stats:?}");
    assert_eq!(count(&stats.by_method, "tools/call"), 3, "{stats:?}");
    for tool in ["echo", "add", "progress"] {
        assert_eq!(count(&stats.by_tool, tool), 1, "{tool}: {stats:?}");
    }
    assert_eq!(
        stats.cancelled_total, 0,
        "the client waited for every answer: {stats:?}"
    );
    // The stateless protocol has no sessions, whether the fixture keeps them for older ones or not.
    assert_eq!(
        stats.sessions_open, 0,
        "{stats:?} (stateless fixture: {stateless})"
    );
    let headers = &stats.last_request_headers;
    assert!(headers.get("mcp-session-id").is_none(), "{headers:?}");
    assert_eq!(
        headers.get("mcp-protocol-version").map(String::as_str),
        Some("2026-07-28"),
        "{headers:?}"
    );
    if let Some(sidecar) = sidecar {
        // Every request the client made went through the sidecar and was answered by the backend.
        let metrics = sidecar.metrics().await;
        assert!(
            metrics.contains(
                "mcp_sidecar_requests_total{method=\"POST\",status=\"200\",upstream=\"u\"}"
            ),
            "{metrics}"
        );
        assert_eq!(
            headers.get("x-forwarded-for").map(String::as_str),
            Some("127.0.0.1"),
            "{headers:?}"
        );
        sidecar.stop().await;
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn official_python_client_works_against_json_mode() -> anyhow::Result<()> {
    official_client_round_trip(ResponseMode::Json, false, false).await
}

#[tokio::test]
async fn official_python_client_works_against_sse_mode() -> anyhow::Result<()> {
    official_client_round_trip(ResponseMode::Sse, false, false).await
}

#[tokio::test]
async fn official_python_client_works_against_a_stateless_fixture() -> anyhow::Result<()> {
    official_client_round_trip(ResponseMode::Json, true, false).await
}

#[tokio::test]
async fn official_python_client_works_through_the_sidecar_in_json_mode() -> anyhow::Result<()> {
    official_client_round_trip(ResponseMode::Json, false, true).await
}

#[tokio::test]
async fn official_python_client_works_through_the_sidecar_in_sse_mode() -> anyhow::Result<()> {
    official_client_round_trip(ResponseMode::Sse, false, true).await
}
