//! Unit tests of the limits: GCRA properties on a fake clock, and the rate-limit phase on tokio's
//! paused clock (caps, memory and config are in `limits_caps_tests.rs`; end-to-end tests in
//! `tests/tests/limits*.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use http::{HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::mcp;
use crate::principal::{Principal, Source};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn rule_config(
    name: &str,
    rate: u32,
    per_secs: u64,
    burst: u32,
    max_keys: usize,
) -> crate::config::RateLimitRule {
    let text = format!(
        "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [[rate_limit]]\nname = \"{name}\"\nkey = [\"client_ip\"]\nrate = {rate}\n\
         per = \"{per_secs}s\"\nburst = {burst}\nmax_keys = {max_keys}\n"
    );
    let mut config = Config::from_toml_with_env(&text, &|_| None).unwrap();
    config.rate_limit.remove(0)
}

fn fake_rule(rate: u32, per_secs: u64, burst: u32) -> (Rule<FakeRelativeClock>, FakeRelativeClock) {
    fake_rule_capped(rate, per_secs, burst, 100_000)
}

fn fake_rule_capped(
    rate: u32,
    per_secs: u64,
    burst: u32,
    max_keys: usize,
) -> (Rule<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let metrics = LimitMetrics::new().unwrap().rule("r", false);
    let rule = Rule::new(
        &rule_config("r", rate, per_secs, burst, max_keys),
        0,
        clock.clone(),
        metrics,
        Arc::new(Notify::new()),
    );
    (rule, clock)
}

const ONE: NonZeroU32 = NonZeroU32::MIN;

proptest! {
    /// For any arrival times: in every window, admitted <= burst + rate x window; and a request
    /// arriving at least one emission interval (per / rate) after the last admitted one is
    /// always admitted.
    #[test]
    fn gcra_bounds_hold_for_any_arrivals(
        rate in prop::sample::select(vec![1u32, 2, 4, 5, 8, 10, 20, 25, 50, 100]),
        per_secs in 1u64..=5,
        burst in 1u32..=10,
        gaps_ms in prop::collection::vec(0u64..1500, 1..200),
    ) {
        let (rule, clock) = fake_rule(rate, per_secs, burst);
        let per_ns = u128::from(per_secs) * 1_000_000_000;
        let interval_ns = per_ns / u128::from(rate);
        let mut now_ns: u128 = 0;
        let mut admitted: Vec<u128> = Vec::new();
        for gap in gaps_ms {
            clock.advance(Duration::from_millis(gap));
            now_ns += u128::from(gap) * 1_000_000;
            let spaced = admitted.last().is_none_or(|&last| now_ns - last >= interval_ns);
            match rule.check(7, ONE, true) {
                Decision::Admit { .. } => admitted.push(now_ns),
                decision => prop_assert!(
                    !spaced,
                    "a request {} ns after the last admitted one was refused: {:?}",
                    now_ns - admitted.last().copied().unwrap_or(0), decision
                ),
            }
        }
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let window = admitted[j] - admitted[i];
                let count = (j - i + 1) as u128;
                let bound = u128::from(burst) + window * u128::from(rate) / per_ns;
                prop_assert!(count <= bound, "{} admitted in {} ns > bound {}", count, window, bound);
            }
        }
    }

    /// Dry runs, and counts given back, between the real checks never change what the real
    /// checks decide.
    #[test]
    fn dry_runs_and_given_back_counts_are_invisible(
        gaps_ms in prop::collection::vec(0u64..400, 1..100),
        key_at_cap in any::<bool>(),
    ) {
        let (with_dry, clock_a) = fake_rule_capped(5, 1, 3, 1);
        let (without, clock_b) = fake_rule_capped(5, 1, 3, 1);
        // With a key that finds the table full, the overflow bucket is what is given back.
        if key_at_cap {
            with_dry.check(99, ONE, true);
            without.check(99, ONE, true);
        }
        let key = 1;
        for gap in gaps_ms {
            clock_a.advance(Duration::from_millis(gap));
            clock_b.advance(Duration::from_millis(gap));
            let dry = with_dry.check(key, ONE, false);
            if let Ok((_, receipt)) = with_dry.take(key, ONE) {
                prop_assert!(receipt.is_some());
                with_dry.give_back(receipt);
            }
            let real = with_dry.check(key, ONE, true);
            prop_assert_eq!(real, without.check(key, ONE, true));
            prop_assert_eq!(
                matches!(dry, Decision::Admit { .. }),
                matches!(real, Decision::Admit { .. })
            );
        }
    }
}

