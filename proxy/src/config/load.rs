//! Loading a config file with every error placed: the TOML is parsed into a tree that keeps each
//! key's and value's position, `${ENV}` references are resolved inside that tree, the typed
//! config is deserialized from it and validated. An error, from any step, names the field's full
//! path with array indexes (`upstream[1].breaker.open_duration`), the file, line and column,
//! suggests the closest key for an unknown one, and shows the accepted duration format when a
//! duration did not parse.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::{Config, ConfigError};

/// Appended to an error about a duration: what one looks like.
pub(crate) const DURATION_FORMAT: &str = "durations are a number and a unit, parts added up, \
    such as \"250ms\", \"30s\", \"5m\", \"1h 30m\"; units: ns, us, ms, s, m, h, d";

/// Closest a key must be (Jaro-Winkler similarity) to be suggested for an unknown one: close
/// enough for a slip (`conect_timeout`, `grace_perod`), far enough that unrelated keys are not.
const SUGGESTION_SIMILARITY: f64 = 0.8;

/// Where in the config file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, when the config came from one.
    pub file: Option<std::path::PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}:{}", file.display(), self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

/// Parses `text` (from `file`, if any), resolving `${VAR}` with `lookup`, and validates it.
pub(super) fn parse(
    text: &str,
    file: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let place = |error: ConfigError, span: Option<Range<usize>>| match span {
        Some(span) => error.at(location(text, file, span.start)),
        None => error,
    };
    let root = DeTable::parse(text).map_err(|e| {
        let span = e.span();
        place(ConfigError::parse(e.message().trim_end()), span)
    })?;
    // Secrets must be references in the file as written, before any is resolved.
    let raw: toml::Table = toml::from_str(text).map_err(|e| ConfigError::parse(e.message()))?;
    let at_field = |error: ConfigError, tree: &DeTable<'_>| {
        let span = error.field().and_then(|f| find(tree, f));
        place(error, span)
    };
    super::auth::check_secret_refs(&raw).map_err(|e| at_field(e, root.get_ref()))?;
    let mut root = root;
    resolve(root.get_mut(), lookup).map_err(|e| at_field(e, root.get_ref()))?;
    let tree = root.get_ref().clone();
    let config = Config::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
        let path = e.span().and_then(|s| path_at(&tree, &s));
        let message = explain(e.message().trim_end());
        let error = ConfigError::parse(match path {
            Some(path) => format!("{path}: {message}"),
            None => message,
        });
        place(error, e.span())
    })?;
    config.validate().map_err(|e| at_field(e, &tree))?;
    Ok(config)
}

/// The 1-based line and column of byte `offset` in `text`.
fn location(text: &str, file: Option<&Path>, offset: usize) -> Location {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        file: file.map(Path::to_path_buf),
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

/// A deserialization message made helpful: the closest key for an unknown field or variant, the
/// accepted format for a duration.
fn explain(message: &str) -> String {
    let mut out = message.to_owned();
    if let Some(suggestion) = suggest(message) {
        // The suggestion before the (long) list of every accepted name.
        out = match message.split_once(", expected") {
            Some((unknown, expected)) => {
                format!("{unknown}; did you mean `{suggestion}`? (expected{expected})")
            }
            None => format!("{message}; did you mean `{suggestion}`?"),
        };
    }
    const DURATION_ERRORS: &[&str] = &[
        "expected a duration",
        "time unit",
        "expected number at",
        "invalid character at",
        "value was empty",
        "number is too large",
    ];
    if DURATION_ERRORS.iter().any(|m| message.contains(m)) {
        out = format!("{out}; {DURATION_FORMAT}");
    }
    out
}

/// For `unknown field `x`, expected one of `a`, `b`` (or `unknown variant`), the expected name
/// closest to `x`, if it is close.
fn suggest(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (unknown, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once("expected")?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), candidate))
        .filter(|(score, _)| *score >= SUGGESTION_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

/// The dotted path (`upstream[1].breaker.open_duration`) of the innermost key or value whose
/// span holds `span`.
fn path_at(tree: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut path = String::new();
    descend_table(tree, span, &mut path);
    (!path.is_empty()).then_some(path)
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

fn descend_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut String) {
    for (key, value) in table.iter() {
        if holds(&key.span(), span) || holds(&value.span(), span) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            descend_value(value.get_ref(), span, path);
            return;
        }
    }
    // Array-of-tables elements and their keys are spread over the file, so an element's own
    // span need not hold its keys: look inside every table for the key.
    for (key, value) in table.iter() {
        let mut inner = String::new();
        if descend_value_deep(value.get_ref(), span, &mut inner) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            path.push_str(&inner);
            return;
        }
    }
}

fn descend_value(value: &DeValue<'_>, span: &Range<usize>, path: &mut String) {
    let mut inner = String::new();
    if descend_value_deep(value, span, &mut inner) {
        path.push_str(&inner);
    }
}

/// Whether `span` is a key or value somewhere inside `value`; its path (relative, starting with
/// `.` or `[`) is written to `path`.
fn descend_value_deep(value: &DeValue<'_>, span: &Range<usize>, path: &mut String) -> bool {
    match value {
        DeValue::Table(table) => {
            let mut inner = String::new();
            descend_table(table, span, &mut inner);
            if inner.is_empty() {
                return false;
            }
            path.push('.');
            path.push_str(&inner);
            true
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut inner = String::new();
                let inside = descend_value_deep(item.get_ref(), span, &mut inner);
                if inside || holds(&item.span(), span) {
                    path.push_str(&format!("[{i}]"));
                    path.push_str(&inner);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// The span of the value at `field` (`upstream[1].breaker.open_duration`), or of its deepest
/// ancestor present in the file (a key left at its default has no place of its own).
fn find(tree: &DeTable<'_>, field: &str) -> Option<Range<usize>> {
    let mut found = None;
    let mut table = tree;
    for segment in field.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            return found;
        };
        found = Some(if indexes.is_empty() {
            value.span()
        } else {
            key.span()
        });
        let mut current: &Spanned<DeValue<'_>> = value;
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .map(str::parse::<usize>)
        {
            let item = match (current.get_ref(), index) {
                (DeValue::Array(items), Ok(i)) => items.get(i),
                _ => None,
            };
            let Some(item) = item else {
                return found;
            };
            found = Some(item.span()).filter(|s| !s.is_empty()).or(found);
            current = item;
        }
        match current.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return found,
        }
    }
    found
}

/// Replaces every `${NAME}` inside string values of `table` (recursively), keeping positions.
fn resolve(
    table: &mut DeTable<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        resolve_value(value.get_mut(), key.get_ref(), lookup)?;
    }
    Ok(())
}

fn resolve_value(
    value: &mut DeValue<'_>,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        DeValue::String(s) if s.contains('$') => {
            *s = DeString::Owned(super::env::substitute(s, path, lookup)?);
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_value(item.get_mut(), &format!("{path}[{i}]"), lookup)?;
            }
        }
        DeValue::Table(t) => {
            for (key, item) in t.iter_mut() {
                resolve_value(item.get_mut(), &format!("{path}.{}", key.get_ref()), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
