use super::*;

#[test]
fn a_full_fault_parses_with_its_match_and_percent() {
    let faults = FaultFile::parse(
        r#"
        [[fault]]
        name = "storm"
        percent = 50
        match = { path = "/mcp", http_method = "post", rpc_method = "tools/call", tool = "echo" }
        rpc_error = { code = -32001, message = "injected" }

        [[fault]]
        name = "drip"
        drip_sse = "100ms"
        "#,
    )
    .unwrap();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0].percent, 50.0);
    assert_eq!(faults[0].matcher.http_method, Some(http::Method::POST));
    assert_eq!(faults[0].matcher.tool.as_deref(), Some("echo"));
    assert_eq!(
        faults[0].action,
        Action::RpcError {
            code: -32001,
            message: "injected".into()
        }
    );
    assert_eq!(faults[1].percent, 100.0);
    assert_eq!(
        faults[1].action,
        Action::DripSse(Duration::from_millis(100))
    );
}

#[test]
fn two_actions_are_refused_naming_the_fault() {
    let err = FaultFile::parse("[[fault]]\nname = \"x\"\nstatus = 500\ncut_sse_after = 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fault `x`") && err.contains("exactly one action"),
        "{err}"
    );
}

#[test]
fn no_action_is_refused() {
    let err = FaultFile::parse("[[fault]]\nname = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not 0"), "{err}");
}

#[test]
fn an_unknown_key_is_refused_naming_it_and_its_line() {
    let err = FaultFile::parse("[[fault]]\nname = \"x\"\nstatus = 500\nstatuss = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("statuss") && err.contains("line 4"), "{err}");
}

#[test]
fn a_bad_duration_is_refused_naming_the_key() {
    let err = FaultFile::parse("[[fault]]\nname = \"x\"\ndelay = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`delay`") && err.contains("soon"), "{err}");
}

#[test]
fn a_json_fault_reads_as_the_same_toml_table_does() {
    let toml = FaultFile::parse(
        r#"
        [[fault]]
        name = "storm"
        percent = 50
        match = { path = "/mcp", http_method = "post", tool = "echo" }
        rpc_error = { code = -32001, message = "injected" }
        "#,
    )
    .unwrap();
    let json = FaultSpec::from_json(&serde_json::json!({
        "name": "storm", "percent": 50,
        "match": {"path": "/mcp", "http_method": "post", "tool": "echo"},
        "rpc_error": {"code": -32001, "message": "injected"},
    }))
    .unwrap();
    assert_eq!(toml[0], json);
}

#[test]
fn every_action_written_as_json_reads_back_the_same() {
    let actions = [
        Action::Status(503),
        Action::RpcError {
            code: -32000,
            message: "m".into(),
        },
        Action::ToolError("t".into()),
        Action::Delay(Duration::from_millis(1_500)),
        Action::SlowFirstByte(Duration::from_secs(1)),
        Action::CutSseAfter(3),
        Action::DripSse(Duration::from_millis(100)),
        Action::DropMidBody(10),
        Action::MalformedBody,
    ];
    let matcher = Match {
        path: Some("/mcp".into()),
        http_method: Some(http::Method::GET),
        rpc_method: Some("tools/call".into()),
        tool: Some("echo".into()),
    };
    for action in actions {
        let fault = HttpFault::new("f", action)
            .percent(12.5)
            .matching(matcher.clone());
        let mut written = action_json(&fault.action);
        let table = written.as_object_mut().unwrap();
        table.insert("name".into(), "f".into());
        table.insert("percent".into(), 12.5.into());
        table.insert("match".into(), match_json(&fault.matcher));
        assert_eq!(FaultSpec::from_json(&written).unwrap(), fault, "{written}");
    }
}

#[test]
fn json_the_toml_reader_cannot_take_is_refused_naming_the_key() {
    let err = |v: serde_json::Value| FaultSpec::from_json(&v).unwrap_err().to_string();
    let e = err(serde_json::json!({"name": "x", "status": 500, "match": {"tool": null}}));
    assert!(e.contains("match.tool: null"), "{e}");
    let e = err(serde_json::json!({"name": "x", "drop_mid_body": u64::MAX}));
    assert!(
        e.contains("drop_mid_body: 18446744073709551615 is too large"),
        "{e}"
    );
    let e = err(serde_json::json!({"name": "x", "status": 500.5}));
    assert!(e.contains("in `status`"), "{e}");
    let e = err(serde_json::json!([1]));
    assert!(e.contains("expected a JSON object"), "{e}");
}