#[test]
fn a_count_is_not_given_back_once_the_bucket_changed() {
    let (rule, _clock) = fake_rule(1, 60, 2);
    let (_, first) = rule.take(1, ONE).unwrap();
    // Another request counts in between: giving the first back would erase its count too.
    let (remaining, _) = rule.take(1, ONE).unwrap();
    assert_eq!(remaining, 0);
    rule.give_back(first);
    assert!(matches!(rule.check(1, ONE, false), Decision::Reject { .. }));
    // Given back right away, a count is undone.
    let (_, receipt) = rule.take(2, ONE).unwrap();
    rule.give_back(receipt);
    assert_eq!(rule.check(2, ONE, false), Decision::Admit { remaining: 1 });
}

#[test]
fn a_burst_then_exactly_the_advertised_wait() {
    let (rule, clock) = fake_rule(1, 10, 3);
    for _ in 0..3 {
        assert!(matches!(rule.check(1, ONE, true), Decision::Admit { .. }));
    }
    let Decision::Reject { wait } = rule.check(1, ONE, true) else {
        panic!("fourth request admitted");
    };
    assert_eq!(wait, Duration::from_secs(10));
    clock.advance(wait - Duration::from_millis(1));
    assert!(matches!(rule.check(1, ONE, true), Decision::Reject { .. }));
    clock.advance(Duration::from_millis(1));
    assert!(matches!(rule.check(1, ONE, true), Decision::Admit { .. }));
    // Another key is untouched.
    assert_eq!(rule.check(2, ONE, true), Decision::Admit { remaining: 2 });
    // A batch larger than the burst can never pass.
    assert_eq!(
        rule.check(3, NonZeroU32::new(4).unwrap(), true),
        Decision::Never
    );
}

// ---------------------------------------------------------------------------------------------
// The phases, on tokio's paused clock.
// ---------------------------------------------------------------------------------------------

pub(super) struct Fixture {
    pub(super) limits: Arc<Limits>,
    pub(super) upstream: Arc<Upstream>,
    registry: Registry,
}

pub(super) fn setup(extra: &str) -> Fixture {
    let text = format!(
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n{extra}\n\
         [[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n"
    );
    let text = if extra.contains("[[upstream") {
        format!("[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n{extra}\n")
    } else {
        text
    };
    let config = Config::from_toml_with_env(&text, &|_| None).unwrap();
    let registry = Registry::new();
    let limits = Arc::new(Limits::new(&config, &registry, None).unwrap());
    let upstream = Arc::new(
        Upstream::from_config(
            &config.upstream[0],
            &crate::metrics::Metrics::new().unwrap(),
        )
        .unwrap(),
    );
    Fixture {
        limits,
        upstream,
        registry,
    }
}

impl Fixture {
    /// Runs a POST through the three phases as `client` (via X-Forwarded-For).
    pub(super) fn post(&self, client: &str, body: &Value) -> Result<Held, ProxyError> {
        self.post_as(None, client, body)
    }

    /// A routed request from `client` (via X-Forwarded-For), as the phases see it.
    fn exchange(&self, method: Method, client: &str, principal: Option<Principal>) -> Exchange {
        let mut head = http::Request::new(()).into_parts().0;
        head.method = method;
        head.headers
            .insert("x-forwarded-for", HeaderValue::from_str(client).unwrap());
        let conn = crate::conn_info::ConnInfo::new(std::net::SocketAddr::new(PEER, 40000), false);
        let mut ex = Exchange::new(head, conn);
        ex.upstream = Some(self.upstream.clone());
        ex.principal = principal.map(Arc::new);
        ex
    }

    /// [`Fixture::post`] by an authenticated principal.
    fn post_as(
        &self,
        principal: Option<Principal>,
        client: &str,
        body: &Value,
    ) -> Result<Held, ProxyError> {
        let mut ex = self.exchange(Method::POST, client, principal);
        let mut held = Held::default();
        self.limits.shed(&mut ex, &mut held)?;
        ex.classified = Some(mcp::classify(body.to_string().as_bytes()).unwrap());
        self.limits.admit(&mut ex, &mut held)?;
        self.limits.reserve_upstream(&mut ex, &mut held)?;
        Ok(held)
    }

    pub(super) fn get(&self, client: &str) -> Result<Held, ProxyError> {
        let mut ex = self.exchange(Method::GET, client, None);
        let mut held = Held::default();
        self.limits.shed(&mut ex, &mut held)?;
        self.limits.admit(&mut ex, &mut held)?;
        self.limits.reserve_upstream(&mut ex, &mut held)?;
        Ok(held)
    }

    pub(super) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && !l[name.len()..].starts_with('_'))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in\n{text}"))
    }
}

