use std::path::Path;

use super::*;
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::resilience::State;

/// A config on ephemeral loopback ports, jobs off, with `rest` appended.
fn toml(rest: &str) -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[jobs]
enabled = false
{rest}
"#
    )
}

const UPSTREAM_A: &str = r#"
[[upstream]]
name = "a"
url = "http://127.0.0.1:9/mcp"
path = "/a"
[upstream.breaker]
consecutive_failures = 3
"#;

const UPSTREAM_B: &str = r#"
[[upstream]]
name = "b"
url = "http://127.0.0.1:9/mcp"
path = "/b"
"#;

const RULE: &str = r#"
[[rate_limit]]
name = "per-ip"
rate = 10
per = "1m"
key = ["client_ip"]
"#;

fn parse(text: &str) -> Config {
    Config::from_toml_with_env(text, &|_| None).unwrap()
}

fn shared() -> Arc<Shared> {
    let metrics = Metrics::new().unwrap();
    Arc::new(Shared {
        readiness: Readiness::new(&[]),
        cors_preflights: crate::cors::Cors::register_metric(metrics.registry()).unwrap(),
        metrics,
        jobs: None,
        background: tokio_util::sync::CancellationToken::new(),
        tracing: None,
        redis: None,
    })
}

async fn build(text: &str, shared: &Shared, previous: Option<&Generation>) -> Generation {
    Generation::build(parse(text), shared, previous)
        .await
        .unwrap()
}

/// A reloader over the config in `path`, as the binary makes it.
async fn reloader(path: &Path) -> (Reloader, Arc<Live>, Arc<Shared>) {
    let shared = shared();
    let source = ConfigSource::file(path);
    let first = Generation::build(source.load().unwrap(), &shared, None)
        .await
        .unwrap();
    let view = first.view.clone();
    let info =
        crate::build_info::register_info_metrics(shared.metrics.registry(), &view.hash).unwrap();
    let live = Arc::new(Live::new(first));
    let reloader = Reloader::new(
        live.clone(),
        shared.clone(),
        Some(source),
        Box::new(|_| {}),
        info,
    )
    .unwrap();
    (reloader, live, shared)
}

#[tokio::test]
async fn an_unchanged_upstream_keeps_its_breaker_and_a_changed_one_gets_a_new_one() {
    let shared = shared();
    let before = build(&toml(&format!("{UPSTREAM_A}{UPSTREAM_B}")), &shared, None).await;
    // `b` changes its breaker's settings, `a` only its response timeout (not a breaker setting).
    let a_other_timeout = UPSTREAM_A.replace(
        "[upstream.breaker]",
        "response_timeout = \"7s\"\n[upstream.breaker]",
    );
    let b_other_breaker = format!("{UPSTREAM_B}[upstream.breaker]\nconsecutive_failures = 9\n");
    let after = build(
        &toml(&format!("{a_other_timeout}{b_other_breaker}")),
        &shared,
        Some(&before),
    )
    .await;
    assert!(after.resilience.shares_breaker(&before.resilience, "a"));
    assert!(!after.resilience.shares_breaker(&before.resilience, "b"));
}

#[tokio::test]
async fn an_open_circuit_of_an_unchanged_upstream_stays_open_across_a_reload() {
    let shared = shared();
    let before = build(&toml(UPSTREAM_A), &shared, None).await;
    before.resilience.force("a", true).unwrap();
    let after = build(
        &toml(&format!("{UPSTREAM_A}{UPSTREAM_B}")),
        &shared,
        Some(&before),
    )
    .await;
    let a = after.resilience.breaker("a").unwrap();
    assert_eq!(a.snapshot().state, State::Open);
    assert_eq!(
        after.resilience.breaker("b").unwrap().snapshot().state,
        State::Closed
    );
}

