//! The one glob matcher of the sidecar: method and tool names in authorization rules, rate-limit
//! rules and `[[upstream.tool]]` entries; Host, Origin and CORS allow-lists.
//!
//! The language, all of it:
//! - `*` matches any run of characters, including none; `/`, `.` and `:` are ordinary characters
//!   to it (`tools/*` matches `tools/call`, `https://*.example.com` matches `https://a.b.example.com`);
//! - `?` matches exactly one character (one Unicode scalar value, not one byte: `a?c` matches `aéc`);
//! - every other character matches itself, case-sensitively (callers that compare host names and
//!   origins lower-case both the pattern and the text);
//! - the whole text must match: patterns are anchored at both ends (`echo` does not match `echo2`).
//!
//! There are no character classes, alternatives or escapes: `[`, `{` and `\` are ordinary
//! characters. Names of JSON-RPC methods and tools never need more, and a smaller language is
//! easier to reason about in an allow-list. So no pattern is refused here; which patterns are
//! acceptable (non-empty, visible ASCII, ...) is for the configuration to validate, field by field.
//!
//! Matching never recurses and never allocates, and costs O(len(pattern) * len(text)) at worst.
//! This module imports nothing from the crate: it sits at the bottom of the layer graph.

/// A pattern compiled once; the common shapes (`*`, a plain name, `prefix*`) skip the general
/// matcher, since rules are checked on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    /// `*`
    Any,
    /// No wildcard: equality.
    Exact(String),
    /// `prefix*` with no other wildcard.
    Prefix(String),
    /// Anything else.
    General(String),
}

impl Glob {
    /// Compiles `pattern` (every string is a valid pattern).
    pub fn new(pattern: &str) -> Self {
        let wild = |c: char| c == '*' || c == '?';
        if pattern == "*" {
            Self::Any
        } else if !pattern.contains(wild) {
            Self::Exact(pattern.to_owned())
        } else if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(wild)
        {
            Self::Prefix(prefix.to_owned())
        } else {
            Self::General(pattern.to_owned())
        }
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => s == text,
            Self::Prefix(p) => text.starts_with(p.as_str()),
            Self::General(p) => glob_match(p, text),
        }
    }
}

/// Whether the whole of `text` matches `pattern`, for patterns used once (see [`Glob`] for the
/// language).
///
/// The classic single-backtrack-point algorithm: only the last `*` is ever revisited, which is
/// enough because a later `*` can absorb whatever an earlier one would have. It walks bytes:
/// both sides are UTF-8, so a literal character matches exactly when its bytes do, and `?` and
/// `*` step over whole characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += char_width(t[ti]);
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((after_star, absorbed)) = star {
            // Let the last `*` absorb one more character and retry from just after it.
            let next = absorbed + char_width(t[absorbed]);
            star = Some((after_star, next));
            pi = after_star;
            ti = next;
        } else {
            return false;
        }
    }
    p[pi.min(p.len())..].iter().all(|&b| b == b'*')
}

/// Width of the UTF-8 character starting with `lead` (1 for stray continuation bytes, which
/// cannot occur in a `&str` at a character boundary).
fn char_width(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
