//! Global rate limits (`scope = "global"`) across two replicas sharing one redis-server: a rule of
//! 10 per minute admits exactly 10 across both (a local rule admits 10 on each); with Redis killed
//! mid-run every request still completes, with the rule's fallback (`fail_open`: each replica's
//! own bucket; `fail_closed`: 503 `rate_limit_unavailable`); once Redis is back the global rule
//! applies again.
//!
//! Real time: Redis' clock decides. The rule refills one request every 6 s, far longer than the
//! few dozen loopback requests of a phase take.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::redis_server::RedisServer;
use mcp_e2e_tests::{RunningSidecar, call, metric_value, post, start};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::Config;
use serde_json::{Value, json};

/// Far beyond what a request takes even on a loaded machine: it only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// The rule: 10 per minute, burst 10, keyed by client IP (both replicas see 127.0.0.1).
fn rule(scope: &str, failure: Option<&str>) -> String {
    let failure = failure.map_or(String::new(), |f| format!("redis_failure = \"{f}\"\n"));
    format!(
        "[[rate_limit]]\nname = \"ten\"\nkey = [\"client_ip\"]\nrate = 10\nper = \"1m\"\n\
         burst = 10\nscope = \"{scope}\"\n{failure}"
    )
}

/// A sidecar in front of `backend` with `rule`, and `[redis]` on `redis` (if any) under the
/// key prefix `prefix` (one per test: they share no state).
async fn replica(
    backend: &FixtureServer,
    redis: Option<&RedisServer>,
    prefix: &str,
    rule: &str,
) -> RunningSidecar {
    let redis = redis.map_or(String::new(), |r| {
        format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}:\"\ncommand_timeout = \"250ms\"\n\
             breaker_failures = 1\nbreaker_open_duration = \"100ms\"\n",
            r.url()
        )
    });
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{redis}{rule}\n\
         [[upstream]]\nname = \"u\"\nurl = \"{}\"\n",
        backend.mcp_url()
    );
    start(Config::from_toml_with_env(&text, &|_| None).unwrap()).await
}

/// One `tools/call` through `sidecar`: its status and `Retry-After`, and the error body if any.
async fn echo(sidecar: &RunningSidecar, id: u64) -> (u16, Option<u64>, Value) {
    let resp = tokio::time::timeout(
        HANG_GUARD,
        post(sidecar, "/mcp", call(id, "echo", json!({"text": "hi"}))),
    )
    .await
    .expect("the request completes");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = if status == 200 {
        Value::Null
    } else {
        resp.json().await.unwrap()
    };
    (status, retry_after, body)
}