#[tokio::test]
async fn an_unchanged_rule_keeps_its_buckets_and_a_changed_rule_starts_empty() {
    let shared = shared();
    let upstream_rule = format!(
        "{UPSTREAM_A}[[upstream.rate_limit]]\nname = \"a-calls\"\nrate = 5\nper = \"1s\"\nkey = [\"principal\"]\n"
    );
    let before = build(&toml(&format!("{upstream_rule}{RULE}")), &shared, None).await;
    let unchanged = build(
        &toml(&format!("{upstream_rule}{RULE}")),
        &shared,
        Some(&before),
    )
    .await;
    assert!(
        unchanged
            .limits
            .shares_buckets(&before.limits, None, "per-ip")
    );
    assert!(
        unchanged
            .limits
            .shares_buckets(&before.limits, Some("a"), "a-calls")
    );
    let faster = RULE.replace("rate = 10", "rate = 20");
    let changed = build(
        &toml(&format!("{upstream_rule}{faster}")),
        &shared,
        Some(&before),
    )
    .await;
    assert!(
        !changed
            .limits
            .shares_buckets(&before.limits, None, "per-ip")
    );
    assert!(
        changed
            .limits
            .shares_buckets(&before.limits, Some("a"), "a-calls")
    );
}

#[tokio::test]
async fn an_unchanged_upstream_keeps_its_connection_pool() {
    let shared = shared();
    let before = build(&toml(&format!("{UPSTREAM_A}{UPSTREAM_B}")), &shared, None).await;
    let b_moved = UPSTREAM_B.replace("127.0.0.1:9", "127.0.0.1:10");
    let after = build(
        &toml(&format!("{UPSTREAM_A}{b_moved}")),
        &shared,
        Some(&before),
    )
    .await;
    let same_pool = |name: &str| {
        after
            .upstream(name)
            .unwrap()
            .client
            .same_pool(&before.upstream(name).unwrap().client)
    };
    assert!(same_pool("a"));
    assert!(!same_pool("b"));
}

#[test]
fn a_changed_listener_address_is_refused_naming_the_field() {
    let before = parse(&toml(UPSTREAM_A));
    let after = parse(&toml(UPSTREAM_A).replace(
        "[listen]\naddr = \"127.0.0.1:0\"",
        "[listen]\naddr = \"127.0.0.1:8181\"",
    ));
    let refused = restart_fields(&before, &after);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].field, "listen.addr");
    let text = refused[0].to_string();
    assert!(text.contains("needs a restart"), "{text}");
    assert!(text.contains("127.0.0.1:8181"), "{text}");
}

#[test]
fn job_engine_settings_need_a_restart_but_its_path_does_not() {
    let before = parse(&toml(UPSTREAM_A));
    let after = parse(&toml(UPSTREAM_A).replace(
        "[jobs]\nenabled = false",
        "[jobs]\nenabled = false\nmax_queued = 5\npath = \"/tasks-api\"",
    ));
    let fields: Vec<String> = restart_fields(&before, &after)
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["jobs.max_queued"]);
}

#[test]
fn turning_tls_on_needs_a_restart() {
    let before = parse(&toml(UPSTREAM_A));
    let mut after = before.clone();
    after.listen.tls = Some(crate::config::TlsConfig {
        cert: "cert.pem".into(),
        key: "key.pem".into(),
    });
    let fields: Vec<String> = restart_fields(&before, &after)
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["listen.tls"]);
}

#[test]
fn the_redis_connection_and_the_span_exporter_need_a_restart() {
    let before = parse(&toml(UPSTREAM_A));
    let mut after = before.clone();
    after.redis = Some(toml::from_str("url = \"redis://127.0.0.1:6379\"").unwrap());
    after.tracing.enabled = true;
    let fields: Vec<String> = restart_fields(&before, &after)
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["tracing", "redis"]);
}

