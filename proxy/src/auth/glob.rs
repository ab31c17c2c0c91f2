//! `*` / `?` globs for method and tool names, Host and Origin allow-lists.
//!
//! `*` matches any run of characters (including none), `?` exactly one character; everything
//! else matches itself, case-sensitively. No character classes, no escapes: names of JSON-RPC
//! methods and tools never need them, and a smaller language is easier to reason about in an
//! allow-list.

/// A compiled pattern; the common shapes skip the general matcher.
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
    /// Compiles `pattern`.
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

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => s == text,
            Self::Prefix(p) => text.starts_with(p.as_str()),
            Self::General(p) => glob_match(p, text),
        }
    }
}

/// Matches `text` against `pattern` in O(len(pattern) * len(text)) worst case, without
/// recursion (the classic single-backtrack-point algorithm: only the last `*` is revisited).
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes_and_matches() {
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("echo"), Glob::Exact("echo".into()));
        assert_eq!(Glob::new("crawl_*"), Glob::Prefix("crawl_".into()));
        assert!(Glob::new("crawl_*").matches("crawl_web"));
        assert!(Glob::new("crawl_*").matches("crawl_"));
        assert!(!Glob::new("crawl_*").matches("crawl"));
        assert!(Glob::new("*_web").matches("crawl_web"));
        assert!(!Glob::new("*_web").matches("crawl_webs"));
        assert!(Glob::new("tools/*").matches("tools/list"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(Glob::new("a?c").matches("aéc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*a*b*").matches("xxaxxbxx"));
        assert!(!Glob::new("*a*b*").matches("xxbxxaxx"));
        assert!(Glob::new("**").matches(""));
        assert!(!Glob::new("Echo").matches("echo"));
        assert!(Glob::new("https://*.example.com").matches("https://app.example.com"));
        assert!(!Glob::new("https://*.example.com").matches("https://example.com"));
    }

    /// Reference matcher: plain recursion over characters.
    fn reference(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[ab*?é]{0,8}", t in "[abé]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(Glob::new(&p).matches(&t), reference(&pc, &tc), "{} vs {}", p, t);
        }
    }
}
