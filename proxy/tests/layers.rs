//! The library's module graph: every top-level module sits in a layer, imports only point down
//! (or sideways within a layer), and there is no import cycle. docs/ARCHITECTURE.md draws the
//! same table; a new module must be placed in it here, deliberately.
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
            "access_line",
            "log_writer",
            "tcp_keepalive",
            "fd_budget",
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
            "accept_errors",
        ],
    ),
    (
        "the request model: errors and the policy seam",
        &["error", "exchange"],
    ),
    (
        "policies",
        &["auth", "limits", "resilience", "cors", "flood_logs"],
    ),
    ("the request path", &["forward"]),
    ("server, admin and health", &["health", "admin", "server"]),
    ("binary", &["cli", "demo"]),
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
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let ident = ident_at(rest);
            if !ident.is_empty() {
                found.insert(ident.to_owned());
            }
        }
    }
    found
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
    let graph = module_graph();
    // Depth-first search with colours; a grey node met again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, Colour>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(node.to_owned(), Colour::Grey);
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            match colour.get(dep).copied().unwrap_or(Colour::White) {
                Colour::Grey => {
                    let start = path.iter().position(|p| p == dep).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(dep.clone());
                    return Some(cycle);
                }
                Colour::White => {
                    if let Some(cycle) = visit(dep, graph, colour, path) {
                        return Some(cycle);
                    }
                }
                Colour::Black => {}
            }
        }
        path.pop();
        colour.insert(node.to_owned(), Colour::Black);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if colour.get(node).copied().unwrap_or(Colour::White) == Colour::White
            && let Some(cycle) = visit(node, &graph, &mut colour, &mut Vec::new())
        {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
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
