//! Who is calling: the client IP behind trusted proxies, and glob matching for rule filters.

use std::net::IpAddr;

use http::HeaderMap;

pub use crate::cidr::{Cidr, CidrError};
use crate::headers::X_FORWARDED_FOR;

/// The client's IP: the peer's, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is walked from the right (the hop nearest to us) past every trusted proxy,
/// and the first address not trusted is the client. An entry that is not an address stops the
/// walk at the last hop that could be believed. Only trusted proxies' claims are believed, so a
/// client cannot pick its own key by sending `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// A glob compiled once: exact names and `prefix*` patterns, the common cases in rules, skip the
/// general matcher (this runs for every rule on every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    /// `*`.
    Any,
    /// No wildcard.
    Exact(String),
    /// `prefix*` with no other wildcard.
    Prefix(String),
    /// Anything else.
    Pattern(String),
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        let wild = |s: &str| s.contains(['*', '?']);
        match pattern.strip_suffix('*') {
            _ if !wild(pattern) => Self::Exact(pattern.to_owned()),
            Some("") => Self::Any,
            Some(prefix) if !wild(prefix) => Self::Prefix(prefix.to_owned()),
            _ => Self::Pattern(pattern.to_owned()),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == text,
            Self::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Self::Pattern(pattern) => glob_match(pattern, text),
        }
    }
}

/// Shell-style glob: `*` matches any run of characters (also none), `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        glob(pattern.as_bytes(), text.as_bytes(), b'*', b'?')
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        glob(&p, &t, '*', '?')
    }
}

/// Iterative glob with one backtrack point (the last `*`): O(len(p) * len(t)) at worst.
fn glob<T: Copy + Eq>(p: &[T], t: &[T], any_run: T, any_one: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(&c) if c == any_run => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == any_one || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == any_run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let h = xff(&["203.0.113.9, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // A client that forges a left-hand entry does not choose its key.
        let h = xff(&["1.1.1.1", "203.0.113.9, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // All hops trusted: the leftmost is the best we know.
        let h = xff(&["10.0.0.9, 10.0.0.8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.9"));
        // Garbage stops the walk at the last believable hop.
        let h = xff(&["203.0.113.9, garbage, 10.0.0.8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.8"));
        // Ports are tolerated.
        let h = xff(&["203.0.113.9:4711", "[2001:db8::1]:80"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        // No header: the trusted peer itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("crawl_*", "crawl_web"));
        assert!(glob_match("crawl_*", "crawl_"));
        assert!(!glob_match("crawl_*", "crawl"));
        assert!(glob_match("*", ""));
        assert!(glob_match("tools/*", "tools/call"));
        assert!(glob_match("t?ols/call", "tools/call"));
        assert!(!glob_match("tools/call", "tools/calls"));
        assert!(glob_match("*a*b*c", "xxaxxbxxc"));
        assert!(!glob_match("*a*b*c", "xxaxxcxxb"));
        assert!(glob_match("é*", "éa"));
        assert_eq!(Glob::new("echo"), Glob::Exact("echo".into()));
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("crawl_*"), Glob::Prefix("crawl_".into()));
        assert_eq!(Glob::new("*_web"), Glob::Pattern("*_web".into()));
        assert_eq!(Glob::new("a?*"), Glob::Pattern("a?*".into()));
        assert!(
            Glob::new("crawl_*").matches("crawl_web") && !Glob::new("crawl_*").matches("crawl")
        );
    }

    fn naive(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some(&c), Some(&d)) if c == '?' || c == d => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_recursive_definition(p in "[abé*?]{0,8}", t in "[abé]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(glob_match(&p, &t), naive(&pc, &tc));
            prop_assert_eq!(Glob::new(&p).matches(&t), naive(&pc, &tc));
        }
    }
}
