//! `mcp-chaos run` end to end: the real binary starts the fixture, its fault proxies and the
//! real `mcp-sidecar`, breaks the backend link under traffic and judges the assertions. A
//! sidecar whose breaker works passes; the same scenario against a sidecar whose breaker is
//! disabled (a broken config) exits 1, naming the assertion and the measured value.
//!
//! These run in real time (two processes and real sockets: tokio's paused clock cannot reach
//! the sidecar), 12 s of traffic each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scenario: backend down from 3 s to 7 s of a 12 s run at 40 requests/s.
fn scenario(config: &Path) -> String {
    format!(
        r#"name = "short-refusal"
description = "The circuit opens on a refusing backend, fails fast, keeps requests off it and recovers."
seed = 7

[system]
sidecar_config = "{}"

[traffic]
rate = 40
call = 'echo {{"text":"hi"}}'
timeout = "5s"
duration = "12s"

[steady_state]
duration = "2s"
min_success_rate = 0.99

[[fault]]
name = "refuse"
at = "3s"
until = "7s"
proxy_down = true

[[assert]]
kind = "circuit_opens_within"
requests = 10

[[assert]]
kind = "fast_fail"
p99 = "50ms"

[[assert]]
kind = "no_backend_requests_while_open"

[[assert]]
kind = "recovers_within"
open_period_plus = "2s"

[[assert]]
kind = "no_hang_past_timeout"

[[assert]]
kind = "sidecar_alive"
"#,
        config.display()
    )
}

struct Run {
    out: Output,
    junit: String,
    report: serde_json::Value,
}

