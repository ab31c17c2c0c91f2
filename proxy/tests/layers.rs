//! The library's module graph: every top-level module sits in a layer, imports only point down
//! (or sideways within a layer), and there is no import cycle, between top-level modules or
//! between modules at any depth (a child naming its own ancestors, its namespace, is not counted;
//! a parent using its children is). docs/ARCHITECTURE.md draws the same table; a new module must
//! be placed in it here, deliberately.
//!
//! The check reads the sources: every `crate::<module>` path outside comments and unit-test
//! modules (and `super::<module>` in a top-level module's own file) is an import of that module.
//! It is the mechanical form of `cargo modules dependencies --lib -p mcp-sidecar --acyclic`, at
//! the granularity that matters here, with no tool to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import modules of its own layer or below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "config, errors of start-up, plain types and logging",
        &[
            "config",
            "cidr",
            "glob",
            "principal",
            "lazy_timer",
            "rate_limited_log",
            "local_resources",
            "metrics",
            "rpc_metrics",
            "access_line",
            "log_writer",
            "tcp_keepalive",
            "fd_budget",
            "build_info",
        ],
    ),
    // The MCP model is below every layer here: the `mcp-model` crate (`crate::mcp`), which
    // cannot import the sidecar at all.
    ("HTTP/1 codec and header hygiene", &["codec", "headers"]),
    (
        "legs, pool, TLS and bodies",
        &[
            "body",
            "conn_info",
            "downstream",
            "upstream",
            "tls",
            "replay_io",
            "observe",
            "trace",
            "accept_errors",
        ],
    ),
    (
        "the request model: errors and the policy seam",
        &["error", "exchange"],
    ),
    (
        "policies",
        &[
            "auth",
            "limits",
            "resilience",
            "cors",
            "flood_logs",
            "jobs",
            "redis_conn",
        ],
    ),
    ("the request path", &["forward", "job_api", "tasks"]),
    (
        "server, admin and health",
        &["health", "reload", "admin", "server"],
    ),
    ("binary", &["cli", "demo", "probe"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module of a file under `src/`, and whether `super::` in it means the crate root.
fn module_of(rel: &Path) -> Option<(String, bool)> {
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
    let top = parts[0].trim_end_matches(".rs");
    if matches!(top, "lib" | "main") {
        return None;
    }
    let super_is_root = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
    Some((top.to_owned(), super_is_root))
}

/// Unit-test files (`*_tests.rs`, `tests.rs`, test helpers) are not part of the graph.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.ends_with("_tests.rs") || name == "tests.rs" || name.starts_with("test_util")
}

/// The source without comments and without the unit-test module at its end.
fn code_of(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // `#[cfg(test)]` then (after other attributes) `mod x {`: the rest is tests.
            let mut ahead = lines.clone();
            let next = ahead.find(|l| !l.trim_start().starts_with("#["));
            if next.is_some_and(|l| l.trim_start().starts_with("mod ") && l.contains('{')) {
                break;
            }
            continue;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules `code` names after `prefix` (`crate::`, or `super::` at the top).
fn imports(code: &str, prefix: &str) -> BTreeSet<String> {
    paths_after(code, prefix)
        .into_iter()
        .filter_map(|p| p.into_iter().next())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the other top-level modules it imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let Some((module, super_is_root)) = module_of(rel) else {
            continue;
        };
        if is_test_file(&path) {
            continue;
        }
        let entry = graph.entry(module.clone()).or_default();
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        let mut found = imports(&code, "crate::");
        if super_is_root {
            found.extend(imports(&code, "super::"));
        }
        entry.extend(found.into_iter().filter(|m| *m != module));
    }
    // Only modules are edges (`crate::StartError` re-exports and macros are not).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// The paths `code` names after `prefix`, each as its segments, with `use` groups expanded
/// (`a::{b, c::{d}}` is `a::b` and `a::c::d`). `self` inside a group names the group's own path.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        expand(&code[at + prefix.len()..], &mut Vec::new(), &mut found);
    }
    found
}

