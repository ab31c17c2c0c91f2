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
