//! `mcp-chaos check`: a summary line per good file, exit 2 naming a bad file's line and key. And
//! the shipped suite (`chaos/scenarios/`): every scenario checks clean, every sidecar config it
//! names loads with the sidecar's own loader (as the runner will start it), and the settings each
//! scenario's assertions depend on are what its promise needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcp_chaos::http::Action;
use mcp_chaos::scenario::{FaultAction, Scenario, System};
use mcp_sidecar::config::{Config, StoreKind};

/// The scenarios of the shipped suite, by file stem: issue 19's list.
const SHIPPED: &[&str] = &[
    "backend-refusing",
    "backend-blackhole",
    "http-500-storm",
    "slow-tool-timeout",
    "reset-mid-response",
    "sse-cut",
    "flapping-backend",
    "sidecar-kill-jobs",
    "rate-limit-burst",
    "jwks-down",
];

/// The longest traffic a shipped scenario may send: the suite runs in CI in a few minutes.
const MAX_TRAFFIC: Duration = Duration::from_secs(40);

/// `CHAOS_STATE_DIR` as the test gives it.
const STATE_DIR: &str = "/tmp/mcp-chaos-state";

fn check(files: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("check")
        .args(files)
        .output()
        .unwrap()
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// The `.toml` files directly in `dir`, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    files
}

fn shipped(stem: &str) -> Scenario {
    Scenario::from_file(&scenarios_dir().join(format!("{stem}.toml"))).unwrap()
}

/// What the runner puts in the sidecar's environment.
fn runner_env(name: &str) -> Option<String> {
    match name {
        "CHAOS_LISTEN" | "CHAOS_ADMIN" => Some("127.0.0.1:0".to_owned()),
        "CHAOS_BACKEND_URL" => Some("http://127.0.0.1:1".to_owned()),
        "CHAOS_STATE_DIR" => Some(STATE_DIR.to_owned()),
        "CHAOS_JWKS_URL" => Some("http://127.0.0.1:1/jwks.json".to_owned()),
        "CHAOS_JWT_ISSUER" | "CHAOS_JWT_AUDIENCE" => Some("mcp-chaos".to_owned()),
        _ => None,
    }
}

/// The sidecar config a managed scenario names, loaded as the runner starts it.
fn sidecar_config(scenario: &Scenario) -> Option<(PathBuf, Config)> {
    let System::Managed { sidecar_config, .. } = &scenario.system else {
        return None;
    };
    let text = std::fs::read_to_string(sidecar_config)
        .unwrap_or_else(|e| panic!("{}: {e}", sidecar_config.display()));
    let config = Config::from_toml_with_env(&text, &runner_env)
        .unwrap_or_else(|e| panic!("{}: {e}", sidecar_config.display()));
    Some((sidecar_config.clone(), config))
}

#[test]
fn shipped_scenarios_check_clean() {
    let files = toml_files(&scenarios_dir());
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = check(&paths);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("backend-refusing: sidecar"), "{stdout}");
    for file in &files {
        assert!(
            stdout.contains(&format!("ok {}: ", file.display())),
            "{}: no ok line in {stdout}",
            file.display()
        );
    }
}

#[test]
fn the_shipped_suite_has_its_scenarios_each_named_as_its_file() {
    let dir = scenarios_dir();
    for stem in SHIPPED {
        let scenario = shipped(stem);
        assert_eq!(&scenario.name, stem, "a scenario's name is its file's");
    }
    assert!(toml_files(&dir).len() >= SHIPPED.len());
}

#[test]
fn shipped_scenarios_send_at_most_40s_of_traffic() {
    for file in toml_files(&scenarios_dir()) {
        let scenario = Scenario::from_file(&file).unwrap();
        assert!(
            scenario.traffic.duration <= MAX_TRAFFIC,
            "{}: traffic.duration {:?} is over {MAX_TRAFFIC:?}",
            file.display(),
            scenario.traffic.duration
        );
    }
}

#[test]
fn bad_scenario_exits_2_naming_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("mcp-chaos-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\ndescription = \"d\"\nsedd = 1\n[system]\ntarget_url = \"http://127.0.0.1:1/mcp\"\n",
    )
    .unwrap();
    let out = check(&[&bad]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3: unknown field `sedd`"),
        "{stderr}"
    );
}

#[test]
fn every_sidecar_config_a_shipped_scenario_names_loads() {
    let mut checked = 0;
    for file in toml_files(&scenarios_dir()) {
        let scenario = Scenario::from_file(&file).unwrap();
        if sidecar_config(&scenario).is_some() {
            checked += 1;
        }
    }
    assert!(
        checked >= SHIPPED.len(),
        "only {checked} scenarios name a sidecar config"
    );
}

