//! The MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in tests/conformance,
//! run by scripts/conformance.sh) at the 2026-07-28 requirements, against the fixture directly
//! and through the sidecar with the Tasks facade on (examples/tasks-facade.toml): every Tasks
//! scenario passes through the sidecar, and every scenario that passes directly still passes
//! through it. The fixture has the scenarios' task tools and no task support of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use mcp_e2e_tests::{sdk::repo_root, start};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::Config;

/// Each scenario's verdict (`true`: passed) from one run of the suite against `url`.
async fn conformance(url: &str) -> BTreeMap<String, bool> {
    let output = tokio::process::Command::new("bash")
        .arg(repo_root().join("scripts/conformance.sh"))
        .args([url, "--requirements", "2026-07-28"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("bash runs scripts/conformance.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdicts: BTreeMap<String, bool> = stdout
        .split("=== conformance verdict ===")
        .nth(1)
        .unwrap_or_else(|| {
            panic!(
                "no verdict from the suite against {url}:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .lines()
        .filter_map(|line| match line.split_once(' ') {
            Some(("PASS", name)) => Some((name.to_owned(), true)),
            Some(("FAIL", name)) => Some((name.to_owned(), false)),
            _ => None,
        })
        .collect();
    assert!(verdicts.len() > 20, "too few scenarios ran:\n{stdout}");
    verdicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tasks_scenario_passes_through_the_facade_and_what_passes_directly_still_does() {
    let fixture = FixtureServer::start(FixtureConfig {
        conformance_tools: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/tasks-facade.toml")).unwrap();
    let url = fixture.mcp_url();
    let mut config =
        Config::from_toml_with_env(&text, &|name| (name == "FIXTURE_URL").then(|| url.clone()))
            .unwrap();
    config.listen.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    let sidecar = start(config).await;

    let direct = conformance(&fixture.mcp_url()).await;
    let through = conformance(&sidecar.url("/mcp")).await;

    let tasks: Vec<&String> = through.keys().filter(|n| n.starts_with("tasks-")).collect();
    assert!(tasks.len() >= 10, "the Tasks scenarios ran: {tasks:?}");
    let failing: Vec<&String> = tasks.into_iter().filter(|n| !through[*n]).collect();
    assert!(
        failing.is_empty(),
        "Tasks scenarios failing through the sidecar: {failing:?}"
    );
    let broken: Vec<&String> = direct
        .iter()
        .filter(|(name, passed)| **passed && !through.get(*name).copied().unwrap_or(false))
        .map(|(name, _)| name)
        .collect();
    assert!(
        broken.is_empty(),
        "scenarios that pass directly but not through the sidecar: {broken:?}"
    );
    // The baseline is not empty: the tool and input-round scenarios pass directly.
    assert!(
        direct.get("tools-list").copied().unwrap_or(false),
        "{direct:?}"
    );
}
