use std::path::Path;
use std::time::Duration;

use super::*;
use crate::tcp::ToxicKind;

const GOOD: &str = r#"name = "demo"
description = "The breaker opens and recovers."
seed = 7

[system]
sidecar_config = "configs/breaker.toml"
fixture = { mode = "sse", stateless = true }

[traffic]
rate = 20
call = 'echo {"text":"hi"}'
timeout = "2s"
duration = "30s"
jobs = 3

[steady_state]
duration = "5s"
min_success_rate = 0.99
max_p99 = "250ms"

[[fault]]
name = "slow"
at = "10s"
for = "5s"
toxic = { type = "latency", stream = "upstream", toxicity = 0.5, attributes = { latency = 300 } }

[[fault]]
at = "16s"
until = "20s"
http = { percent = 50, status = 500 }

[[fault]]
name = "crash"
at = "21s"
kill_sidecar = "SIGKILL"
restart_after = "2s"

[[assert]]
kind = "circuit_opens_within"
requests = 5
fault = "fault-2"

[[assert]]
name = "recovery"
kind = "recovers_within"
open_period_plus = "1s"

[[assert]]
kind = "jobs_all_terminal"

[[assert]]
kind = "rss_below"
mib = 64

[[assert]]
kind = "no_status"
status = "5xx"
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_toml(text, Path::new("dir/s.toml"))
}

/// The error for `text` with `from` replaced by `to`: it must be refused.
fn refused(from: &str, to: &str) -> ScenarioError {
    assert!(GOOD.contains(from), "test bug: `{from}` not in GOOD");
    match parse(&GOOD.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted with `{from}` → `{to}`"),
        Err(e) => e,
    }
}

fn line_of(needle: &str, text: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[test]
fn good_file_parses_to_the_expected_structure() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.name, "demo");
    assert_eq!(s.seed, Some(7));
    assert_eq!(
        s.system,
        System::Managed {
            jwks: false,
            sidecar_config: "dir/configs/breaker.toml".into(),
            fixture: FixtureOptions {
                sse: true,
                stateless: true,
                conformance_tools: false
            },
        }
    );
    assert_eq!(s.traffic.load, Load::Rate(20.0));
    assert_eq!(
        s.traffic.request,
        Request::Call(r#"echo {"text":"hi"}"#.into())
    );
    assert_eq!(s.traffic.sessions, 1);
    assert_eq!(s.traffic.timeout, Duration::from_secs(2));
    assert_eq!(s.steady_state.max_p99, Some(Duration::from_millis(250)));
    assert_eq!(s.faults.len(), 3);
    let slow = &s.faults[0];
    assert_eq!(
        (slow.at, slow.until),
        (Duration::from_secs(10), Duration::from_secs(15))
    );
    let FaultAction::Toxic(t) = &slow.action else {
        panic!("{:?}", slow.action)
    };
    assert_eq!(
        t.kind,
        ToxicKind::Latency {
            latency: 300,
            jitter: 0
        }
    );
    assert_eq!((t.name.as_str(), t.toxicity), ("slow", 0.5));
    assert_eq!(s.faults[1].name, "fault-2");
    let FaultAction::Http(h) = &s.faults[1].action else {
        panic!("{:?}", s.faults[1].action)
    };
    assert_eq!((h.name.as_str(), h.percent), ("fault-2", 50.0));
    assert_eq!(s.faults[2].until, Duration::from_secs(23));
    assert_eq!(
        s.faults[2].action,
        FaultAction::KillSidecar {
            signal: Signal::Kill
        }
    );
    let checks: Vec<_> = s.asserts.iter().map(|a| a.check.clone()).collect();
    assert_eq!(
        checks,
        vec![
            Check::CircuitOpensWithin {
                requests: 5,
                fault: Some("fault-2".into())
            },
            Check::RecoversWithin {
                within: Recovery::OpenPeriodPlus(Duration::from_secs(1)),
                fault: None
            },
            Check::JobsAllTerminal,
            Check::RssBelow {
                bytes: 64 * 1024 * 1024
            },
            Check::NoStatus {
                status: StatusPattern::Class(5)
            },
        ]
    );
    assert_eq!(s.asserts[1].name.as_deref(), Some("recovery"));
    assert_eq!(s.asserts[1].line, line_of("name = \"recovery\"", GOOD) - 1);
}