/// The runner's `CHAOS_BACKEND_URL` is an origin, and the fixture serves MCP at `/mcp`: a config
/// whose url is the bare origin would send every call to `/` (404 from the fixture).
#[test]
fn every_shipped_config_reaches_the_fixtures_mcp_endpoint() {
    for file in toml_files(&scenarios_dir()) {
        let scenario = Scenario::from_file(&file).unwrap();
        let Some((path, config)) = sidecar_config(&scenario) else {
            continue;
        };
        for upstream in &config.upstream {
            let url: http::Uri = upstream.url.parse().unwrap();
            assert_eq!(url.path(), "/mcp", "{}: {}", path.display(), upstream.url);
        }
    }
}

#[test]
fn every_config_in_configs_is_named_by_a_shipped_scenario() {
    let named: Vec<PathBuf> = toml_files(&scenarios_dir())
        .iter()
        .filter_map(|f| match Scenario::from_file(f).unwrap().system {
            System::Managed { sidecar_config, .. } => Some(sidecar_config.canonicalize().unwrap()),
            System::External { .. } => None,
        })
        .collect();
    for config in toml_files(&scenarios_dir().join("configs")) {
        assert!(
            named.contains(&config.canonicalize().unwrap()),
            "{}: no scenario names it, so nothing checks that it loads",
            config.display()
        );
    }
}

/// A scenario that kills the sidecar and then counts its jobs needs them in a durable store in
/// the directory the runner keeps across the restart; in memory, or anywhere else, they are lost
/// by design and the assertion would fail for the config's sake.
#[test]
fn a_scenario_killing_the_sidecar_keeps_its_jobs_in_the_runs_state_dir() {
    let mut checked = 0;
    for file in toml_files(&scenarios_dir()) {
        let scenario = Scenario::from_file(&file).unwrap();
        let kills = scenario
            .faults
            .iter()
            .any(|f| matches!(f.action, FaultAction::KillSidecar { .. }));
        if !kills || scenario.traffic.jobs == 0 {
            continue;
        }
        let (path, config) = sidecar_config(&scenario).unwrap();
        assert_eq!(config.jobs.store, StoreKind::Redb, "{}", path.display());
        assert_eq!(
            config.jobs.data_dir.as_deref(),
            Some(Path::new(STATE_DIR)),
            "{}: jobs.data_dir must be \"${{CHAOS_STATE_DIR}}\"",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no scenario kills the sidecar with jobs");
}

/// backend-blackhole: the sidecar's response timeout comes before the client's, so a hung call
/// is the sidecar's 504, and the 504s (breaker failures) can open the circuit.
#[test]
fn blackhole_response_timeout_is_below_the_traffic_timeout() {
    let scenario = shipped("backend-blackhole");
    let (path, config) = sidecar_config(&scenario).unwrap();
    let upstream = &config.upstream[0];
    assert!(
        upstream.response_timeout < scenario.traffic.timeout,
        "{}",
        path.display()
    );
    assert!(upstream.breaker.enabled, "{}", path.display());
}

/// slow-tool-timeout: tool timeout < client timeout < the fault's delay < the upstream's
/// response timeout, so a 504 is seen only if the per-tool timeout is enforced.
#[test]
fn slow_tool_timeout_alone_can_answer_before_the_client_gives_up() {
    let scenario = shipped("slow-tool-timeout");
    let (path, config) = sidecar_config(&scenario).unwrap();
    let upstream = &config.upstream[0];
    let tool = upstream.tool.iter().find(|t| t.name == "echo").unwrap();
    let tool_timeout = tool.timeout.unwrap();
    let delay = scenario
        .faults
        .iter()
        .find_map(|f| match &f.action {
            FaultAction::Http(h) => match h.action {
                Action::Delay(d) => Some(d),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert!(
        tool_timeout < scenario.traffic.timeout,
        "{}",
        path.display()
    );
    assert!(scenario.traffic.timeout < delay, "{}", path.display());
    assert!(delay < upstream.response_timeout, "{}", path.display());
}

/// flapping-backend: within one outage the open period can grow to its cap (three trips: the
/// first two open periods end inside the outage), and the capped period is shorter than the gap
/// between outages, so the circuit can close in each gap.
#[test]
fn flapping_open_period_reaches_its_cap_within_an_outage_and_closes_between() {
    let scenario = shipped("flapping-backend");
    let (path, config) = sidecar_config(&scenario).unwrap();
    let b = &config.upstream[0].breaker;
    let second = b.open_duration.mul_f64(b.backoff_multiplier);
    assert!(
        second.mul_f64(b.backoff_multiplier) >= b.max_open_duration,
        "{}: the third open period is not the cap",
        path.display()
    );
    for (i, f) in scenario.faults.iter().enumerate() {
        assert!(
            b.open_duration + second < f.until - f.at,
            "{}: fault `{}` ends before the third trip",
            path.display(),
            f.name
        );
        if let Some(next) = scenario.faults.get(i + 1) {
            assert!(
                b.max_open_duration < next.at - f.until,
                "{}: no time to close before fault `{}`",
                path.display(),
                next.name
            );
        }
    }
}
