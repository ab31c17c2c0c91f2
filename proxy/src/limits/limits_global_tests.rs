//! Unit tests of the global rules without a Redis: the script's answer read and turned into the
//! same `Retry-After` and `RateLimit` fields as a local rule's; the fallback each rule takes when
//! Redis cannot answer (a Redis address where nothing listens); the local budget's accounting on
//! the paused clock; the config validation. Against a real redis-server:
//! `tests/tests/replicas_rate_limit.rs`.

use std::time::Duration;

use http::Method;
use prometheus::Registry;
use serde_json::Value;

use super::global::{Answer, parse_answers};
use super::tests::{call, rejection};
use super::*;
use crate::config::{Config, KeyPart};
use crate::mcp;

/// A Redis address where nothing listens: every command fails (refused, or timed out).
const NO_REDIS: &str = "redis://127.0.0.1:1";

struct GlobalFixture {
    limits: Limits,
    upstream: Arc<Upstream>,
    _registry: Registry,
}

fn load(rules: &str) -> Result<Config, crate::config::ConfigError> {
    let text = format!(
        "[redis]\nurl = \"{NO_REDIS}\"\nbreaker_failures = 1\n{rules}\n\
         [[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n"
    );
    Config::from_toml_with_env(&text, &|_| None)
}

fn setup(rules: &str) -> GlobalFixture {
    let config = load(rules).unwrap();
    let registry = Registry::new();
    let redis = config
        .redis
        .as_ref()
        .map(|c| RedisConn::new(c, &registry).unwrap());
    GlobalFixture {
        limits: Limits::new(&config, &registry, redis).unwrap(),
        upstream: Arc::new(
            Upstream::from_config(
                &config.upstream[0],
                &crate::metrics::Metrics::new().unwrap(),
            )
            .unwrap(),
        ),
        _registry: registry,
    }
}

/// A rule of 10 per minute, burst 10.
fn rule(name: &str, extra: &str) -> String {
    format!(
        "[[rate_limit]]\nname = \"{name}\"\nkey = [\"client_ip\"]\nrate = 10\nper = \"60s\"\n{extra}\n"
    )
}

impl GlobalFixture {
    fn exchange(&self, body: &Value) -> Exchange {
        let mut head = http::Request::new(()).into_parts().0;
        head.method = Method::POST;
        let peer = std::net::SocketAddr::from(([10, 0, 0, 1], 40000));
        let mut ex = Exchange::new(head, crate::conn_info::ConnInfo::new(peer, false));
        ex.upstream = Some(self.upstream.clone());
        ex.classified = Some(mcp::classify(body.to_string().as_bytes()).unwrap());
        ex
    }

    async fn post(&self, id: u64) -> Result<Held, ProxyError> {
        let mut ex = self.exchange(&call(id, "echo"));
        let mut held = Held::default();
        self.limits.shed(&mut ex, &mut held)?;
        self.limits.admit_global(&mut ex, &mut held).await?;
        Ok(held)
    }

    fn fallbacks(&self, rule: &str, mode: &str) -> u64 {
        self.limits
            .metrics
            .fallback
            .with_label_values(&[rule, mode])
            .get()
    }

    /// What the request would have been told had the global rule `name` answered `answer`.
    fn answer(&self, answer: Answer) -> Result<Held, ProxyError> {
        let ex = self.exchange(&call(1, "echo"));
        let classified = ex.classified.as_ref().unwrap();
        let who = LimitKeyInput {
            principal: None,
            client_ip: ex.conn.remote.ip(),
        };
        let mut demands = self.limits.demands(classified, &who, &[]);
        let global = demands[0].rule.global.as_ref().unwrap();
        let mut binding = None;
        self.limits.apply_answers(
            &mut demands,
            &[(0, global)],
            &[answer],
            &mut binding,
            classified,
        )?;
        let mut held = Held::default();
        self.limits.admitted(&demands, binding, &mut held);
        Ok(held)
    }
}

#[test]
fn script_answers_are_read_four_integers_per_key() {
    let answers = parse_answers(&[1, 3, 0, 2, 0, 0, 2_500_000, 0, -1, 0, 0, 0], 3).unwrap();
    assert_eq!(
        answers,
        [
            Answer {
                decision: Decision::Admit { remaining: 3 },
                reserved: 2
            },
            Answer {
                decision: Decision::Reject {
                    wait: Duration::from_millis(2500)
                },
                reserved: 0
            },
            Answer {
                decision: Decision::Never,
                reserved: 0
            },
        ]
    );
    // A shape the script never answers is refused, not guessed at.
    assert_eq!(parse_answers(&[1, 3, 0], 1), None);
    assert_eq!(parse_answers(&[1, 3, 0, 2], 2), None);
    assert_eq!(parse_answers(&[2, 0, 0, 0], 1), None);
    assert_eq!(parse_answers(&[1, -1, 0, 0], 1), None);
}

