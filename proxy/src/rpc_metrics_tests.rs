use super::*;
use crate::metrics::Metrics;
use serde_json::json;

fn rpc(globs: &[&str]) -> (Metrics, RpcMetrics) {
    let m = Metrics::new().unwrap();
    let r = RpcMetrics::new(m.rpc.clone(), "u".into(), globs);
    (m, r)
}

fn call(tool: &str) -> Classified {
    crate::mcp::classify(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool}})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn request(method: &str) -> Classified {
    crate::mcp::classify(
        json!({"jsonrpc":"2.0","id":1,"method":method})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn tools_list_answer(names: impl IntoIterator<Item = String>) -> Value {
    let tools: Vec<Value> = names.into_iter().map(|n| json!({"name": n})).collect();
    json!({"jsonrpc":"2.0","id":1,"result":{"tools": tools}})
}

/// Distinct label sets of one family in the registry's output.
fn series_count(m: &Metrics, family: &str) -> usize {
    m.registry()
        .gather()
        .iter()
        .filter(|f| f.name() == family)
        .map(|f| f.get_metric().len())
        .sum()
}

fn count(m: &Metrics, labels: [&str; 4]) -> u64 {
    m.rpc.requests.with_label_values(&labels).get()
}

const OK: http::StatusCode = http::StatusCode::OK;

#[test]
fn known_methods_count_under_their_name_and_others_under_other() {
    let (m, r) = rpc(&[]);
    r.record(&request("tools/list"), OK, 0.01);
    r.record(&request("resources/read"), OK, 0.01);
    r.record(&request("x-vendor/anything"), OK, 0.01);
    r.record(&request("tools/list\u{0}"), OK, 0.01);
    assert_eq!(count(&m, ["u", "tools/list", "", "ok"]), 1);
    assert_eq!(count(&m, ["u", "resources/read", "", "ok"]), 1);
    assert_eq!(count(&m, ["u", "other", "", "ok"]), 2);
}

#[test]
fn outcome_follows_the_http_status_class() {
    let (m, r) = rpc(&[]);
    for status in [200, 202, 401, 429, 502, 503] {
        r.record(
            &request("ping"),
            http::StatusCode::from_u16(status).unwrap(),
            0.01,
        );
    }
    assert_eq!(count(&m, ["u", "ping", "", "ok"]), 2);
    assert_eq!(count(&m, ["u", "ping", "", "client_error"]), 2);
    assert_eq!(count(&m, ["u", "ping", "", "server_error"]), 2);
    let d = m.rpc.duration.with_label_values(&["u", "ping", ""]);
    assert_eq!(d.get_sample_count(), 6);
}

#[test]
fn every_message_of_a_batch_counts_and_client_responses_are_response() {
    let (m, r) = rpc(&[]);
    let batch = crate::mcp::classify(
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":"s1","result":{}}]"#,
    )
    .unwrap();
    r.record(&batch, OK, 0.01);
    assert_eq!(count(&m, ["u", "ping", "", "ok"]), 1);
    assert_eq!(count(&m, ["u", "notifications/initialized", "", "ok"]), 1);
    assert_eq!(count(&m, ["u", "response", "", "ok"]), 1);
}

#[test]
fn a_configured_glob_is_the_label_of_the_tools_it_matches() {
    let (m, r) = rpc(&["crawl_*", "search"]);
    r.record(&call("crawl_site"), OK, 0.01);
    r.record(&call("crawl_feed"), OK, 0.01);
    r.record(&call("search"), OK, 0.01);
    r.record(&call("searchX"), OK, 0.01);
    assert_eq!(count(&m, ["u", "tools/call", "crawl_*", "ok"]), 2);
    assert_eq!(count(&m, ["u", "tools/call", "search", "ok"]), 1);
    assert_eq!(count(&m, ["u", "tools/call", "other", "ok"]), 1);
}

#[test]
fn a_name_the_backend_listed_becomes_a_label_a_name_only_a_client_used_does_not() {
    let (m, r) = rpc(&["crawl_*"]);
    let learner = r.learner().unwrap();
    learner.learn_from(&tools_list_answer(["echo".into(), "crawl_site".into()]));
    r.record(&call("echo"), OK, 0.01);
    r.record(&call("made_up_by_client"), OK, 0.01);
    r.record(&call("crawl_site"), OK, 0.01);
    assert_eq!(count(&m, ["u", "tools/call", "echo", "ok"]), 1);
    assert_eq!(count(&m, ["u", "tools/call", "other", "ok"]), 1);
    // The configured glob keeps the names it covers: no second label for them.
    assert_eq!(count(&m, ["u", "tools/call", "crawl_*", "ok"]), 1);
    assert_eq!(&*r.tool_label(Some("crawl_site")), "crawl_*");
}

#[test]
fn a_client_cannot_grow_the_series_past_the_cap() {
    let (m, r) = rpc(&["fixed"]);
    // A backend listing far more tools than the cap, in several pages.
    let learner = r.learner().unwrap();
    for page in 0..5 {
        learner.learn_from(&tools_list_answer(
            (0..MAX_TOOL_LABELS).map(|i| format!("tool_{page}_{i}")),
        ));
    }
    assert!(r.learner().is_none(), "a full upstream learns no more");
    // Clients call every listed name and many more of their own, with every outcome.
    for page in 0..5 {
        for i in 0..MAX_TOOL_LABELS {
            for status in [200, 429, 503] {
                let status = http::StatusCode::from_u16(status).unwrap();
                r.record(&call(&format!("tool_{page}_{i}")), status, 0.01);
                r.record(&call(&format!("client_{page}_{i}")), status, 0.01);
                r.record(&request(&format!("method_{page}_{i}")), status, 0.01);
            }
        }
    }
    // Labels that saw calls: the learned names (the cap less the one configured glob, which
    // saw none) and `other` for tools/call; `other` for the made-up methods.
    let tool_labels = (MAX_TOOL_LABELS - 1) + 1;
    let method_labels = 1;
    let outcomes = 3;
    assert_eq!(
        series_count(&m, "mcp_sidecar_rpc_requests_total"),
        (tool_labels + method_labels) * outcomes
    );
    assert_eq!(
        series_count(&m, "mcp_sidecar_rpc_request_duration_seconds"),
        tool_labels + method_labels
    );
    let dropped = m.rpc.tool_labels_dropped.with_label_values(&["u"]).get();
    assert_eq!(
        dropped,
        (5 * MAX_TOOL_LABELS - (MAX_TOOL_LABELS - 1)) as u64
    );
}

#[test]
fn unusable_names_are_not_learned() {
    let (m, r) = rpc(&[]);
    r.learner().unwrap().learn_from(&tools_list_answer([
        String::new(),
        "x".repeat(MAX_TOOL_NAME_BYTES + 1),
        "bad\nname".into(),
        "other".into(),
        "fine".into(),
    ]));
    assert_eq!(m.rpc.tool_labels_dropped.with_label_values(&["u"]).get(), 4);
    assert_eq!(&*r.tool_label(Some("fine")), "fine");
    assert_eq!(&*r.tool_label(Some("bad\nname")), "other");
    assert_eq!(&*r.tool_label(None), "other");
}

#[test]
fn answers_that_are_not_tool_lists_teach_nothing() {
    let (_m, r) = rpc(&[]);
    let learner = r.learner().unwrap();
    learner.learn_from(&json!({"jsonrpc":"2.0","id":1,"result":{"resources":[{"name":"a"}]}}));
    learner.learn_from(&json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"no"}}));
    learner.learn_from(&json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"no name"}]}}));
    assert_eq!(&*r.tool_label(Some("a")), "other");
}

#[test]
fn the_method_list_has_no_duplicates_and_no_reserved_labels() {
    let mut seen = std::collections::HashSet::new();
    for m in KNOWN_METHODS {
        assert!(seen.insert(*m), "{m} twice");
        assert!(*m != OTHER && *m != RESPONSE);
    }
}