fn principal(source: Source, subject: &str) -> Option<Principal> {
    Some(Principal {
        subject: subject.to_owned(),
        source,
        scopes: Vec::new(),
        audiences: Vec::new(),
        audience_accepted_everywhere: false,
        claim_headers: Vec::new(),
    })
}

pub(super) fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool}})
}

pub(super) fn rejection(result: Result<Held, ProxyError>) -> Box<Rejection> {
    match result {
        Err(ProxyError::RateLimited(r)) => r,
        Err(e) => panic!("expected a rate limit, got {e}"),
        Ok(_) => panic!("expected a rate limit, request admitted"),
    }
}

const PER_PRINCIPAL_AND_CRAWL: &str = "\
[[rate_limit]]\nname = \"per-principal\"\nkey = [\"principal\"]\nrate = 5\nper = \"60s\"\n\
[[rate_limit]]\nname = \"crawl\"\nkey = [\"principal\"]\nrate = 2\nper = \"60s\"\ntools = [\"crawl_*\"]\n";

#[tokio::test(start_paused = true)]
async fn a_rejected_request_consumes_nothing_from_the_other_rules() {
    let f = setup(PER_PRINCIPAL_AND_CRAWL);
    for id in 0..2 {
        f.post("10.0.0.1", &call(id, "crawl_web")).unwrap();
    }
    // The crawl rule refuses; the per-principal rule must not count these.
    for id in 2..10 {
        let r = rejection(f.post("10.0.0.1", &call(id, "crawl_web")));
        assert_eq!(&*r.rule, "crawl");
        assert_eq!(r.retry_after, Duration::from_secs(30));
        assert_eq!(r.retry_after_secs(), 30);
        assert_eq!(
            r.policy, "\"per-principal\";q=5;w=60, \"crawl\";q=2;w=60",
            "both policies apply to a crawl call"
        );
        assert_eq!(r.state, "\"crawl\";r=0;t=30");
    }
    // 5 - 2 = 3 other calls are left for this principal, then the per-principal rule refuses.
    for id in 10..13 {
        f.post("10.0.0.1", &call(id, "echo")).unwrap();
    }
    let r = rejection(f.post("10.0.0.1", &call(13, "echo")));
    assert_eq!(&*r.rule, "per-principal");
    assert_eq!(r.policy, "\"per-principal\";q=5;w=60");
    // Another principal has its own buckets.
    f.post("10.0.0.2", &call(14, "crawl_web")).unwrap();
    assert_eq!(
        f.metric(
            "mcp_sidecar_rate_limit_rejected_total",
            &[("rule", "crawl")]
        ),
        8.0
    );
    assert_eq!(
        f.metric(
            "mcp_sidecar_rate_limit_admitted_total",
            &[("rule", "per-principal")]
        ),
        6.0
    );
    // After the advertised wait, the principal passes again.
    tokio::time::advance(Duration::from_secs(12)).await;
    f.post("10.0.0.1", &call(15, "echo")).unwrap();
}

#[tokio::test(start_paused = true)]
async fn principals_have_their_own_buckets_and_anonymous_callers_are_keyed_by_ip() {
    let f = setup("[[rate_limit]]\nname = \"p\"\nkey = [\"principal\"]\nrate = 1\nper = \"60s\"\n");
    let key_a = || principal(Source::ApiKey("a".into()), "a");
    let jwt_a = || principal(Source::Jwt("issuer-1".into()), "a");
    let jwt_a2 = || principal(Source::Jwt("issuer-2".into()), "a");
    // Same IP, same subject, three different principals: three buckets.
    f.post_as(key_a(), "10.0.0.1", &call(1, "echo")).unwrap();
    f.post_as(jwt_a(), "10.0.0.1", &call(2, "echo")).unwrap();
    f.post_as(jwt_a2(), "10.0.0.1", &call(3, "echo")).unwrap();
    // A principal keeps its bucket from any address.
    assert_eq!(
        &*rejection(f.post_as(key_a(), "10.0.0.9", &call(4, "echo"))).rule,
        "p"
    );
    // Unauthenticated callers are keyed by client IP, apart from principals.
    f.post("10.0.0.1", &call(5, "echo")).unwrap();
    f.post("10.0.0.2", &call(6, "echo")).unwrap();
    assert_eq!(&*rejection(f.post("10.0.0.1", &call(7, "echo"))).rule, "p");
}

