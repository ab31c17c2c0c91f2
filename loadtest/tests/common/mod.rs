//! What the loadtest integration tests share: a plan with the defaults of a short test run, a
//! run against a URL, and an in-process sidecar (memory job store) in front of a fixture.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;
use mcp_fixtures::FixtureServer;
use mcp_loadtest::client::Target;
use mcp_loadtest::engine::{self, Load, Plan, Stop};
use mcp_loadtest::report::Report;
use mcp_loadtest::workload::Workload;
use serde_json::json;

/// A plan of `load` until `stop`, with no warm-up, one session and quarter-second intervals.
pub(crate) fn plan(load: Load, stop: Stop) -> Plan {
    Plan {
        load,
        stop,
        warmup: Duration::ZERO,
        sessions: 1,
        interval: Duration::from_millis(250),
        max_in_flight: 10_000,
        seed: 7,
        live: None,
        offload: None,
    }
}

/// A target at `url` on `protocol`, with `timeout` per request.
pub(crate) fn target(url: &str, protocol: &str, timeout: Duration) -> Target {
    Target::new(url, 16, HeaderMap::new(), None, timeout)
        .unwrap()
        .with_protocol(protocol)
        .unwrap()
}

/// Runs `plan` against `target`.
pub(crate) async fn run_on(target: Target, workload: Workload, plan: Plan) -> Report {
    engine::run(target, workload, plan, json!({}), std::future::pending())
        .await
        .unwrap()
}

/// Runs `plan` against `url` on `protocol` (10 s per request).
pub(crate) async fn run(url: &str, protocol: &str, workload: Workload, plan: Plan) -> Report {
    run_on(
        target(url, protocol, Duration::from_secs(10)),
        workload,
        plan,
    )
    .await
}

/// An in-process sidecar (memory job store) in front of `fx`, with `tools` (TOML) added to its
/// upstream; its address.
pub(crate) async fn sidecar(fx: &FixtureServer, tools: &str) -> SocketAddr {
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[jobs]\nstore = \"memory\"\n\
         [[upstream]]\nname = \"fx\"\nurl = \"{}\"\n{tools}",
        fx.mcp_url()
    );
    let config = mcp_sidecar::config::Config::from_toml_with_env(&toml, &|_| None).unwrap();
    let sidecar = mcp_sidecar::server::Sidecar::bind(config).await.unwrap();
    let addr = sidecar.local_addr().unwrap();
    tokio::spawn(sidecar.serve(std::future::pending::<()>()));
    addr
}
