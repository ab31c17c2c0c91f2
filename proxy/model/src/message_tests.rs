use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn tool_call_request_is_classified_with_tool_and_progress_token() {
    let c = classify(
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crawl_web","arguments":{},"_meta":{"progressToken":"p"}}}"#,
    )
    .unwrap();
    let m = c.single().unwrap();
    assert_eq!(m.kind, Kind::Request);
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    assert_eq!(m.tool.as_deref(), Some("crawl_web"));
    assert_eq!(m.progress_token, Some(json!("p")));
    assert_eq!(c.request_id(), Some(&json!(7)));
}

#[test]
fn notifications_and_responses_are_told_apart() {
    let n = classify(
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    )
    .unwrap();
    assert_eq!(n.single().unwrap().kind, Kind::Notification);
    assert_eq!(n.request_id(), None);
    let r = classify(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
    assert_eq!(r.single().unwrap().kind, Kind::Response);
    assert!(!r.has_request());
}

#[test]
fn only_a_single_listen_request_opens_a_subscription() {
    let listen = rpc_body("subscriptions/listen", true);
    assert!(classify(listen.as_bytes()).unwrap().opens_subscription());
    for other in [
        rpc_body("tools/call", true),
        rpc_body("subscriptions/listen", false),
        format!("[{listen}]"),
    ] {
        assert!(
            !classify(other.as_bytes()).unwrap().opens_subscription(),
            "{other}"
        );
    }
}

fn rpc_body(method: &str, request: bool) -> String {
    let mut v = json!({"jsonrpc":"2.0","method":method,"params":{}});
    if request {
        v["id"] = json!(1);
    }
    v.to_string()
}

#[test]
fn batches_are_classified_element_by_element() {
    let c = classify(
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/x"}]"#,
    )
    .unwrap();
    assert!(c.batch);
    assert_eq!(c.messages.len(), 2);
    assert_eq!(c.messages[0].tool.as_deref(), Some("a"));
    assert_eq!(c.request_id(), None);
    let err = classify(br#"[{"jsonrpc":"2.0","id":1,"method":"x"},{"nope":1}]"#).unwrap_err();
    assert!(
        matches!(err, ClassifyError::Invalid(ref m) if m.contains("element 1")),
        "{err}"
    );
}

#[test]
fn malformed_bodies_get_parse_or_invalid() {
    assert!(matches!(
        classify(b"{not json"),
        Err(ClassifyError::Parse(_))
    ));
    assert!(matches!(
        classify(b"\xff\xfe"),
        Err(ClassifyError::Parse(_))
    ));
    assert!(matches!(classify(b"[]"), Err(ClassifyError::Invalid(_))));
    assert!(matches!(classify(b"42"), Err(ClassifyError::Invalid(_))));
    assert!(matches!(
        classify(br#"{"id":1,"method":"x"}"#),
        Err(ClassifyError::Invalid(_))
    ));
    assert!(matches!(
        classify(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
        Err(ClassifyError::Invalid(_))
    ));
    assert!(matches!(
        classify(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
        Err(ClassifyError::Invalid(_))
    ));
    assert!(matches!(
        classify(br#"{"jsonrpc":"2.0","id":1,"method":5}"#),
        Err(ClassifyError::Invalid(_))
    ));
    assert!(matches!(
        classify(br#"{"jsonrpc":"2.0","id":1}"#),
        Err(ClassifyError::Invalid(_))
    ));
    assert!(matches!(
        classify(br#"{"jsonrpc":"2.0"}"#),
        Err(ClassifyError::Invalid(_))
    ));
}

#[test]
fn escaped_method_and_tool_names_are_decoded() {
    let c = classify(
        br#"{"jsonrpc":"2.0","id":"a","method":"tools\/call","params":{"name":"cr\u0061wl"}}"#,
    )
    .unwrap();
    let m = c.single().unwrap();
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    assert_eq!(m.tool.as_deref(), Some("crawl"));
    let err = classify(br#"{"jsonrpc":"2.0","id":1,"method":7}"#).unwrap_err();
    assert_eq!(
        err,
        ClassifyError::Invalid("`method` must be a string".into())
    );
}

#[test]
fn a_tool_name_with_a_lone_surrogate_is_an_invalid_request() {
    // Found by the mcp_classify fuzz target: `\ud800` is valid JSON syntax but no string
    // (serde_json refuses it, JavaScript keeps it). Read as "no tool", the call escaped the
    // tool-scoped rate-limit rules, timeouts and breakers while reaching the backend.
    let err = classify(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"crawl\ud800"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ClassifyError::Invalid("`params.name` is not a valid string".into())
    );
}

proptest! {
    #[test]
    fn json_strings_decode_as_serde_json_does(text in "\\PC*") {
        let encoded = serde_json::to_string(&text).unwrap();
        let raw: &RawValue = serde_json::from_str(&encoded).unwrap();
        prop_assert_eq!(json_string(raw), Some(text));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = classify(&bytes);
    }

    #[test]
    fn any_well_formed_request_round_trips(
        id in prop_oneof![any::<i64>().prop_map(|i| json!(i)), "[a-z0-9-]{1,12}".prop_map(|s| json!(s))],
        method in "[a-z/_]{1,20}",
        tool in "[a-z_*]{1,12}",
    ) {
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"name":tool}}).to_string();
        let c = classify(body.as_bytes()).unwrap();
        let m = c.single().unwrap();
        prop_assert_eq!(m.kind, Kind::Request);
        prop_assert_eq!(m.id.as_ref(), Some(&id));
        prop_assert_eq!(m.tool.is_some(), method == "tools/call");
    }
}
