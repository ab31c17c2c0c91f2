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
