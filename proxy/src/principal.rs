//! The authenticated caller: who it is, what vouched for it, what it may do.

use http::{HeaderName, HeaderValue};

/// What authenticated the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A configured API key, by its id.
    ApiKey(String),
    /// A JWT from the issuer with this id.
    Jwt(String),
}

/// An authenticated caller. Built once per credential (API keys at start, JWTs when first
/// validated, then cached), so everything the request path needs is precomputed here.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub` of a JWT, the id of an API key.
    pub subject: String,
    /// What vouched for it.
    pub source: Source,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `aud` of a JWT (empty for API keys).
    pub audiences: Vec<String>,
    /// A JWT's `aud` matched one of its issuer's extra `audiences`, accepted for every upstream.
    pub audience_accepted_everywhere: bool,
    /// `auth.claim_headers` values, ready to be added to upstream requests.
    pub claim_headers: ClaimHeaders,
}

impl Principal {
    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether a token for this principal may be used at `resource` (always for API keys).
    pub fn audience_ok(&self, resource: &str) -> bool {
        match self.source {
            Source::ApiKey(_) => true,
            Source::Jwt(_) => {
                self.audience_accepted_everywhere
                    || self
                        .audiences
                        .iter()
                        .any(|a| a.trim_end_matches('/') == resource.trim_end_matches('/'))
            }
        }
    }

    /// `api_key:ID` or `jwt:ID`, for logs.
    pub fn source_label(&self) -> String {
        match &self.source {
            Source::ApiKey(id) => format!("api_key:{id}"),
            Source::Jwt(id) => format!("jwt:{id}"),
        }
    }
}

/// Headers derived from a principal's claims, ready to add to upstream requests.
pub type ClaimHeaders = Vec<(HeaderName, HeaderValue)>;

/// `auth.claim_headers` compiled once: each claim with the header it is forwarded in. A header
/// name that does not parse is left out (validation has refused it before this runs).
pub fn claim_header_names(
    configured: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, HeaderName)> {
    configured
        .iter()
        .filter_map(|(claim, h)| {
            HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(|n| (claim.clone(), n))
        })
        .collect()
}

/// Longest claim value forwarded as a header; longer values are left out rather than cut, so a
/// backend never acts on a truncated identity.
pub const MAX_CLAIM_HEADER_LEN: usize = 1024;

/// Renders a claim as a header value: strings as they are, string arrays space-separated (like
/// `scope`), numbers and booleans as JSON. Objects, nulls and values that are not valid header
/// text are left out.
pub fn claim_header_value(value: &serde_json::Value) -> Option<HeaderValue> {
    use serde_json::Value;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            strings?.join(" ")
        }
        Value::Null | Value::Object(_) => return None,
    };
    if text.is_empty() || text.len() > MAX_CLAIM_HEADER_LEN {
        return None;
    }
    // Visible ASCII and spaces only: no control characters, no obs-text a backend might mangle.
    if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_values_render_or_are_left_out() {
        assert_eq!(claim_header_value(&json!("alice")).unwrap(), "alice");
        assert_eq!(claim_header_value(&json!(["a", "b"])).unwrap(), "a b");
        assert_eq!(claim_header_value(&json!(42)).unwrap(), "42");
        assert!(claim_header_value(&json!({"a": 1})).is_none());
        assert!(claim_header_value(&json!("line\nbreak")).is_none());
        assert!(claim_header_value(&json!("x".repeat(2000))).is_none());
        assert!(claim_header_value(&json!([1, 2])).is_none());
    }

    #[test]
    fn audiences_compare_without_trailing_slash() {
        let p = Principal {
            subject: "s".into(),
            source: Source::Jwt("i".into()),
            scopes: vec![],
            audiences: vec!["https://mcp.example.com/mcp/".into()],
            audience_accepted_everywhere: false,
            claim_headers: vec![],
        };
        assert!(p.audience_ok("https://mcp.example.com/mcp"));
        assert!(!p.audience_ok("https://mcp.example.com/other"));
    }
}
