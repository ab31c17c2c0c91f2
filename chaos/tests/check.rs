//! `mcp-chaos check`: a summary line per good file, exit 2 naming a bad file's line and key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(files: &[&std::path::Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-chaos"))
        .arg("check")
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn shipped_scenarios_check_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let out = check(&[&dir.join("backend-refusing.toml")]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("backend-refusing: sidecar"), "{stdout}");
}

#[test]
fn bad_scenario_exits_2_naming_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("mcp-chaos-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\ndescription = \"d\"\nsedd = 1\n[system]\ntarget_url = \"http://127.0.0.1:1/mcp\"\n",
    )
    .unwrap();
    let out = check(&[&bad]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3: unknown field `sedd`"),
        "{stderr}"
    );
}

#[test]
fn every_sidecar_config_a_shipped_scenario_names_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let scenario = mcp_chaos::scenario::Scenario::from_file(&path).unwrap();
        let mcp_chaos::scenario::System::Managed { sidecar_config, .. } = &scenario.system else {
            continue;
        };
        let text = std::fs::read_to_string(sidecar_config)
            .unwrap_or_else(|e| panic!("{}: {e}", sidecar_config.display()));
        // What the runner puts in the sidecar's environment.
        let env = |name: &str| match name {
            "CHAOS_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "CHAOS_ADMIN" => Some("127.0.0.1:0".to_owned()),
            "CHAOS_BACKEND_URL" => Some("http://127.0.0.1:1".to_owned()),
            _ => None,
        };
        mcp_sidecar::config::Config::from_toml_with_env(&text, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", sidecar_config.display()));
        checked += 1;
    }
    assert!(
        checked >= 3,
        "only {checked} scenarios name a sidecar config"
    );
}
