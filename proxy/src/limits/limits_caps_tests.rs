//! Unit tests of the concurrency caps, the error answers, the memory bound under a key flood, the
//! sweeper and the config validation.

use std::net::Ipv4Addr;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::tests::{call, rejection, setup};
use super::{SLOT_BYTES, STREAMS_POLICY};
use crate::config::Config;
use crate::error::ProxyError;

#[tokio::test(start_paused = true)]
async fn caps_shed_requests_but_let_notifications_through_at_the_upstream() {
    let f = setup(
        "max_in_flight = 3\n[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         max_in_flight = 1\n",
    );
    let first = f.post("10.0.0.1", &call(1, "echo")).unwrap();
    let Err(ProxyError::Overloaded { scope, limit, .. }) = f.post("10.0.0.1", &call(2, "echo"))
    else {
        panic!("second request not shed at the upstream cap");
    };
    assert_eq!((scope, limit), ("upstream", 1));
    let note = f
        .post(
            "10.0.0.1",
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled"}),
        )
        .unwrap();
    let note2 = f
        .post(
            "10.0.0.1",
            &json!({"jsonrpc": "2.0", "method": "notifications/x"}),
        )
        .unwrap();
    // Three held: the global cap sheds even a notification, before its body is read.
    let Err(ProxyError::Overloaded { scope, .. }) = f.post(
        "10.0.0.1",
        &json!({"jsonrpc": "2.0", "method": "notifications/x"}),
    ) else {
        panic!("not shed at the global cap");
    };
    assert_eq!(scope, "global");
    assert_eq!(f.metric("mcp_sidecar_in_flight", &[]), 3.0);
    assert_eq!(
        f.metric("mcp_sidecar_upstream_in_flight", &[("upstream", "u")]),
        3.0
    );
    assert_eq!(
        f.metric(
            "mcp_sidecar_shed_total",
            &[("upstream", "u"), ("cap", "global")]
        ),
        1.0
    );
    drop((first, note, note2));
    assert_eq!(f.metric("mcp_sidecar_in_flight", &[]), 0.0);
    f.post("10.0.0.1", &call(3, "echo")).unwrap();
}

#[tokio::test(start_paused = true)]
async fn standalone_streams_have_their_own_caps() {
    let f = setup("max_in_flight = 1\nmax_streams = 3\nmax_streams_per_principal = 2\n");
    let a1 = f.get("10.0.0.1").unwrap();
    let _a2 = f.get("10.0.0.1").unwrap();
    let r = rejection(f.get("10.0.0.1"));
    assert_eq!(&*r.rule, STREAMS_POLICY);
    assert_eq!(
        r.policy,
        "\"streams-per-principal\";q=2;qu=\"concurrent-requests\""
    );
    let _b = f.get("10.0.0.2").unwrap();
    let Err(ProxyError::Overloaded { scope, .. }) = f.get("10.0.0.3") else {
        panic!("global stream cap not enforced");
    };
    assert_eq!(scope, "streams");
    // Streams do not count as requests in flight.
    let _request = f.post("10.0.0.1", &call(1, "echo")).unwrap();
    // A stream's slots come back when its body ends.
    let mut cx = a1;
    let response = cx.attach(http::Response::new(crate::body::full("x")));
    assert!(f.get("10.0.0.4").is_err(), "slots still held by the body");
    let body = response.into_body().collect().await.unwrap();
    assert_eq!(body.to_bytes(), "x");
    f.get("10.0.0.1").unwrap();
}

