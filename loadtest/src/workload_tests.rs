use super::*;

#[test]
fn a_call_flag_is_a_tools_call_with_its_arguments_and_sequence_numbers() {
    let w = Workload::call(r#"echo {"text":"n{{seq}}","n":{{seq}}}"#).unwrap();
    let (id, body) = w.request(6);
    assert_eq!(id, json!(7));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["method"], "tools/call");
    assert_eq!(v["params"]["name"], "echo");
    assert_eq!(v["params"]["arguments"], json!({"text": "n6", "n": 6}));
    let bare: Value =
        serde_json::from_slice(&Workload::call("ping_tool").unwrap().request(0).1).unwrap();
    assert_eq!(bare["params"]["arguments"], json!({}));
}

#[test]
fn bad_call_flags_are_refused_naming_the_problem() {
    for (spec, why) in [
        ("", "name a tool"),
        ("t [1]", "JSON object"),
        ("t {nope", "not JSON"),
    ] {
        let err = Workload::call(spec).unwrap_err().to_string();
        assert!(err.contains(why), "{spec}: {err}");
    }
}

const SCENARIO: &str = r#"
[[request]]
weight = 3
call = "echo"
arguments = { text = "n{{seq}}", city = "{{pick:Paris, Berlin}}" }

[[request]]
method = "tools/list"
"#;

#[test]
fn a_scenario_mixes_its_requests_by_weight_and_fills_templates() {
    let w = Workload::scenario(SCENARIO, "s.toml").unwrap();
    let mut calls = 0;
    let mut cities = std::collections::BTreeSet::new();
    for n in 0..4000 {
        let v: Value = serde_json::from_slice(&w.request(n).1).unwrap();
        if v["method"] == "tools/call" {
            calls += 1;
            assert_eq!(v["params"]["arguments"]["text"], format!("n{n}"));
            cities.insert(
                v["params"]["arguments"]["city"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        } else {
            assert_eq!(v["method"], "tools/list");
        }
    }
    assert!(
        (2800..3200).contains(&calls),
        "3:1 by weight: {calls} of 4000"
    );
    assert_eq!(cities.into_iter().collect::<Vec<_>>(), ["Berlin", "Paris"]);
    // The same run picks the same requests.
    assert_eq!(w.request(17).1, w.request(17).1);
}

#[test]
fn bad_scenario_files_are_refused_naming_the_line_and_key() {
    let err = Workload::scenario("[[request]]\ncall = \"echo\"\nwieght = 2\n", "s.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("s.toml") && err.contains("line 3") && err.contains("wieght"),
        "{err}"
    );
    let err = Workload::scenario("[[request]]\nweight = \"x\"\ncall = \"e\"\n", "s.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("weight"), "{err}");
    for (text, why) in [
        ("[[request]]\ncall = \"e\"\nmethod = \"m\"\n", "exactly one"),
        ("[[request]]\nweight = 0\ncall = \"e\"\n", "at least 1"),
        (
            "[[request]]\nmethod = \"m\"\narguments = {}\n",
            "`arguments` goes with `call`",
        ),
        ("request = []\n", "no [[request]]"),
    ] {
        let err = Workload::scenario(text, "s.toml").unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
    }
}
