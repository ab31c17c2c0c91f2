use super::*;
use crate::config::Config;

const MINIMAL: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, &|_| None)
}

fn err(extra: &str) -> String {
    load(&format!("{MINIMAL}{extra}")).unwrap_err().to_string()
}

#[test]
fn defaults_apply_without_sections() {
    let c = load(MINIMAL).unwrap();
    let up = &c.upstream[0];
    assert_eq!(up.breaker, BreakerConfig::default());
    assert_eq!(up.retry, RetryConfig::default());
    assert_eq!(up.health_check, HealthCheckConfig::default());
    assert!(up.tool.is_empty());
}

#[test]
fn tool_entries_and_overrides_parse() {
    let c = load(&format!(
        "{MINIMAL}[upstream.breaker]\nconsecutive_failures = 3\n\
         [[upstream.tool]]\nname = \"crawl_*\"\ntimeout = \"10m\"\n\
         breaker = {{ open_duration = \"5s\" }}\n\
         [[upstream.tool]]\nname = \"qdrant_find\"\ntimeout = \"5s\"\nidempotent = true\n"
    ))
    .unwrap();
    let up = &c.upstream[0];
    assert_eq!(up.tool.len(), 2);
    assert_eq!(up.tool[0].timeout, Some(Duration::from_secs(600)));
    let own = up.tool[0].breaker.as_ref().unwrap().apply(&up.breaker);
    assert_eq!(own.open_duration, Duration::from_secs(5));
    assert_eq!(
        own.consecutive_failures, 3,
        "inherits the upstream's setting"
    );
    assert!(up.tool[1].idempotent);
}

#[test]
fn invalid_values_name_the_field() {
    let cases = [
        (
            "[upstream.breaker]\nfailure_ratio = 1.5\n",
            "upstream[0].breaker.failure_ratio:",
        ),
        (
            "[upstream.breaker]\nhalf_open_probes = 0\n",
            "upstream[0].breaker.half_open_probes:",
        ),
        (
            "[upstream.breaker]\nfailure_statuses = [200]\n",
            "upstream[0].breaker.failure_statuses:",
        ),
        (
            "[upstream.breaker]\nopen_duration = \"10m\"\n",
            "upstream[0].breaker.max_open_duration:",
        ),
        (
            "[upstream.breaker]\nconsecutive_failures = 0\nfailure_ratio = 0.0\n",
            "upstream[0].breaker.consecutive_failures:",
        ),
        (
            "[[upstream.tool]]\nname = \"\"\n",
            "upstream[0].tool[0].name:",
        ),
        (
            "[[upstream.tool]]\nname = \"a b\"\n",
            "upstream[0].tool[0].name:",
        ),
        (
            "[[upstream.tool]]\nname = \"x\"\ntimeout = \"0s\"\n",
            "upstream[0].tool[0].timeout:",
        ),
        (
            "[[upstream.tool]]\nname = \"x\"\nbreaker = { half_open_successes = 0 }\n",
            "upstream[0].tool[0].breaker.half_open_successes:",
        ),
        (
            "[[upstream.tool]]\nname = \"x\"\n[[upstream.tool]]\nname = \"x\"\n",
            "upstream[0].tool[1].name:",
        ),
        (
            "[upstream.retry]\nmax_retries = 11\n",
            "upstream[0].retry.max_retries:",
        ),
        (
            "[upstream.retry]\nbudget_ratio = -1.0\n",
            "upstream[0].retry.budget_ratio:",
        ),
        (
            "[upstream.retry]\nmax_backoff = \"1ms\"\n",
            "upstream[0].retry.max_backoff:",
        ),
        (
            "[upstream.retry]\nstatuses = [302]\n",
            "upstream[0].retry.statuses:",
        ),
        (
            "[upstream.health_check]\nkind = \"http\"\n",
            "upstream[0].health_check.path:",
        ),
        (
            "[upstream.health_check]\nkind = \"tcp\"\npath = \"/h\"\n",
            "upstream[0].health_check.path:",
        ),
    ];
    for (extra, prefix) in cases {
        let e = err(extra);
        assert!(e.starts_with(prefix), "{extra:?}: {e}");
    }
}

#[test]
fn unknown_keys_are_named() {
    assert!(err("[upstream.breaker]\nthreshold = 1\n").contains("threshold"));
    assert!(err("[[upstream.tool]]\nname = \"x\"\nretry = true\n").contains("retry"));
    assert!(err("[upstream.health_check]\nkind = \"grpc\"\n").contains("grpc"));
}

#[test]
fn disabled_breaker_skips_its_checks() {
    load(&format!(
        "{MINIMAL}[upstream.breaker]\nenabled = false\nhalf_open_probes = 0\n"
    ))
    .unwrap();
}