#[tokio::test(start_paused = true)]
async fn listen_streams_count_against_the_stream_caps_not_the_in_flight_ones() {
    let f = setup("max_in_flight = 1\nmax_streams = 3\nmax_streams_per_principal = 1\n");
    let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {}});
    let _a = f.post("10.0.0.1", &listen).unwrap();
    let _b = f.post("10.0.0.2", &listen).unwrap();
    let r = rejection(f.post("10.0.0.1", &listen));
    assert_eq!(&*r.rule, STREAMS_POLICY);
    let _c = f.post("10.0.0.3", &listen).unwrap();
    let Err(ProxyError::Overloaded { scope, .. }) = f.post("10.0.0.4", &listen) else {
        panic!("global stream cap not enforced on listen streams");
    };
    assert_eq!(scope, "streams");
    // Three open listen streams hold no request slot: a call still gets the only one.
    let _request = f.post("10.0.0.1", &call(2, "echo")).unwrap();
    assert_eq!(f.metric("mcp_sidecar_in_flight", &[]), 1.0);
    assert_eq!(
        f.metric("mcp_sidecar_upstream_in_flight", &[("upstream", "u")]),
        1.0
    );
    assert_eq!(f.metric("mcp_sidecar_standalone_streams_open", &[]), 3.0);
}

#[tokio::test]
async fn error_answers_carry_retry_after_and_ratelimit_fields() {
    let f = setup("[[rate_limit]]\nname = \"one\"\nkey = []\nrate = 1\nper = \"7s\"\n");
    f.post("10.0.0.1", &call(1, "echo")).unwrap();
    let err = ProxyError::RateLimited(rejection(f.post("10.0.0.1", &call(2, "echo"))));
    let response = err.to_response(Some(&json!(2)), "rid");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = response.headers().clone();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((6..=7).contains(&retry), "{retry}");
    assert_eq!(h["ratelimit-policy"], "\"one\";q=1;w=7");
    assert_eq!(h["ratelimit"], format!("\"one\";r=0;t={retry}").as_str());
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], crate::error::codes::RATE_LIMITED);
    assert_eq!(body["error"]["data"]["reason"], "rate_limited");
    assert_eq!(body["error"]["data"]["retry_after"], retry);
    assert_eq!(body["error"]["data"]["rule"], "one");

    let shed = ProxyError::Overloaded {
        scope: "upstream",
        upstream: "u".into(),
        limit: 4,
        retry_after: Duration::from_millis(1500),
    };
    let response = shed.to_response(None, "rid");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], crate::error::codes::OVERLOADED);
    assert_eq!(body["error"]["data"]["cap"], "upstream");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream.max_in_flight")
    );
}