fn run_with(config_text: &str, name: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("mcp-chaos-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sidecar.toml");
    std::fs::write(&config, config_text).unwrap();
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario(&config)).unwrap();
    let (junit, report) = (dir.join("junit.xml"), dir.join("report.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("run")
        .arg(&file)
        .arg("--junit")
        .arg(&junit)
        .arg("--out")
        .arg(&report)
        .arg("--sidecar")
        .arg(sidecar_binary())
        .output()
        .unwrap();
    let run = Run {
        out,
        junit: std::fs::read_to_string(&junit).unwrap_or_default(),
        report: std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    run
}

/// The workspace's `mcp-sidecar`, built beside this test's binary by the workspace build.
fn sidecar_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mcp-chaos"));
    let bin = exe.with_file_name(format!("mcp-sidecar{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

fn breaker_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/configs/breaker.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_working_breaker_passes_and_reports_in_json_and_junit() {
    let run = run_with(&breaker_config(), "pass");
    let stdout = String::from_utf8_lossy(&run.out.stdout);
    assert!(
        run.out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    assert!(stdout.contains("scenario short-refusal"), "{stdout}");
    assert!(stdout.contains("seed 7: PASS"), "{stdout}");
    assert!(stdout.contains("fault `refuse` on"), "{stdout}");
    assert!(stdout.contains("circuit `backend` open"), "{stdout}");
    assert_eq!(run.report["passed"], true);
    let scenario = &run.report["scenarios"][0];
    assert_eq!(scenario["seed"], 7);
    // The steady state's two... one verdict (a rate) and the six assertions.
    assert_eq!(scenario["verdicts"].as_array().unwrap().len(), 7);
    assert!(scenario["traffic"]["requests"].as_u64().unwrap() > 400);
    assert!(
        run.junit
            .contains("<testsuite name=\"short-refusal\" tests=\"7\" failures=\"0\""),
        "{}",
        run.junit
    );
}

#[test]
fn a_disabled_breaker_fails_naming_the_assertion_and_the_measured_value() {
    let broken = breaker_config().replace("enabled = true", "enabled = false");
    assert_ne!(
        broken,
        breaker_config(),
        "the config must have its breaker enabled to break"
    );
    let run = run_with(&broken, "broken");
    let stdout = String::from_utf8_lossy(&run.out.stdout);
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert_eq!(run.out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("seed 7: FAIL"), "{stdout}");
    assert!(
        stdout.contains("FAIL circuit_opens_within (line 24): never opened during fault(s) refuse"),
        "{stdout}"
    );
    assert!(stderr.contains("FAILED: short-refusal"), "{stderr}");
    assert_eq!(run.report["passed"], false);
    assert!(run.junit.contains("<failure message=\"never opened during fault(s) refuse (metrics: 0 openings, 0 fast rejections); expected opens within 10 failed requests\""), "{}", run.junit);
}

#[test]
fn a_bad_scenario_file_exits_2_before_anything_runs() {
    let dir = std::env::temp_dir().join(format!("mcp-chaos-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        scenario(Path::new("x.toml")).replace("rate = 40", "rate = -1"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("run")
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:8: traffic.rate: must be above 0"),
        "{stderr}"
    );
}

/// The processes `pid`'s threads started and that still exist.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// Whether process `pid` is gone (or a zombie nobody will run again).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn ctrl_c_ends_the_run_with_130_and_stops_the_sidecar() {
    if !Path::new("/proc/self/task").exists() {
        return; // Linux's /proc is how the sidecar process is found
    }
    let dir = std::env::temp_dir().join(format!("mcp-chaos-run-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sidecar.toml");
    std::fs::write(&config, breaker_config()).unwrap();
    let file = dir.join("scenario.toml");
    // A long run: Ctrl-C comes while the backend link is down.
    let text = scenario(&config)
        .replace("duration = \"12s\"", "duration = \"60s\"")
        .replace(
            "at = \"3s\"\nuntil = \"7s\"",
            "at = \"3s\"\nuntil = \"50s\"",
        );
    std::fs::write(&file, text).unwrap();
    let mut chaos = Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("run")
        .arg(&file)
        .arg("--sidecar")
        .arg(sidecar_binary())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The sidecar appears within the runner's 15 s start bound.
    let mut sidecar = None;
    for _ in 0..300 {
        if let Some(&pid) = children(chaos.id()).first() {
            sidecar = Some(pid);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sidecar = sidecar.expect("the runner started no sidecar");
    // Into the fault (at 3 s).
    std::thread::sleep(std::time::Duration::from_secs(5));
    let pid = rustix::process::Pid::from_raw(i32::try_from(chaos.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let mut status = None;
    for _ in 0..400 {
        if let Some(s) = chaos.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = status else {
        chaos.kill().unwrap();
        panic!("mcp-chaos still running 20 s after Ctrl-C");
    };
    let out = chaos.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: removing the faults and stopping the sidecar"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("interrupted: every fault removed, traffic stopped"),
        "{stdout}"
    );
    assert!(stdout.contains("error: interrupted (Ctrl-C)"), "{stdout}");
    assert!(
        gone(sidecar),
        "the sidecar {sidecar} outlived the run: {stdout}"
    );
}

/// A loopback address free now.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_system_is_judged_from_its_traffic_and_admin_endpoints() {
    let fixture = mcp_fixtures::FixtureServer::start(mcp_fixtures::FixtureConfig::default())
        .await
        .unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let mut sidecar = tokio::process::Command::new(sidecar_binary())
        .args(["run", "--upstream", &fixture.mcp_url()])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{admin}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the sidecar did not become ready");
    let text = format!(
        r#"name = "external"
description = "A running sidecar serves steady traffic without a 5xx."

[system]
target_url = "http://{listen}/mcp"
admin_url = "http://{admin}"
backend_stats_url = "http://{}/stats"

[traffic]
rate = 50
call = 'echo {{"text":"hi"}}'
duration = "3s"

[steady_state]
duration = "1s"
min_success_rate = 0.99

[[assert]]
kind = "no_status"
status = "5xx"

[[assert]]
kind = "no_hang_past_timeout"
"#,
        fixture.addr()
    );
    let dir = std::env::temp_dir().join(format!("mcp-chaos-run-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("external.toml");
    std::fs::write(&file, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("run")
        .arg(&file)
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("traffic: 150 requests, 150 ok"), "{stdout}");
    // The fixture saw the traffic: the initialize, the calls and the session's end at least.
    assert!(fixture.stats().jsonrpc_requests_total >= 150);
    sidecar.kill().await.unwrap();
}