#[tokio::test(start_paused = true)]
async fn api_key_rules_give_each_key_a_bucket() {
    let f = setup("[[rate_limit]]\nname = \"k\"\nkey = [\"api_key\"]\nrate = 1\nper = \"60s\"\n");
    f.post_as(
        principal(Source::ApiKey("a".into()), "a"),
        "10.0.0.1",
        &call(1, "echo"),
    )
    .unwrap();
    f.post_as(
        principal(Source::ApiKey("b".into()), "b"),
        "10.0.0.1",
        &call(2, "echo"),
    )
    .unwrap();
    rejection(f.post_as(
        principal(Source::ApiKey("a".into()), "a"),
        "10.0.0.2",
        &call(3, "x"),
    ));
    // Callers without an API key (JWT or anonymous) share one bucket.
    f.post_as(
        principal(Source::Jwt("i".into()), "s"),
        "10.0.0.1",
        &call(4, "echo"),
    )
    .unwrap();
    rejection(f.post("10.0.0.3", &call(5, "echo")));
}

#[tokio::test(start_paused = true)]
async fn admitted_requests_carry_the_binding_policy() {
    let f = setup(PER_PRINCIPAL_AND_CRAWL);
    let mut cx = f.post("10.0.0.1", &call(1, "crawl_a")).unwrap();
    let response = cx.attach(http::Response::new(crate::body::empty()));
    // After one crawl call: per-principal has 4 left, crawl 1: crawl binds.
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"per-principal\";q=5;w=60, \"crawl\";q=2;w=60"
    );
    assert_eq!(response.headers()["ratelimit"], "\"crawl\";r=1;t=30");
    let mut cx = f.post("10.0.0.1", &call(2, "echo")).unwrap();
    let response = cx.attach(http::Response::new(crate::body::empty()));
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"per-principal\";q=5;w=60"
    );
    assert_eq!(
        response.headers()["ratelimit"],
        "\"per-principal\";r=3;t=24"
    );
}

#[tokio::test(start_paused = true)]
async fn notifications_responses_and_delete_are_never_limited() {
    let f = setup("[[rate_limit]]\nname = \"all\"\nkey = []\nrate = 1\nper = \"60s\"\n");
    f.post("10.0.0.1", &call(1, "echo")).unwrap();
    rejection(f.post("10.0.0.1", &call(2, "echo")));
    let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": {"requestId": 2}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = json!({"jsonrpc": "2.0", "id": "s1", "result": {}});
    for _ in 0..20 {
        f.post("10.0.0.1", &cancelled).unwrap();
        f.post("10.0.0.1", &initialized).unwrap();
        f.post("10.0.0.1", &response).unwrap();
    }
    let mut held = Held::default();
    f.limits
        .shed_request(&f.upstream, &Method::DELETE, &mut held)
        .unwrap();
    f.limits
        .reserve_upstream_slot(&f.upstream, None, &mut held)
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn batches_count_each_request_and_pass_or_fail_whole() {
    let f = setup("[[rate_limit]]\nname = \"b\"\nkey = [\"principal\"]\nrate = 3\nper = \"1s\"\n");
    let batch = json!([call(1, "a"), call(2, "b"),
                       {"jsonrpc": "2.0", "method": "notifications/progress"}]);
    f.post("10.0.0.1", &batch).unwrap();
    // One unit left: a batch of two is refused whole, a single call passes.
    let r = rejection(f.post("10.0.0.1", &batch));
    assert!(r.detail.contains("batch"), "{}", r.detail);
    f.post("10.0.0.1", &call(3, "c")).unwrap();
    // More requests than the burst can never pass.
    tokio::time::advance(Duration::from_secs(5)).await;
    let big = json!([call(1, "a"), call(2, "a"), call(3, "a"), call(4, "a")]);
    let r = rejection(f.post("10.0.0.1", &big));
    assert!(r.detail.contains("exceeds its burst of 3"), "{}", r.detail);
}

#[tokio::test(start_paused = true)]
async fn shadow_rules_count_but_never_refuse() {
    let f =
        setup("[[rate_limit]]\nname = \"s\"\nkey = []\nrate = 1\nper = \"60s\"\nshadow = true\n");
    for id in 0..10 {
        let mut cx = f.post("10.0.0.1", &call(id, "echo")).unwrap();
        let response = cx.attach(http::Response::new(crate::body::empty()));
        assert!(
            response.headers().get("ratelimit").is_none(),
            "shadow rules stay invisible"
        );
    }
    assert_eq!(
        f.metric(
            "mcp_sidecar_rate_limit_rejected_total",
            &[("rule", "s"), ("mode", "shadow")]
        ),
        9.0
    );
    assert_eq!(
        f.metric("mcp_sidecar_rate_limit_admitted_total", &[("rule", "s")]),
        1.0
    );
}