#[tokio::test]
async fn an_invalid_file_is_refused_with_its_place_and_the_running_config_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, toml(UPSTREAM_A)).unwrap();
    let (reloader, live, shared) = reloader(&path).await;
    let running = live.current().view.hash.clone();
    std::fs::write(
        &path,
        toml(&UPSTREAM_A.replace("consecutive_failures = 3", "consecutive_failure = 3")),
    )
    .unwrap();
    let err = reloader.reload("test").await.unwrap_err();
    assert!(matches!(err, ReloadError::Invalid(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("consecutive_failure"), "{text}");
    assert!(
        text.contains("did you mean `consecutive_failures`"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:", path.display())),
        "names the file: {text}"
    );
    assert_eq!(live.current().view.hash, running);
    let metrics = String::from_utf8(shared.metrics.render().unwrap()).unwrap();
    assert!(
        metrics.contains("mcp_sidecar_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("mcp_sidecar_config_last_reload_successful 0"));
}

#[tokio::test]
async fn a_valid_file_replaces_the_config_and_its_hash_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, toml(UPSTREAM_A)).unwrap();
    let (reloader, live, shared) = reloader(&path).await;
    let before = live.current().view.hash.clone();
    std::fs::write(&path, toml(&format!("{UPSTREAM_A}{UPSTREAM_B}{RULE}"))).unwrap();
    let report = reloader.reload("test").await.unwrap();
    assert_eq!(report.previous_hash, before);
    assert_ne!(report.hash, before);
    assert_eq!(report.changed, ["rate_limit", "upstream"]);
    let now = live.current();
    assert_eq!(now.view.hash, report.hash);
    assert!(now.upstream("b").is_some());
    let metrics = String::from_utf8(shared.metrics.render().unwrap()).unwrap();
    assert!(metrics.contains(&format!(
        "mcp_sidecar_config_info{{hash=\"{}\"}} 1",
        report.hash
    )));
    assert!(
        !metrics.contains(&format!("hash=\"{before}\"")),
        "{metrics}"
    );
    assert!(metrics.contains("mcp_sidecar_config_reloads_total{result=\"ok\"} 1"));
}

#[tokio::test]
async fn a_lower_in_flight_cap_counts_what_is_already_in_flight() {
    let shared = shared();
    let before = build(&toml(UPSTREAM_A), &shared, None).await;
    let held: Vec<_> = (0..3)
        .map(|_| before.limits.global_in_flight().try_acquire().unwrap())
        .collect();
    let capped = toml(&format!("[limits]\nmax_in_flight = 2\n{UPSTREAM_A}"));
    let after = build(&capped, &shared, Some(&before)).await;
    after.limits.apply_caps(&after.config);
    assert!(after.limits.global_in_flight().try_acquire().is_none());
    drop(held);
    assert!(after.limits.global_in_flight().try_acquire().is_some());
}

#[tokio::test]
async fn a_reload_without_a_file_is_refused() {
    let shared = shared();
    let first = build(&toml(UPSTREAM_A), &shared, None).await;
    let info =
        crate::build_info::register_info_metrics(shared.metrics.registry(), &first.view.hash)
            .unwrap();
    let live = Arc::new(Live::new(first));
    let reloader = Reloader::new(live, shared, None, Box::new(|_| {}), info).unwrap();
    assert!(matches!(
        reloader.reload("test").await,
        Err(ReloadError::NoFile)
    ));
}

#[tokio::test]
async fn an_issuer_with_an_unchanged_jwks_url_keeps_its_keys() {
    let shared = shared();
    let issuer = |id: &str, url: &str| {
        format!(
            "[[auth.jwt]]\nid = \"{id}\"\nissuer = \"https://{id}.test\"\n\
             algorithms = [\"RS256\"]\njwks_url = \"{url}\"\n"
        )
    };
    let auth = |issuers: &str| {
        toml(&format!(
            "[auth]\npublic_url = \"https://mcp.example.test\"\n{issuers}{UPSTREAM_A}"
        ))
    };
    let before = build(
        &auth(&format!(
            "{}{}",
            issuer("idp", "https://idp.test/jwks.json"),
            issuer("corp", "https://corp.test/jwks.json")
        )),
        &shared,
        None,
    )
    .await;
    let after = build(
        &auth(&format!(
            "{}{}",
            issuer("idp", "https://idp.test/jwks.json"),
            issuer("corp", "https://corp.test/other-jwks.json")
        )),
        &shared,
        Some(&before),
    )
    .await;
    assert!(after.auth.shares_keys(&before.auth, "idp"));
    assert!(!after.auth.shares_keys(&before.auth, "corp"));
}