#[test]
fn external_system_refuses_faults_on_the_backend_link() {
    let text = GOOD
        .replace(
            "sidecar_config = \"configs/breaker.toml\"\nfixture = { mode = \"sse\", stateless = true }",
            "target_url = \"http://127.0.0.1:8080/mcp\"\nbackend_stats_url = \"http://127.0.0.1:9000/stats\"",
        )
        .replace("[[fault]]\nname = \"crash\"\nat = \"21s\"\nkill_sidecar = \"SIGKILL\"\nrestart_after = \"2s\"\n", "")
        .replace("[[assert]]\nkind = \"rss_below\"\nmib = 64\n", "");
    let e = parse(&text).unwrap_err();
    assert!(
        e.to_string()
            .contains("fault `slow`: toxic: needs system.sidecar_config"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of("toxic = {", &text)), "{e}");
}

#[test]
fn external_system_without_faults_parses() {
    let text = r#"name = "staging-burst"
description = "Bursts over the limit get 429 with Retry-After, never a 5xx."

[system]
target_url = "http://127.0.0.1:8080/mcp"
admin_url = "http://127.0.0.1:9090"

[traffic]
rate = 100
method = "tools/list"
duration = "10s"

[steady_state]
duration = "2s"
max_p99 = "1s"

[[assert]]
kind = "no_status"
status = "5xx"
"#;
    let s = parse(text).unwrap();
    assert!(
        matches!(s.system, System::External { ref target_url, .. } if target_url == "http://127.0.0.1:8080/mcp")
    );
}

#[test]
fn unknown_key_is_refused_with_its_line_and_name() {
    let e = refused("jobs = 3", "jobs = 3\nburst = 5");
    assert_eq!(e.line, Some(line_of("jobs = 3", GOOD) + 1), "{e}");
    assert!(e.to_string().contains("burst"), "{e}");
    assert!(e.to_string().starts_with("dir/s.toml:"), "{e}");
}

#[test]
fn unknown_key_in_an_assert_is_refused_naming_it() {
    let e = refused("requests = 5", "requests = 5\nwithin = \"1s\"");
    assert!(e.to_string().contains("within"), "{e}");
    assert_eq!(
        e.line,
        Some(line_of("kind = \"circuit_opens_within\"", GOOD) - 1)
    );
}

#[test]
fn missing_description_is_refused() {
    let e = refused("description = \"The breaker opens and recovers.\"\n", "");
    assert!(e.to_string().contains("description"), "{e}");
}

#[test]
fn empty_description_is_refused_at_its_line() {
    let e = refused("\"The breaker opens and recovers.\"", "\"  \"");
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("description"), "{e}");
}

#[test]
fn until_before_at_is_refused() {
    let e = refused("until = \"20s\"", "until = \"12s\"");
    assert_eq!(e.line, Some(line_of("until = \"20s\"", GOOD)), "{e}");
    assert!(e.to_string().contains("until"), "{e}");
}

#[test]
fn fault_past_the_end_of_the_run_is_refused() {
    let e = refused("for = \"5s\"", "for = \"25s\"");
    assert_eq!(e.line, Some(line_of("for = \"5s\"", GOOD)), "{e}");
    assert!(e.to_string().contains("`slow`: for:"), "{e}");
    assert!(e.to_string().contains("traffic.duration"), "{e}");
}

#[test]
fn fault_before_the_steady_state_ends_is_refused() {
    let e = refused("at = \"10s\"", "at = \"1s\"");
    assert_eq!(e.line, Some(line_of("at = \"10s\"", GOOD)), "{e}");
    assert!(e.to_string().contains("steady_state.duration"), "{e}");
}

#[test]
fn bad_duration_is_refused_naming_key_and_line() {
    let e = refused("max_p99 = \"250ms\"", "max_p99 = \"fast\"");
    assert_eq!(e.line, Some(line_of("max_p99", GOOD)), "{e}");
    assert!(e.to_string().contains("steady_state.max_p99"), "{e}");
    let e = refused(
        "open_period_plus = \"1s\"",
        "open_period_plus = \"1 parsec\"",
    );
    assert!(e.to_string().contains("open_period_plus"), "{e}");
}

#[test]
fn assert_about_an_undeclared_fault_is_refused() {
    let e = refused("fault = \"fault-2\"", "fault = \"nope\"");
    assert!(e.to_string().contains("nope"), "{e}");
    let text = "name = \"x\"\ndescription = \"d\"\n[system]\nsidecar_config = \"c.toml\"\n\
                [traffic]\nrate = 1\nmethod = \"ping\"\nduration = \"5s\"\n\
                [steady_state]\nduration = \"1s\"\nmax_p99 = \"1s\"\n\
                [[assert]]\nkind = \"fast_fail\"\np99 = \"10ms\"\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.to_string().contains("no [[fault]]"), "{e}");
}

#[test]
fn bad_toxic_is_refused_naming_the_attribute() {
    let e = refused(
        "attributes = { latency = 300 }",
        "attributes = { latncy = 300 }",
    );
    assert!(e.to_string().contains("toxic.attributes.latncy"), "{e}");
    assert_eq!(e.line, Some(line_of("toxic = {", GOOD)), "{e}");
}

