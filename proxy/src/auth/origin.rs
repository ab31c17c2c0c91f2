//! Host and Origin allow-lists: DNS-rebinding protection for the MCP endpoints.
//!
//! A rebinding attack makes a victim's browser send requests to the sidecar under the attacker's
//! host name: `Host` then names the attacker's domain, and so does `Origin`. Checking `Host`
//! against the names the sidecar is really reached by stops it (421 Misdirected Request); checking
//! a present `Origin` stops cross-site pages (403). Requests without `Origin` (every non-browser
//! client) are not affected by the Origin check.
//!
//! Defaults: a loopback listener accepts only loopback host names (`localhost`, `127.0.0.1`,
//! `[::1]`, any port) and loopback origins. Any other listener accepts every `Host` (behind load
//! balancers and service meshes the names are not known in advance: set `auth.allowed_hosts`) and
//! only same-origin or `auth.public_url` origins.

use std::net::SocketAddr;

use crate::glob::Glob;

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Splits `host[:port]` (also `[v6]:port`) into the host and the port text. On bytes: this runs for
/// every request's `Host`, and `str::rsplit_once` with its char searcher cost far more
/// (BENCHMARKS.md, "Figures behind code decisions").
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let bytes = authority.as_bytes();
    if bytes.first() == Some(&b'[') {
        return match bytes.iter().position(|&b| b == b']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match bytes.iter().rposition(|&b| b == b':') {
        // `:` is ASCII, so both slices end and start on character boundaries.
        Some(i) if i + 1 < bytes.len() && bytes[i + 1..].iter().all(u8::is_ascii_digit) => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

/// `s` lower-cased, without allocating when it already is (the usual case for `Host`).
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The `Host` check.
#[derive(Debug)]
pub enum HostPolicy {
    /// Every host.
    Any,
    /// Host names (any port) or `host:port` globs.
    List(Vec<Glob>),
}

impl HostPolicy {
    /// From `auth.allowed_hosts`, or the default for a listener on `listen`.
    pub fn new(configured: Option<&[String]>, listen: Option<SocketAddr>) -> Self {
        match configured {
            Some(list) if list.iter().any(|h| h == "*") => Self::Any,
            Some(list) => Self::List(
                list.iter()
                    .map(|h| Glob::new(&h.to_ascii_lowercase()))
                    .collect(),
            ),
            None if listen.is_some_and(|a| a.ip().is_loopback()) => {
                Self::List(LOOPBACK_HOSTS.iter().map(|h| Glob::new(h)).collect())
            }
            None => Self::Any,
        }
    }

    /// Whether a request for `authority` (from `Host` or the HTTP/2 `:authority`) is accepted.
    pub fn allows(&self, authority: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(globs) => {
                let lower = lowercase(authority);
                let (host, _) = split_authority(&lower);
                globs.iter().any(|g| g.matches(host) || g.matches(&lower))
            }
        }
    }
}

/// The `Origin` check.
#[derive(Debug)]
pub struct OriginPolicy {
    /// Exact origins or globs (`https://*.example.com`), lower-cased.
    allowed: Vec<Glob>,
    /// Accept any origin whose host is a loopback name.
    loopback: bool,
    /// Accept an origin naming the request's own `Host`.
    same_origin: bool,
}

impl OriginPolicy {
    /// From `auth.allowed_origins`, or the default for a listener on `listen`; `public_url`'s
    /// origin is always accepted.
    pub fn new(
        configured: Option<&[String]>,
        listen: Option<SocketAddr>,
        public_url: Option<&str>,
    ) -> Self {
        let mut allowed: Vec<Glob> = configured
            .unwrap_or_default()
            .iter()
            .map(|o| Glob::new(o.trim_end_matches('/').to_ascii_lowercase().as_str()))
            .collect();
        if let Some(origin) = public_url
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
        {
            allowed.push(Glob::new(&origin.to_ascii_lowercase()));
        }
        let loopback_listener = listen.is_some_and(|a| a.ip().is_loopback());
        Self {
            allowed,
            loopback: configured.is_none() && loopback_listener,
            same_origin: configured.is_none() && !loopback_listener,
        }
    }

    /// Whether a request with `Origin: origin` to `host` is accepted.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.allowed.iter().any(|g| g.matches(&origin)) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false; // `null`, file:, extensions: only when listed
        };
        if authority.contains(['/', '@', '?', '#']) {
            return false;
        }
        let (origin_host, origin_port) = split_authority(authority);
        if self.loopback && LOOPBACK_HOSTS.contains(&origin_host) {
            return true;
        }
        // Same origin: same host and port, a missing port being the origin scheme's default.
        let default_port = if origin.starts_with("https://") {
            "443"
        } else {
            "80"
        };
        self.same_origin
            && host.is_some_and(|h| {
                let h = lowercase(h);
                let (host_name, host_port) = split_authority(&h);
                host_name == origin_host
                    && host_port.unwrap_or(default_port) == origin_port.unwrap_or(default_port)
            })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn split_authority_takes_only_a_numeric_last_port() {
        assert_eq!(
            split_authority("127.0.0.1:8080"),
            ("127.0.0.1", Some("8080"))
        );
        assert_eq!(split_authority("localhost"), ("localhost", None));
        assert_eq!(split_authority("host:"), ("host:", None));
        assert_eq!(split_authority("host:8x"), ("host:8x", None));
        assert_eq!(split_authority("a:b:80"), ("a:b", Some("80")));
        assert_eq!(split_authority("ü:80"), ("ü", Some("80")));
        assert_eq!(split_authority("[::1]:9"), ("[::1]", Some("9")));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("[::1"), ("[::1", None));
        assert_eq!(split_authority(""), ("", None));
    }

    proptest! {
        /// The byte-wise split agrees with the plain `str` one it replaced, on any text.
        #[test]
        fn split_authority_agrees_with_the_str_split(s in "[\\[\\]:0-9a-zü.]{0,16}") {
            let reference = if s.starts_with('[') {
                match s.find(']') {
                    Some(end) => (&s[..=end], s[end + 1..].strip_prefix(':')),
                    None => (s.as_str(), None),
                }
            } else {
                match s.rsplit_once(':') {
                    Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
                    _ => (s.as_str(), None),
                }
            };
            prop_assert_eq!(split_authority(&s), reference);
        }
    }

    fn loopback() -> Option<SocketAddr> {
        Some("127.0.0.1:8080".parse().unwrap())
    }
    fn public() -> Option<SocketAddr> {
        Some("0.0.0.0:8080".parse().unwrap())
    }

    #[test]
    fn loopback_listener_defaults_refuse_rebinding() {
        let h = HostPolicy::new(None, loopback());
        assert!(h.allows("127.0.0.1:8080"));
        assert!(h.allows("LOCALHOST"));
        assert!(h.allows("[::1]:9"));
        assert!(!h.allows("attacker.example:8080"));
        assert!(!h.allows("127.0.0.1.attacker.example"));
        let o = OriginPolicy::new(None, loopback(), None);
        assert!(o.allows("http://localhost:3000", Some("127.0.0.1:8080")));
        assert!(o.allows("https://127.0.0.1", None));
        assert!(!o.allows(
            "http://attacker.example:8080",
            Some("attacker.example:8080")
        ));
        assert!(!o.allows("null", None));
        assert!(!o.allows("http://localhost@evil.example", None));
    }

    #[test]
    fn other_listeners_accept_any_host_and_same_origin() {
        let h = HostPolicy::new(None, public());
        assert!(h.allows("anything.internal"));
        let o = OriginPolicy::new(None, public(), Some("https://mcp.example.com/mcp"));
        assert!(o.allows("https://mcp.example.com", Some("10.0.0.1:8080")));
        assert!(o.allows("http://10.0.0.1:8080", Some("10.0.0.1:8080")));
        assert!(o.allows("https://api.example.com", Some("api.example.com:443")));
        assert!(o.allows("http://api.example.com:80", Some("API.example.com")));
        assert!(!o.allows("http://api.example.com", Some("api.example.com:8080")));
        assert!(!o.allows("http://evil.example", Some("10.0.0.1:8080")));
    }

    #[test]
    fn configured_lists_replace_defaults() {
        let h = HostPolicy::new(
            Some(&["mcp.example.com".into(), "*.internal:8080".into()]),
            loopback(),
        );
        assert!(h.allows("mcp.example.com:443"));
        assert!(h.allows("svc.internal:8080"));
        assert!(!h.allows("svc.internal:9090"));
        assert!(!h.allows("localhost"));
        let o = OriginPolicy::new(
            Some(&["https://*.example.com".into(), "null".into()]),
            loopback(),
            None,
        );
        assert!(o.allows("https://app.example.com", None));
        assert!(o.allows("null", None));
        assert!(!o.allows("http://localhost:3000", None));
    }
}
