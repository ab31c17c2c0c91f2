//! `[cors]`: the CORS policy the sidecar applies itself (see [`crate::cors`]).
//!
//! A section of its own, not part of `[auth]`: CORS is not an authentication mechanism, it only
//! tells browsers which pages may read the answers. Its origins default to the Origin check's
//! (`auth.allowed_origins`), so the two never disagree unless told to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How long browsers may cache a preflight's answer. Without `Access-Control-Max-Age` they cache
/// it for 5 s, so a browser client would send a preflight before nearly every request; Chromium
/// caps the value at 2 h (Firefox at 24 h), so 2 h is the most any common browser uses. Changing
/// the policy still takes effect at once for reading answers: every actual response is checked.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// Longest `cors.max_age` accepted: Firefox's cap; no browser caches a preflight longer.
pub const MAX_CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Methods MCP's Streamable HTTP transport uses (`OPTIONS` for completeness, as the spec lists).
pub const DEFAULT_ALLOWED_METHODS: [&str; 4] = ["POST", "GET", "DELETE", "OPTIONS"];

/// Request headers a browser MCP client sends: the credential headers, the transport's headers
/// (session, protocol version, SSE resumption, the 2026 method/name headers), the JSON ones,
/// and W3C Trace Context (an instrumented page sends `traceparent`/`tracestate`, and a preflight
/// refusing them would fail its calls).
pub const DEFAULT_ALLOWED_HEADERS: [&str; 11] = [
    "content-type",
    "accept",
    "authorization",
    "x-api-key",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "tracestate",
];

/// Response headers a browser MCP client must read: the session id, the 401/403 challenge, the
/// rate-limit fields, `Retry-After` of 429/503, and the request id for support.
pub const DEFAULT_EXPOSED_HEADERS: [&str; 6] = [
    "mcp-session-id",
    "www-authenticate",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
    "x-request-id",
];

/// `[cors]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// The sidecar answers preflights and adds CORS headers. `false`: the sidecar does no CORS; a
    /// preflight is an ordinary `OPTIONS` (authenticated on protected upstreams). Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Origins (globs) whose pages may read answers. Each must also pass `auth.allowed_origins`,
    /// which refuses other origins with 403 first. Default: every origin that check accepts.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// `Access-Control-Allow-Methods`. Default `POST, GET, DELETE, OPTIONS`.
    #[serde(default = "default_allowed_methods")]
    pub allowed_methods: Vec<String>,
    /// `Access-Control-Allow-Headers` (case-insensitive names). Default: see
    /// [`DEFAULT_ALLOWED_HEADERS`].
    #[serde(default = "default_allowed_headers")]
    pub allowed_headers: Vec<String>,
    /// `Access-Control-Expose-Headers`. Default: see [`DEFAULT_EXPOSED_HEADERS`].
    #[serde(default = "default_exposed_headers")]
    pub exposed_headers: Vec<String>,
    /// `Access-Control-Max-Age`, whole seconds. Default 2 h.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_enabled() -> bool {
    true
}
fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
fn default_allowed_methods() -> Vec<String> {
    owned(&DEFAULT_ALLOWED_METHODS)
}
fn default_allowed_headers() -> Vec<String> {
    owned(&DEFAULT_ALLOWED_HEADERS)
}
fn default_exposed_headers() -> Vec<String> {
    owned(&DEFAULT_EXPOSED_HEADERS)
}
fn default_max_age() -> Duration {
    DEFAULT_CORS_MAX_AGE
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_origins: None,
            allowed_methods: default_allowed_methods(),
            allowed_headers: default_allowed_headers(),
            exposed_headers: default_exposed_headers(),
            max_age: DEFAULT_CORS_MAX_AGE,
        }
    }
}

impl CorsConfig {
    /// Validates `[cors]`; errors name the field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(list) = &self.allowed_origins {
            super::auth::host_or_origin_patterns("cors.allowed_origins", list)?;
        }
        for (i, m) in self.allowed_methods.iter().enumerate() {
            if m == "*" || http::Method::from_bytes(m.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    format!("cors.allowed_methods[{i}]"),
                    format!("`{m}` is not a method name (list methods; `*` is not accepted)"),
                ));
            }
        }
        header_names("cors.allowed_headers", &self.allowed_headers)?;
        header_names("cors.exposed_headers", &self.exposed_headers)?;
        if self.max_age > MAX_CORS_MAX_AGE {
            return Err(ConfigError::invalid(
                "cors.max_age",
                "must be at most 24h: no browser caches a preflight longer",
            ));
        }
        Ok(())
    }
}

/// Header names only: `*` is refused because it never covers `Authorization` in a preflight
/// (Fetch), and an explicit list says what a page may send and read.
fn header_names(field: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, name) in list.iter().enumerate() {
        if name == "*" || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                format!("{field}[{i}]"),
                format!("`{name}` is not a header name (list names; `*` is not accepted)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(cors: &str) -> Result<Config, ConfigError> {
        let text =
            format!("[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:9/mcp\"\n[cors]\n{cors}");
        Config::from_toml_with_env(&text, &|_| None)
    }

    fn field_of(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn defaults_cover_what_browser_mcp_clients_send_and_read() {
        let c = load("").unwrap().cors;
        assert!(c.enabled);
        assert_eq!(c.max_age, DEFAULT_CORS_MAX_AGE);
        assert!(c.allowed_origins.is_none());
        for h in [
            "authorization",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ] {
            assert!(c.allowed_headers.iter().any(|x| x == h), "{h}");
        }
        for h in [
            "mcp-session-id",
            "www-authenticate",
            "ratelimit",
            "retry-after",
        ] {
            assert!(c.exposed_headers.iter().any(|x| x == h), "{h}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        for (toml, field) in [
            ("allowed_origins = [\"\"]", "cors.allowed_origins[0]"),
            (
                "allowed_methods = [\"POST\", \"GE T\"]",
                "cors.allowed_methods[1]",
            ),
            ("allowed_methods = [\"*\"]", "cors.allowed_methods[0]"),
            ("allowed_headers = [\"*\"]", "cors.allowed_headers[0]"),
            ("exposed_headers = [\"a b\"]", "cors.exposed_headers[0]"),
            ("max_age = \"25h\"", "cors.max_age"),
        ] {
            assert_eq!(field_of(load(toml).unwrap_err()), field, "{toml}");
        }
        assert!(matches!(
            load("allow_credentials = true"),
            Err(ConfigError::Parse(_))
        ));
    }
}