#[test]
fn bad_http_fault_is_refused_naming_the_key() {
    let e = refused(
        "percent = 50, status = 500",
        "percent = 50, status = 500, delay = \"1s\"",
    );
    assert!(e.to_string().contains("exactly one action"), "{e}");
    assert!(!e.to_string().contains("http: fault"), "said twice: {e}");
    assert_eq!(e.line, Some(line_of("http = {", GOOD)), "{e}");
    let e = refused("percent = 50, status = 500", "percnt = 50, status = 500");
    assert!(e.to_string().contains("percnt"), "{e}");
}

#[test]
fn fault_with_two_actions_or_none_is_refused() {
    let e = refused("http = {", "proxy_down = true\nhttp = {");
    assert!(e.to_string().contains("exactly one of"), "{e}");
}

#[test]
fn kill_without_restart_after_is_refused() {
    let e = refused("restart_after = \"2s\"", "for = \"2s\"");
    assert!(e.to_string().contains("restart_after"), "{e}");
}

#[test]
fn assert_needing_something_missing_is_refused() {
    let e = refused("jobs = 3\n", "");
    assert!(e.to_string().contains("traffic.jobs"), "{e}");
    let e = refused("status = \"5xx\"", "status = \"6xx\"");
    assert!(e.to_string().contains("6xx"), "{e}");
    let e = refused("kind = \"rss_below\"", "kind = \"rss_above\"");
    assert!(e.to_string().contains("rss_above"), "{e}");
}

#[test]
fn traffic_needs_exactly_one_load_shape() {
    let e = refused("rate = 20", "rate = 20\nconcurrency = 4");
    assert!(e.to_string().contains("rate"), "{e}");
    let e = refused("call = 'echo {\"text\":\"hi\"}'", "call = 'echo [1'");
    assert!(e.to_string().contains("traffic.call"), "{e}");
}

#[test]
fn status_patterns_match_their_statuses() {
    assert!(StatusPattern::Class(5).matches(503));
    assert!(!StatusPattern::Class(5).matches(429));
    assert!(StatusPattern::Exact(429).matches(429));
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.description.trim().is_empty());
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} scenarios in {}", dir.display());
}

#[test]
fn readme_example_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = &readme[readme.find("### Scenario files").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let s = parse(&section[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.faults[0].action, FaultAction::ProxyDown);
}

#[test]
fn jwks_link_needs_the_runners_jwks() {
    let e = refused(
        "toxic = { type = \"latency\"",
        "link = \"jwks\"\ntoxic = { type = \"latency\"",
    );
    assert!(
        e.to_string()
            .contains("link = \"jwks\": needs system.jwks = true"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of("toxic = {", GOOD)), "{e}");
    let s = Scenario::from_toml(
        &GOOD
            .replace("fixture = {", "jwks = true\nfixture = {")
            .replace(
                "toxic = { type = \"latency\"",
                "link = \"jwks\"\ntoxic = { type = \"latency\"",
            ),
        Path::new("dir/s.toml"),
    )
    .unwrap();
    assert_eq!(s.faults[0].link, Link::Jwks);
    assert_eq!(s.faults[1].link, Link::Backend);
    let e = refused("http = {", "link = \"backend\"\nhttp = {");
    assert!(
        e.to_string()
            .contains("link: only with toxic or proxy_down"),
        "{e}"
    );
    let e = refused(
        "toxic = { type = \"latency\"",
        "link = \"idp\"\ntoxic = { type = \"latency\"",
    );
    assert!(
        e.to_string().contains("expected \"backend\" or \"jwks\""),
        "{e}"
    );
}

#[test]
fn window_checks_are_checked_against_the_scenario() {
    let e = refused(
        "kind = \"jobs_all_terminal\"",
        "kind = \"unknown_key_refused\"",
    );
    assert!(e.to_string().contains("needs system.jwks = true"), "{e}");
    let e = refused(
        "kind = \"jobs_all_terminal\"",
        "kind = \"success_rate_during\"\nmin = 1.5",
    );
    assert!(
        e.to_string().contains("min = 1.5: must be from 0 to 1"),
        "{e}"
    );
    let e = refused(
        "kind = \"jobs_all_terminal\"",
        "kind = \"open_period_grows\"\nfault = \"nope\"",
    );
    assert!(
        e.to_string()
            .contains("fault = \"nope\": no fault has this name"),
        "{e}"
    );
    let e = refused("jobs = 3\n", "job_call = 'sleep {\"ms\": 10}'\n");
    assert!(
        e.to_string().contains("traffic.job_call: only with jobs"),
        "{e}"
    );
}