/// Sends `count` requests alternating between the replicas; returns how many each admitted,
/// asserting every refusal is a 429 with a valid `Retry-After` (at most the rule's 6 s interval).
async fn alternate(replicas: [&RunningSidecar; 2], count: u64, first_id: u64) -> [u64; 2] {
    let mut admitted = [0; 2];
    for i in 0..count {
        let which = usize::try_from(i % 2).unwrap();
        let (status, retry_after, body) = echo(replicas[which], first_id + i).await;
        match status {
            200 => admitted[which] += 1,
            429 => {
                let retry = retry_after.expect("a 429 carries Retry-After");
                assert!((1..=6).contains(&retry), "Retry-After {retry}");
                assert_eq!(body["error"]["data"]["rule"], "ten");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    admitted
}

/// Sends requests to `sidecar` until its Redis breaker is closed again (Redis answered it).
async fn until_redis_answers(sidecar: &RunningSidecar, first_id: u64) {
    for i in 0..400 {
        echo(sidecar, first_id + i).await;
        let metrics = sidecar.metrics().await;
        if metric_value(&metrics, "mcp_sidecar_redis_breaker_state") == Some(0.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the replica never found redis again");
}

fn fallbacks(metrics: &str, mode: &str) -> f64 {
    metric_value(
        metrics,
        &format!("mcp_sidecar_rate_limit_fallback_total{{mode=\"{mode}\",rule=\"ten\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_global_rule_admits_exactly_its_rate_across_two_replicas_and_a_local_one_per_replica() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = fixture().await;
    let rule_global = rule("global", None);
    let a = replica(&backend, Some(&redis), "exact", &rule_global).await;
    let b = replica(&backend, Some(&redis), "exact", &rule_global).await;
    let admitted = alternate([&a, &b], 24, 1).await;
    assert_eq!(admitted.iter().sum::<u64>(), 10, "admitted {admitted:?}");
    assert_eq!(
        admitted,
        [5, 5],
        "alternating requests share the one bucket"
    );

    // The same rule kept locally: each replica admits its own 10.
    let rule_local = rule("local", None);
    let c = replica(&backend, None, "", &rule_local).await;
    let d = replica(&backend, None, "", &rule_local).await;
    let admitted = alternate([&c, &d], 24, 100).await;
    assert_eq!(admitted, [10, 10]);
}

#[tokio::test]
async fn a_local_budget_never_lets_the_replicas_admit_more_than_the_shared_bucket() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = fixture().await;
    let rule = format!("{}local_budget = 4\n", rule("global", None));
    let a = replica(&backend, Some(&redis), "budget", &rule).await;
    let b = replica(&backend, Some(&redis), "budget", &rule).await;
    let admitted = alternate([&a, &b], 24, 1).await;
    // Reservations are counted in Redis when made: together the replicas stay within the
    // bucket (what they reserve and do not spend in time is lost, never added).
    let total = admitted.iter().sum::<u64>();
    assert!((1..=10).contains(&total), "admitted {admitted:?}");
}

#[tokio::test]
async fn fail_open_falls_back_to_each_replicas_bucket_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = fixture().await;
    let rule = rule("global", Some("fail_open"));
    let a = replica(&backend, Some(&redis), "open", &rule).await;
    let b = replica(&backend, Some(&redis), "open", &rule).await;
    assert_eq!(alternate([&a, &b], 4, 1).await, [2, 2]);

    // Redis gone: every request completes, decided on its replica's own bucket (10 each, which
    // the global phase left untouched).
    redis.kill().await;
    let admitted = alternate([&a, &b], 24, 10).await;
    assert_eq!(admitted, [10, 10]);
    for replica in [&a, &b] {
        let metrics = replica.metrics().await;
        assert_eq!(fallbacks(&metrics, "fail_open"), 12.0);
    }

    // Redis back (with its data: AOF): once each replica's breaker has closed, the one shared
    // bucket decides again. Emptied first, so the count is exact.
    redis.restart().await;
    until_redis_answers(&a, 100).await;
    until_redis_answers(&b, 600).await;
    redis.command("FLUSHALL").await;
    let admitted = alternate([&a, &b], 24, 1000).await;
    assert_eq!(admitted, [5, 5]);
}

#[tokio::test]
async fn fail_closed_refuses_with_503_while_redis_is_down_and_recovers() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = fixture().await;
    let sidecar = replica(
        &backend,
        Some(&redis),
        "closed",
        &rule("global", Some("fail_closed")),
    )
    .await;
    assert_eq!(echo(&sidecar, 1).await.0, 200);

    redis.kill().await;
    for id in 2..8 {
        let (status, retry_after, body) = echo(&sidecar, id).await;
        assert_eq!(status, 503, "{body}");
        assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
        assert_eq!(body["error"]["code"], -32030);
        assert_eq!(body["error"]["data"]["reason"], "rate_limit_unavailable");
        assert_eq!(body["error"]["data"]["rule"], "ten");
    }
    assert_eq!(fallbacks(&sidecar.metrics().await, "fail_closed"), 6.0);
    assert_eq!(backend.stats().by_tool.get("echo"), Some(&1));

    redis.restart().await;
    until_redis_answers(&sidecar, 100).await;
    assert_eq!(echo(&sidecar, 1000).await.0, 200);
}