#[tokio::test(start_paused = true)]
async fn a_redis_answer_gives_the_same_fields_as_a_local_decision() {
    let f = setup(&rule("g", "scope = \"global\""));
    // Admitted with 7 left: reset when 3 more intervals of 6 s have passed, as a local rule says.
    let held = f
        .answer(Answer {
            decision: Decision::Admit { remaining: 7 },
            reserved: 0,
        })
        .unwrap();
    let (policy, state) = held.headers.unwrap();
    assert_eq!(policy, "\"g\";q=10;w=60");
    assert_eq!(state, "\"g\";r=7;t=18");
    // What the replica reserved counts as remaining here.
    let (_, state) = f
        .answer(Answer {
            decision: Decision::Admit { remaining: 5 },
            reserved: 2,
        })
        .unwrap()
        .headers
        .unwrap();
    assert_eq!(state, "\"g\";r=7;t=18");
    // Refused: Retry-After rounded up, `RateLimit` with r=0 and the same t.
    let refusal = rejection(f.answer(Answer {
        decision: Decision::Reject {
            wait: Duration::from_millis(4200),
        },
        reserved: 0,
    }));
    assert_eq!(refusal.retry_after, Duration::from_millis(4200));
    assert_eq!(refusal.retry_after_secs(), 5);
    assert_eq!(refusal.policy, "\"g\";q=10;w=60");
    assert_eq!(refusal.state, "\"g\";r=0;t=5");
    assert_eq!(&*refusal.rule, "g");
    // A batch beyond the burst: told the full refill time, like a local rule.
    let never = rejection(f.answer(Answer {
        decision: Decision::Never,
        reserved: 0,
    }));
    assert_eq!(never.retry_after, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn fail_open_decides_on_the_replicas_own_bucket_while_redis_cannot_answer() {
    let f = setup(&rule("g", "scope = \"global\"\nburst = 3"));
    for id in 0..3 {
        let held = f.post(id).await.unwrap();
        assert!(held.headers.is_some());
    }
    let refusal = rejection(f.post(3).await);
    assert_eq!(&*refusal.rule, "g");
    assert!(refusal.retry_after > Duration::ZERO);
    assert_eq!(f.fallbacks("g", "fail_open"), 4);
}

#[tokio::test(start_paused = true)]
async fn fail_closed_refuses_with_503_and_gives_back_what_other_rules_counted() {
    let f = setup(&format!(
        "{}{}",
        rule("local", "burst = 1"),
        rule("g", "scope = \"global\"\nredis_failure = \"fail_closed\"")
    ));
    for id in 0..3 {
        match f.post(id).await {
            Err(ProxyError::RateLimitUnavailable { rule, retry_after }) => {
                assert_eq!(&*rule, "g");
                assert!(retry_after >= Duration::from_secs(1));
            }
            other => panic!("expected rate_limit_unavailable, got {other:?}"),
        }
    }
    assert_eq!(f.fallbacks("g", "fail_closed"), 3);
    // The local rule (burst 1) counted none of the three refused requests.
    let ex = f.exchange(&call(9, "echo"));
    let who = LimitKeyInput {
        principal: None,
        client_ip: ex.conn.remote.ip(),
    };
    let local = &f.limits.rules[0];
    let msg = &ex.classified.as_ref().unwrap().messages[0];
    let key = local.key(&f.limits.hasher, &who, msg);
    assert!(matches!(
        local.check(key, evaluate::nonzero(1), false),
        Decision::Admit { .. }
    ));
    let response = ProxyError::RateLimitUnavailable {
        rule: Arc::from("g"),
        retry_after: Duration::from_millis(1500),
    }
    .to_response(None, "r");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
}

#[tokio::test(start_paused = true)]
async fn the_local_budget_is_spent_without_redis_until_used_or_old() {
    let config = load(&rule("g", "scope = \"global\"\nlocal_budget = 4")).unwrap();
    let registry = Registry::new();
    let conn = RedisConn::new(config.redis.as_ref().unwrap(), &registry).unwrap();
    let global = Global::new(
        &config.rate_limit[0],
        &conn,
        prometheus::IntCounter::new("f", "f").unwrap(),
    );
    let now = Instant::now();
    // A key seen for the first time reserves nothing: it may never come back.
    assert_eq!(global.extra_for(7, now), 0);
    assert_eq!(global.spend(7, 1, now), None);
    global.lease(7, 0, 9, now);
    // Asked about again within the max age: hot, the budget is reserved.
    assert_eq!(global.extra_for(7, now), 4);
    global.lease(7, 4, 4, now);
    // Spent locally; the advertised remaining is Redis' word plus what is left here.
    assert_eq!(global.spend(7, 1, now), Some(7));
    assert_eq!(global.spend(7, 2, now), Some(5));
    global.unspend(7, 2);
    assert_eq!(global.spend(7, 3, now), Some(4));
    assert_eq!(global.spend(7, 1, now), None, "the lease is used up");
    assert_eq!(global.spend(8, 1, now), None, "another key has no lease");
    // An old lease is neither spent nor makes the key hot; the sweep drops it.
    global.lease(7, 4, 4, now);
    tokio::time::advance(LOCAL_BUDGET_MAX_AGE).await;
    let later = Instant::now();
    assert_eq!(global.spend(7, 1, later), None);
    assert_eq!(global.extra_for(7, later), 0);
    global.sweep(later);
    global.lease(7, 0, 9, later);
    assert_eq!(global.extra_for(7, later), 4);
}

#[tokio::test]
async fn a_global_rule_needs_redis_and_the_global_keys_a_global_rule() {
    let no_redis = |rules: &str| {
        Config::from_toml_with_env(
            &format!("{rules}[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n"),
            &|_| None,
        )
    };
    let err = no_redis(&rule("g", "scope = \"global\"")).unwrap_err();
    assert_eq!(err.field(), Some("rate_limit[0].scope"), "{err}");
    assert!(err.to_string().contains("[redis]"), "{err}");
    let err = load(&rule("l", "local_budget = 2")).unwrap_err();
    assert_eq!(err.field(), Some("rate_limit[0].local_budget"), "{err}");
    let err = load(&rule("l", "redis_failure = \"fail_closed\"")).unwrap_err();
    assert_eq!(err.field(), Some("rate_limit[0].redis_failure"), "{err}");
    let err = load(&rule("g", "scope = \"global\"\nlocal_budget = 10")).unwrap_err();
    assert_eq!(err.field(), Some("rate_limit[0].local_budget"), "{err}");
    let err = load(&rule("g", "scope = \"planet\"")).unwrap_err();
    assert!(err.to_string().contains("planet"), "{err}");
    assert!(load(&rule("g", "scope = \"global\"\nlocal_budget = 9")).is_ok());
    // A sidecar without global rules keeps the synchronous phase.
    assert!(!setup(&rule("l", "")).limits.has_global_rules());
    assert!(
        setup(&rule("g", "scope = \"global\""))
            .limits
            .has_global_rules()
    );
}

#[tokio::test]
async fn bucket_keys_are_stable_prefixed_and_distinct() {
    let config = load(&rule("g", "scope = \"global\"")).unwrap();
    let registry = Registry::new();
    let conn = RedisConn::new(config.redis.as_ref().unwrap(), &registry).unwrap();
    let global = Global::new(
        &config.rate_limit[0],
        &conn,
        prometheus::IntCounter::new("f", "f").unwrap(),
    );
    let classified = mcp::classify(call(1, "echo").to_string().as_bytes()).unwrap();
    let msg = &classified.messages[0];
    let who = |ip: [u8; 4]| LimitKeyInput {
        principal: None,
        client_ip: IpAddr::from(ip),
    };
    let parts = [KeyPart::ClientIp, KeyPart::Tool];
    let a = global.bucket_key(&parts, &who([10, 0, 0, 1]), msg);
    // Fixed across processes and versions, replicas must agree on it: SHA-256 of
    // `I` 4 10.0.0.1 `T` 1 len(4, u64 BE) `echo`, first 16 bytes.
    assert_eq!(a, "mcp-sidecar:rl:g:27091984216937f3a0f6c33299c26909");
    assert_ne!(a, global.bucket_key(&parts, &who([10, 0, 0, 2]), msg));
    assert_ne!(a, global.bucket_key(&parts[..1], &who([10, 0, 0, 1]), msg));
}