/// Expands the path (or `{group}`) at the start of `text` under `base` into `out`; returns how
/// many bytes it read.
fn expand(text: &str, base: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let depth = base.len();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if let Some(group) = trimmed.strip_prefix('{') {
            at += 1;
            let mut inner = group;
            loop {
                let used = expand(inner, base, out);
                at += used;
                inner = &inner[used..];
                let after = inner.trim_start();
                at += inner.len() - after.len();
                inner = after;
                if let Some(next) = inner.strip_prefix(',') {
                    at += 1;
                    inner = next;
                    if inner.trim_start().starts_with('}') {
                        let after = inner.trim_start();
                        at += inner.len() - after.len() + 1;
                        break;
                    }
                    continue;
                }
                if inner.starts_with('}') {
                    at += 1;
                }
                break;
            }
            break;
        }
        let ident = ident_at(trimmed);
        if ident.is_empty() {
            break;
        }
        at += ident.len();
        if ident != "self" {
            base.push(ident.to_owned());
        }
        match text[at..].strip_prefix("::") {
            Some(_) => at += 2,
            None => {
                out.push(base.clone());
                break;
            }
        }
    }
    base.truncate(depth);
    at
}

/// Module path of a file under `src/` (`limits/evaluate.rs` is `limits::evaluate`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_str().unwrap().to_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// Every module (at any depth) -> the modules it uses. A child naming its own ancestors (its
/// namespace: `super::BoxError` in `body/sse.rs`) is not an edge; everything else is, a
/// parent's use of its children included.
fn full_module_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let files: Vec<(Vec<String>, PathBuf)> = files
        .into_iter()
        .filter(|p| !is_test_file(p))
        .map(|p| (module_path(p.strip_prefix(&src).unwrap()), p))
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        let mut targets = Vec::new();
        targets.extend(paths_after(&code, "crate::"));
        let parent = &module[..module.len().saturating_sub(1)];
        for p in paths_after(&code, "super::") {
            targets.push(parent.iter().cloned().chain(p).collect());
        }
        for p in paths_after(&code, "self::") {
            targets.push(module.iter().cloned().chain(p).collect());
        }
        // `use child::item` and `child::item` relative to this module.
        for child in modules
            .iter()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        {
            let name = child.last().unwrap();
            for p in paths_after(&code, &format!("{name}::")) {
                targets.push(child.iter().cloned().chain(p).collect());
            }
        }
        let deps: BTreeSet<Vec<String>> = targets
            .iter()
            .filter_map(|t| resolve(t))
            .filter(|t| t != module && !module.starts_with(t))
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

#[test]
fn every_module_is_placed_in_a_layer() {
    let graph = module_graph();
    let unplaced: Vec<&String> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules not in the layer table of proxy/tests/layers.rs (and docs/ARCHITECTURE.md): {unplaced:?}"
    );
    let stale: Vec<&str> = LAYERS
        .iter()
        .flat_map(|(_, ms)| ms.iter().copied())
        .filter(|m| !graph.contains_key(*m))
        .collect();
    assert!(
        stale.is_empty(),
        "layer table names missing modules: {stale:?}"
    );
}

#[test]
fn imports_only_point_down_the_layers() {
    let graph = module_graph();
    let mut upward = Vec::new();
    for (module, deps) in &graph {
        let Some(from) = layer_of(module) else {
            continue;
        };
        for dep in deps {
            if let Some(to) = layer_of(dep)
                && to > from
            {
                upward.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    if let Some(cycle) = find_cycle(&module_graph()) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_cycle_among_modules_at_any_depth() {
    let graph = full_module_graph();
    assert!(
        graph.len() > 50,
        "the checker found only {} modules",
        graph.len()
    );
    let named: BTreeMap<String, BTreeSet<String>> = graph
        .iter()
        .map(|(m, deps)| (m.join("::"), deps.iter().map(|d| d.join("::")).collect()))
        .collect();
    if let Some(cycle) = find_cycle(&named) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

/// A cycle of `graph`, if it has one (depth-first search: a node met again while still on the
/// path closes a cycle).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_checker_expands_use_groups_to_full_paths() {
    let code = "use crate::{a::{self, b}, c::d::{e, f::g}, h};";
    let paths: Vec<String> = paths_after(code, "crate::")
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(paths, ["a", "a::b", "c::d::e", "c::d::f::g", "h"]);
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let code = code_of(
        "use crate::{a, b::c, d::{e, f}};\n// crate::commented\nfn x() { crate::g::h(); }\n\
         #[cfg(test)]\nmod tests {\n    use crate::only_in_tests;\n}\n",
    );
    let found = imports(&code, "crate::");
    let expected: BTreeSet<String> = ["a", "b", "d", "g"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, expected);
}
