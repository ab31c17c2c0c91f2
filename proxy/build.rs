//! Records the commit the binary is built from (`mcp-sidecar --version`, the
//! `mcp_sidecar_build_info{commit}` metric) as `MCP_SIDECAR_COMMIT`.
//!
//! The commit is `git rev-parse --short HEAD` when git and the repository are there, the
//! `MCP_SIDECAR_COMMIT` environment variable when it is set (a container build without `.git`
//! passes it in), else `unknown`. Never fails the build: a missing git is not a broken build.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MCP_SIDECAR_COMMIT");
    let commit = match std::env::var("MCP_SIDECAR_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=MCP_SIDECAR_COMMIT={commit}");
}

/// Output of `git ARGS` in this crate's directory, trimmed; `None` when git is missing, this is
/// not a repository, or the answer is empty.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// Reruns this script when HEAD moves: a checkout changes `HEAD`, a commit changes the branch's
/// ref (loose, or in `packed-refs` after a `git gc`). Paths come from git itself, so a worktree
/// (whose `.git` is a file) works too; only files that exist are named (cargo reruns on every
/// build for a missing one).
fn watch_head() {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for path in paths {
        if let Some(file) = git(&["rev-parse", "--path-format=absolute", "--git-path", &path])
            && Path::new(&file).is_file()
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}