/// The documented bound: a rule's key table never exceeds
/// `17 * next_power_of_two(max_keys * 8 / 7) + 16` bytes (<= 39 bytes per key).
fn documented_bound(max_keys: usize) -> usize {
    SLOT_BYTES * (max_keys * 8 / 7).next_power_of_two() + 16
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_100k_keys_stays_within_the_memory_bound() {
    let f =
        setup("[[rate_limit]]\nname = \"ip\"\nkey = [\"client_ip\"]\nrate = 10\nper = \"1s\"\n");
    let max_keys = crate::config::DEFAULT_MAX_KEYS;
    assert!(documented_bound(max_keys) <= 39 * max_keys);
    let mut refused = 0;
    for i in 0..150_000u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + i).to_string();
        match f.post(&ip, &call(1, "echo")) {
            Ok(_) => assert!(
                i < 100_010,
                "key {i} admitted beyond the overflow bucket's burst"
            ),
            Err(ProxyError::RateLimited(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // The first 100 000 keys got their own bucket; the 50 000 after them shared one bucket,
    // whose burst (10) let 10 through.
    assert_eq!(refused, 49_990);
    assert_eq!(f.limits.tracked_keys("ip"), Some(max_keys));
    let bytes = f.limits.table_bytes("ip").unwrap();
    assert!(
        bytes <= documented_bound(max_keys),
        "{bytes} > {}",
        documented_bound(max_keys)
    );
    assert_eq!(
        f.metric(
            "mcp_sidecar_rate_limit_key_overflow_total",
            &[("rule", "ip")]
        ),
        50_000.0
    );
    // A new key is still refused: the flood exhausted the shared bucket.
    rejection(f.post("192.168.0.1", &call(1, "echo")));
    // Keys already tracked keep their own bucket.
    f.post("10.0.0.1", &call(1, "echo")).unwrap();
    // Once the buckets are full again, a sweep frees the table.
    tokio::time::advance(Duration::from_secs(2)).await;
    f.limits.sweep();
    assert_eq!(f.limits.tracked_keys("ip"), Some(0));
    assert_eq!(
        f.metric("mcp_sidecar_rate_limit_tracked_keys", &[("rule", "ip")]),
        0.0
    );
    assert!(f.limits.table_bytes("ip").unwrap() < 1024);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_runs_periodically_and_early_at_the_cap() {
    let f = setup(
        "sweep_interval = \"30s\"\n[[rate_limit]]\nname = \"ip\"\nkey = [\"client_ip\"]\n\
         rate = 1\nper = \"1s\"\nmax_keys = 2\n",
    );
    let stop = CancellationToken::new();
    f.limits.spawn_sweeper(stop.clone());
    f.post("10.0.0.1", &call(1, "echo")).unwrap();
    f.post("10.0.0.2", &call(1, "echo")).unwrap();
    assert_eq!(f.limits.tracked_keys("ip"), Some(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Idle, but the periodic sweep is 30 s away: still tracked.
    assert_eq!(f.limits.tracked_keys("ip"), Some(2));
    // A third key meets the cap and asks for an early sweep, which frees the idle keys.
    f.post("10.0.0.3", &call(1, "echo")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(f.limits.tracked_keys("ip"), Some(0));
    f.post("10.0.0.4", &call(1, "echo")).unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(f.limits.tracked_keys("ip"), Some(0), "periodic sweep");
    stop.cancel();
}

#[test]
fn rule_names_and_periods_are_validated() {
    let load = |rules: &str| {
        Config::from_toml_with_env(
            &format!("[[upstream]]\nname = \"u\"\nurl = \"http://h:1/mcp\"\n{rules}"),
            &|_| None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let rule = |name: &str, extra: &str| {
        format!("[[rate_limit]]\nname = \"{name}\"\nkey = []\nrate = 1\nper = \"1s\"\n{extra}")
    };
    assert!(load(&rule("ok", "")).is_ok());
    let err = load(&format!("{}{}", rule("a", ""), rule("a", ""))).unwrap_err();
    assert!(err.starts_with("rate_limit[1].name:"), "{err}");
    let err = load(&rule("a b", "")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].name:"), "{err}");
    let err = load(&rule(STREAMS_POLICY, "")).unwrap_err();
    assert!(err.contains("reserved"), "{err}");
    let err = load(&rule("a", "").replace("per = \"1s\"", "per = \"1500ms\"")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].per:"), "{err}");
    let err = load(&rule("a", "").replace("rate = 1", "rate = 0")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].rate:"), "{err}");
    let err = load(&rule("a", "burst = 0\n")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].burst:"), "{err}");
    let err = load(&rule("a", "methods = [\"initialize\"]\ntools = [\"x\"]\n")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].tools:"), "{err}");
    let err = load(&rule("a", "").replace("key = []", "key = [\"tool\", \"tool\"]")).unwrap_err();
    assert!(err.starts_with("rate_limit[0].key:"), "{err}");
    let err = load(&rule("a", "").replace("key = []", "key = [\"user\"]")).unwrap_err();
    assert!(err.contains("user"), "{err}");
    let err = load("[limits]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap_err();
    assert!(err.starts_with("limits.trusted_proxies[0]:"), "{err}");
    let err = load("[limits]\nshed_retry_after = \"0s\"\n").unwrap_err();
    assert!(err.starts_with("limits.shed_retry_after:"), "{err}");
    let upstream_rule = "[[upstream.rate_limit]]\nname = \"x\"\nkey = []\nrate = 1\nper = \"0s\"\n";
    let err = load(upstream_rule).unwrap_err();
    assert!(err.starts_with("upstream[0].rate_limit[0].per:"), "{err}");
}
