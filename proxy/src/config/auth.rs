//! `[auth]` (who may call: API keys, JWT issuers, Host/Origin allow-lists, claim headers) and
//! `upstream[].auth` (public or protected, the backend's own credential, authorization rules).
//!
//! Secrets (`api_keys[].key`, `jwt[].secret`, `upstream[].auth.credential.value`, `admin.token`) must come from
//! the environment: `check_secret_refs` runs on the raw TOML, before `${VAR}` resolution, and
//! refuses inline values, so a secret never sits in a config file or a repository.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, UpstreamConfig};

/// Clock skew tolerated on `exp`/`nbf`. 60 s is what Envoy, jsonwebtoken and most IdP SDKs use:
/// enough for NTP-synchronised hosts, short enough not to extend a token's life noticeably.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// How long fetched signing keys are used before they are fetched again. IdPs rotate keys with
/// days of overlap; 5 minutes picks up a new key well within that while costing one small fetch.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// A token with an unknown `kid` triggers an early refetch, at most this often per issuer, so a
/// stream of forged `kid`s cannot turn the sidecar into a load generator against the IdP.
pub const DEFAULT_JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Time allowed for one JWKS fetch (connect + response). The IdP is usually remote; 5 s is long
/// enough for a slow one and bounds how long a request waits on an unknown-`kid` refetch.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Validated tokens remembered so a hot token is not re-verified on every request. 10 000 entries
/// of a few hundred bytes each stay in the low megabytes.
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 10_000;
/// Longest a validated token stays cached (it never outlives its `exp`). Bounds how long a token
/// signed by a key that was removed from the JWKS keeps working.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);
/// Shortest accepted API key: 16 characters of a random key carry well over 64 bits.
pub const MIN_API_KEY_LEN: usize = 16;
/// Shortest HMAC secret: RFC 7518 3.2 requires a key at least as long as the hash output.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// A secret string: deserialised like a string, never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(super::view::REDACTED)
    }
}

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `[auth]`: authentication for every upstream that is not `public`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The sidecar's external base URL (`https://mcp.example.com`): the base of each upstream's
    /// resource identifier (the `aud` tokens must carry) and of the metadata URLs. Required as
    /// soon as `api_keys` or `jwt` are configured.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Authorization servers announced in the protected resource metadata. Default: the `issuer`
    /// of every `jwt` entry.
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    /// Scopes announced in the metadata and in `WWW-Authenticate`. Default: the scopes named by
    /// the upstream's rules.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// Static API keys.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Trusted JWT issuers.
    #[serde(default)]
    pub jwt: Vec<JwtIssuerConfig>,
    /// Validated tokens kept in memory; `0` turns the cache off. Default 10 000.
    #[serde(default = "default_token_cache_size")]
    pub token_cache_size: usize,
    /// Longest a validated token stays cached (never past its `exp`). Default 5 min.
    #[serde(default = "default_token_cache_ttl", with = "humantime_serde")]
    pub token_cache_ttl: Duration,
    /// Principal claims sent to backends as headers, `claim = "Header-Name"`. `sub` and `scope`
    /// work for API keys too (the key id and its scopes). Incoming headers of these names are
    /// always removed first.
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// `Host` values accepted (421 otherwise); `*` and `?` globs, `host` or `host:port`.
    /// Default: loopback names for a loopback listener, anything otherwise.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// `Origin` values accepted when the header is present (403 otherwise); globs allowed.
    /// Default: loopback origins for a loopback listener, the request's own origin otherwise.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
}

/// `[[auth.api_keys]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the key in logs and metrics (and is the principal's subject).
    pub id: String,
    /// The key; must be written as `${ENV_VAR}`.
    pub key: Secret,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[[auth.jwt]]`: one trusted token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// Names the issuer in logs and metrics.
    pub id: String,
    /// Exact `iss` value required.
    pub issuer: String,
    /// Accepted `alg` values; the token header's `alg` must be one of them and fit the key.
    pub algorithms: Vec<Algorithm>,
    /// Audiences accepted besides the upstream's resource identifier.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS endpoint (`https://idp/.well-known/jwks.json`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Local JWKS file (re-read every `jwks_refresh`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Extra PEM CA bundle for an `https://` `jwks_url`.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// HMAC secret for HS256/384/512; must be written as `${ENV_VAR}`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Keys are fetched again after this. Default 5 min.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Earliest refetch after the previous one when a token names an unknown `kid`. Default 30 s.
    #[serde(default = "default_jwks_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh_interval: Duration,
    /// Time allowed for one JWKS fetch. Default 5 s.
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// Clock skew tolerated on `exp` and `nbf`. Default 60 s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Claims that must be present (besides `iss`, `aud`, `exp`, which always are).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Claim holding the scopes. Default: `scope` (space-separated), else `scp`.
    #[serde(default)]
    pub scope_claim: Option<String>,
}

/// `[upstream.auth]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthConfig {
    /// No authentication or authorization for this upstream.
    #[serde(default)]
    pub public: bool,
    /// Resource identifier (token audience). Default: `auth.public_url` + the mount path.
    #[serde(default)]
    pub resource: Option<String>,
    /// The backend's own credential, added to every forwarded request.
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
    /// Authorization rules; none means any authenticated principal may do anything.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `upstream[].auth.credential`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Header name, e.g. `Authorization`.
    pub header: String,
    /// Header value; must reference the environment, e.g. `"Bearer ${SHIELD_TOKEN}"`.
    pub value: Secret,
}

/// `[[upstream.auth.rules]]`: what principals holding one of `scopes` may do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Scopes the rule applies to; `*` means every authenticated principal.
    pub scopes: Vec<String>,
    /// JSON-RPC methods allowed (globs), other than `tools/call`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tools allowed through `tools/call` (globs); they are also what `tools/list` shows.
    #[serde(default)]
    pub tools: Vec<String>,
}

fn default_token_cache_size() -> usize {
    DEFAULT_TOKEN_CACHE_SIZE
}
fn default_token_cache_ttl() -> Duration {
    DEFAULT_TOKEN_CACHE_TTL
}
fn default_jwks_refresh() -> Duration {
    DEFAULT_JWKS_REFRESH
}
fn default_jwks_min_refresh() -> Duration {
    DEFAULT_JWKS_MIN_REFRESH_INTERVAL
}
fn default_jwks_timeout() -> Duration {
    DEFAULT_JWKS_TIMEOUT
}
fn default_leeway() -> Duration {
    DEFAULT_LEEWAY
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            authorization_servers: None,
            scopes_supported: None,
            api_keys: Vec::new(),
            jwt: Vec::new(),
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            token_cache_ttl: DEFAULT_TOKEN_CACHE_TTL,
            claim_headers: BTreeMap::new(),
            allowed_hosts: None,
            allowed_origins: None,
        }
    }
}

impl AuthConfig {
    /// Whether any authenticator is configured.
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || !self.jwt.is_empty()
    }
}

impl JwtIssuerConfig {
    /// An issuer with defaults for everything but what identifies it and its keys.
    pub fn new(
        id: impl Into<String>,
        issuer: impl Into<String>,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        Self {
            id: id.into(),
            issuer: issuer.into(),
            algorithms,
            audiences: Vec::new(),
            jwks_url: None,
            jwks_file: None,
            jwks_ca_file: None,
            secret: None,
            jwks_refresh: DEFAULT_JWKS_REFRESH,
            jwks_min_refresh_interval: DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
            jwks_timeout: DEFAULT_JWKS_TIMEOUT,
            leeway: DEFAULT_LEEWAY,
            required_claims: Vec::new(),
            scope_claim: None,
        }
    }
}

/// Refuses secrets written inline: `auth.api_keys[].key`, `auth.jwt[].secret` and `admin.token` must be exactly
/// one `${VAR}` reference, `upstream[].auth.credential.value` must contain one. Runs on the raw
/// TOML, before references are resolved.
pub(crate) fn check_secret_refs(tree: &toml::Table) -> Result<(), ConfigError> {
    let whole_ref = |v: &str| {
        v.strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|name| !name.is_empty() && !name.contains(['$', '{', '}']))
    };
    let auth = tree.get("auth").and_then(toml::Value::as_table);
    for (list, key) in [("api_keys", "key"), ("jwt", "secret")] {
        let items = auth
            .and_then(|a| a.get(list))
            .and_then(toml::Value::as_array);
        for (i, item) in items.into_iter().flatten().enumerate() {
            if let Some(value) = item.get(key).and_then(toml::Value::as_str)
                && !whole_ref(value)
            {
                return Err(ConfigError::invalid(
                    format!("auth.{list}[{i}].{key}"),
                    "secrets are never written inline; use an environment reference such as \"${API_KEY_CI}\"",
                ));
            }
        }
    }
    let admin_token = tree
        .get("admin")
        .and_then(|a| a.get("token"))
        .and_then(toml::Value::as_str);
    if let Some(value) = admin_token
        && !whole_ref(value)
    {
        return Err(ConfigError::invalid(
            "admin.token",
            "secrets are never written inline; use an environment reference such as \"${ADMIN_TOKEN}\"",
        ));
    }
    let upstreams = tree.get("upstream").and_then(toml::Value::as_array);
    for (i, up) in upstreams.into_iter().flatten().enumerate() {
        let value = up
            .get("auth")
            .and_then(|a| a.get("credential"))
            .and_then(|c| c.get("value"))
            .and_then(toml::Value::as_str);
        if let Some(value) = value
            && !value.contains("${")
        {
            return Err(ConfigError::invalid(
                format!("upstream[{i}].auth.credential.value"),
                "the credential must come from the environment, e.g. \"Bearer ${SHIELD_TOKEN}\"",
            ));
        }
    }
    Ok(())
}

/// Whether `alg` is an HMAC (shared-secret) algorithm.
pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Whether `s` is a valid OAuth scope token (RFC 6749 3.3).
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn http_url(field: &str, value: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|e| ConfigError::invalid(field, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            field,
            format!("`{value}` must be an http:// or https:// URL with a host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            field,
            format!(
                "`{}` must not have a query or fragment",
                super::view::shown_url(value)
            ),
        ));
    }
    Ok(url)
}

fn nonzero(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

fn file_exists(field: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::invalid(
            field,
            format!("file `{}` does not exist or is not a file", path.display()),
        ));
    }
    Ok(())
}

fn header_name(field: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    let parsed = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::invalid(field, format!("`{name}` is not a header name")))?;
    const RESERVED: [&str; 12] = [
        "host",
        "connection",
        "content-length",
        "content-type",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
        "mcp-session-id",
        "mcp-protocol-version",
        "x-request-id",
        "accept",
    ];
    if RESERVED.contains(&parsed.as_str()) {
        return Err(ConfigError::invalid(
            field,
            format!("`{name}` is managed by the sidecar or the protocol and cannot be set"),
        ));
    }
    Ok(parsed)
}

pub(super) fn host_or_origin_patterns(field: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, p) in list.iter().enumerate() {
        if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::invalid(
                format!("{field}[{i}]"),
                format!("`{p}` must be a non-empty value without spaces"),
            ));
        }
    }
    Ok(())
}

impl AuthConfig {
    /// Validates `[auth]`; errors name the field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            http_url("auth.public_url", url)?;
        } else if self.enabled() {
            return Err(ConfigError::invalid(
                "auth.public_url",
                "required with api_keys or jwt: the sidecar's external base URL, e.g. \"https://mcp.example.com\" (tokens' audience and metadata URLs derive from it)",
            ));
        }
        for (i, server) in self.authorization_servers.iter().flatten().enumerate() {
            http_url(&format!("auth.authorization_servers[{i}]"), server)?;
        }
        for (i, scope) in self.scopes_supported.iter().flatten().enumerate() {
            if !is_scope_token(scope) {
                return Err(ConfigError::invalid(
                    format!("auth.scopes_supported[{i}]"),
                    format!(
                        "`{scope}` is not a scope (printable ASCII without spaces, `\"` or `\\`)"
                    ),
                ));
            }
        }
        let mut ids = HashSet::new();
        let mut keys = HashMap::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let field = |f: &str| format!("auth.api_keys[{i}].{f}");
            if !is_label(&key.id) {
                return Err(ConfigError::invalid(
                    field("id"),
                    format!("`{}` must be 1-64 of letters, digits, `_`, `-`", key.id),
                ));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(ConfigError::invalid(
                    field("id"),
                    format!("`{}` is used by another API key", key.id),
                ));
            }
            if key.key.expose().len() < MIN_API_KEY_LEN {
                return Err(ConfigError::invalid(
                    field("key"),
                    format!(
                        "the key must be at least {MIN_API_KEY_LEN} characters (use a random one)"
                    ),
                ));
            }
            if http::HeaderValue::from_str(key.key.expose()).is_err()
                || key.key.expose().contains([' ', '\t'])
            {
                return Err(ConfigError::invalid(
                    field("key"),
                    "the key must be visible ASCII without spaces (it travels in a header)",
                ));
            }
            if let Some(prev) = keys.insert(key.key.expose(), i) {
                return Err(ConfigError::invalid(
                    field("key"),
                    format!("same key as auth.api_keys[{prev}]"),
                ));
            }
            scopes(&field("scopes"), &key.scopes, false)?;
        }
        let mut ids = HashSet::new();
        let mut issuers = HashSet::new();
        for (i, jwt) in self.jwt.iter().enumerate() {
            let field = |f: &str| format!("auth.jwt[{i}].{f}");
            if !is_label(&jwt.id) {
                return Err(ConfigError::invalid(
                    field("id"),
                    format!("`{}` must be 1-64 of letters, digits, `_`, `-`", jwt.id),
                ));
            }
            if !ids.insert(jwt.id.as_str()) {
                return Err(ConfigError::invalid(
                    field("id"),
                    format!("`{}` is used by another issuer", jwt.id),
                ));
            }
            jwt.validate(&field)?;
            if !issuers.insert(jwt.issuer.as_str()) {
                return Err(ConfigError::invalid(
                    field("issuer"),
                    format!("`{}` is configured twice", jwt.issuer),
                ));
            }
        }
        nonzero("auth.token_cache_ttl", self.token_cache_ttl)?;
        let mut headers = HashSet::new();
        for (claim, header) in &self.claim_headers {
            let field = format!("auth.claim_headers.{claim}");
            let name = header_name(&field, header)?;
            if name == http::header::AUTHORIZATION || name.as_str() == "x-api-key" {
                return Err(ConfigError::invalid(
                    field,
                    "client credentials are never forwarded; pick another header name",
                ));
            }
            if !headers.insert(name) {
                return Err(ConfigError::invalid(
                    field,
                    format!("header `{header}` is used for another claim"),
                ));
            }
        }
        if let Some(list) = &self.allowed_hosts {
            host_or_origin_patterns("auth.allowed_hosts", list)?;
        }
        if let Some(list) = &self.allowed_origins {
            host_or_origin_patterns("auth.allowed_origins", list)?;
        }
        Ok(())
    }
}

fn scopes(field: &str, list: &[String], allow_star: bool) -> Result<(), ConfigError> {
    for (j, scope) in list.iter().enumerate() {
        if !(is_scope_token(scope) && (allow_star || scope != "*")) {
            return Err(ConfigError::invalid(
                format!("{field}[{j}]"),
                format!("`{scope}` is not a scope (printable ASCII without spaces, `\"` or `\\`)"),
            ));
        }
    }
    Ok(())
}

impl JwtIssuerConfig {
    fn validate(&self, field: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::invalid(field("issuer"), "must not be empty"));
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                field("algorithms"),
                "list the accepted algorithms, e.g. [\"RS256\"] or [\"ES256\"]",
            ));
        }
        let hmac = self.algorithms.iter().any(|a| is_hmac(*a));
        let asymmetric = self.algorithms.iter().any(|a| !is_hmac(*a));
        match (&self.secret, hmac) {
            (None, true) => {
                return Err(ConfigError::invalid(
                    field("secret"),
                    "HS256/HS384/HS512 need a secret (\"${JWT_SECRET}\")",
                ));
            }
            (Some(_), false) => {
                return Err(ConfigError::invalid(
                    field("secret"),
                    "only used with HS256/HS384/HS512 in algorithms",
                ));
            }
            (Some(s), true) if s.expose().len() < MIN_HMAC_SECRET_LEN => {
                return Err(ConfigError::invalid(
                    field("secret"),
                    format!("must be at least {MIN_HMAC_SECRET_LEN} bytes (RFC 7518 3.2)"),
                ));
            }
            _ => {}
        }
        match (&self.jwks_url, &self.jwks_file, asymmetric) {
            (Some(_), Some(_), _) => {
                return Err(ConfigError::invalid(
                    field("jwks_file"),
                    "give jwks_url or jwks_file, not both",
                ));
            }
            (None, None, true) => {
                return Err(ConfigError::invalid(
                    field("jwks_url"),
                    "RS*/PS*/ES*/EdDSA need signing keys: set jwks_url or jwks_file",
                ));
            }
            (Some(_), None, false) | (None, Some(_), false) => {
                return Err(ConfigError::invalid(
                    field("algorithms"),
                    "a JWKS is configured but only HMAC algorithms are accepted",
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.jwks_url {
            let parsed = http_url(&field("jwks_url"), url)?;
            if self.jwks_ca_file.is_some() && parsed.scheme() != "https" {
                return Err(ConfigError::invalid(
                    field("jwks_ca_file"),
                    "only meaningful with an https:// jwks_url",
                ));
            }
        } else if self.jwks_ca_file.is_some() {
            return Err(ConfigError::invalid(
                field("jwks_ca_file"),
                "only meaningful with jwks_url",
            ));
        }
        if let Some(path) = &self.jwks_file {
            file_exists(&field("jwks_file"), path)?;
        }
        if let Some(path) = &self.jwks_ca_file {
            file_exists(&field("jwks_ca_file"), path)?;
        }
        for (j, aud) in self.audiences.iter().enumerate() {
            if aud.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{}[{j}]", field("audiences")),
                    "must not be empty",
                ));
            }
        }
        nonzero(&field("jwks_refresh"), self.jwks_refresh)?;
        nonzero(
            &field("jwks_min_refresh_interval"),
            self.jwks_min_refresh_interval,
        )?;
        nonzero(&field("jwks_timeout"), self.jwks_timeout)?;
        for (j, claim) in self.required_claims.iter().enumerate() {
            if claim.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{}[{j}]", field("required_claims")),
                    "must not be empty",
                ));
            }
        }
        if self.scope_claim.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                field("scope_claim"),
                "must not be empty",
            ));
        }
        Ok(())
    }
}

impl UpstreamAuthConfig {
    /// Validates one upstream's auth settings; `field` builds `upstream[i].auth.<f>`.
    pub(crate) fn validate(
        &self,
        auth: &AuthConfig,
        field: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if !self.rules.is_empty() && !auth.enabled() {
            return Err(ConfigError::invalid(
                field("rules"),
                "rules need authenticated principals: configure [[auth.api_keys]] or [[auth.jwt]]",
            ));
        }
        if !self.rules.is_empty() && self.public {
            return Err(ConfigError::invalid(
                field("rules"),
                "a public upstream has no principals to apply rules to",
            ));
        }
        if let Some(resource) = &self.resource {
            http_url(&field("resource"), resource)?;
        }
        if let Some(cred) = &self.credential {
            let name = header_name(&field("credential.header"), &cred.header)?;
            if auth
                .claim_headers
                .values()
                .any(|h| h.eq_ignore_ascii_case(name.as_str()))
            {
                return Err(ConfigError::invalid(
                    field("credential.header"),
                    format!("`{}` is also in auth.claim_headers", cred.header),
                ));
            }
            if http::HeaderValue::from_str(cred.value.expose()).is_err() {
                return Err(ConfigError::invalid(
                    field("credential.value"),
                    "not a valid header value (control characters?)",
                ));
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let rf = |f: &str| field(&format!("rules[{i}].{f}"));
            if rule.scopes.is_empty() {
                return Err(ConfigError::invalid(
                    rf("scopes"),
                    "name at least one scope (or \"*\" for every authenticated principal)",
                ));
            }
            scopes(&rf("scopes"), &rule.scopes, true)?;
            if rule.methods.is_empty() && rule.tools.is_empty() {
                return Err(ConfigError::invalid(
                    rf("methods"),
                    "a rule must allow some `methods` or `tools`",
                ));
            }
            for (name, list) in [("methods", &rule.methods), ("tools", &rule.tools)] {
                for (j, p) in list.iter().enumerate() {
                    if p.is_empty() || p.chars().any(char::is_control) {
                        return Err(ConfigError::invalid(
                            rf(&format!("{name}[{j}]")),
                            "must be a non-empty name or glob",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Validates `[auth]` and every `upstream[].auth` (called from `validate`).
    pub(crate) fn validate_auth(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        for (i, up) in self.upstream.iter().enumerate() {
            let field = |f: &str| format!("upstream[{i}].auth.{f}");
            up.auth.validate(&self.auth, &field)?;
        }
        Ok(())
    }
}

impl UpstreamConfig {
    /// This upstream's resource identifier: `auth.resource`, else `public_url` + mount path.
    pub fn resource(&self, auth: &AuthConfig) -> Option<String> {
        if let Some(r) = &self.auth.resource {
            return Some(r.clone());
        }
        let base = auth.public_url.as_deref()?.trim_end_matches('/');
        let mount = self.mount_path();
        Some(if mount == "/" {
            base.to_owned()
        } else {
            format!("{base}{mount}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::DEFAULT_TOKEN_CACHE_SIZE;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, &|name| match name {
            "KEY_A" => Some("key-a-0123456789abcdef".into()),
            "KEY_B" => Some("key-b-0123456789abcdef".into()),
            "SHORT" => Some("short".into()),
            "HS" => Some("0123456789abcdef0123456789abcdef".into()),
            "TOKEN" => Some("t0k3n".into()),
            _ => None,
        })
    }

    const UP: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n";
    const AUTH: &str = "[auth]\npublic_url = \"https://mcp.example.com\"\n\
        [[auth.api_keys]]\nid = \"ci\"\nkey = \"${KEY_A}\"\nscopes = [\"tools:read\"]\n";

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_auth_loads_with_defaults() {
        let c = load(&format!("{AUTH}{UP}")).unwrap();
        assert!(c.auth.enabled());
        assert_eq!(c.auth.token_cache_size, DEFAULT_TOKEN_CACHE_SIZE);
        assert_eq!(c.auth.api_keys[0].key.expose(), "key-a-0123456789abcdef");
        assert_eq!(
            c.upstream[0].resource(&c.auth).as_deref(),
            Some("https://mcp.example.com/mcp")
        );
        assert!(
            !format!("{c:?}").contains("key-a-0123"),
            "secrets leak into Debug"
        );
    }

    #[test]
    fn inline_secrets_are_refused() {
        let e = err(&format!(
            "[auth]\npublic_url = \"https://x\"\n[[auth.api_keys]]\nid = \"ci\"\nkey = \"inline-key-0123456789\"\n{UP}"
        ));
        assert!(e.starts_with("auth.api_keys[0].key:"), "{e}");
        let e = err(&format!(
            "{UP}[upstream.auth]\ncredential = {{ header = \"Authorization\", value = \"Bearer x\" }}\n"
        ));
        assert!(e.starts_with("upstream[0].auth.credential.value:"), "{e}");
        let e = err(&format!(
            "[auth]\npublic_url = \"https://x\"\n[[auth.jwt]]\nid = \"i\"\nissuer = \"https://i\"\nalgorithms = [\"HS256\"]\nsecret = \"abc${{HS}}\"\n{UP}"
        ));
        assert!(e.starts_with("auth.jwt[0].secret:"), "{e}");
    }

    #[test]
    fn fields_are_named() {
        let cases = [
            (
                "[auth]\n[[auth.api_keys]]\nid = \"ci\"\nkey = \"${KEY_A}\"\n".to_owned(),
                "auth.public_url:",
            ),
            (
                format!("{AUTH}[[auth.api_keys]]\nid = \"ci\"\nkey = \"${{KEY_B}}\"\n"),
                "auth.api_keys[1].id:",
            ),
            (
                format!("{AUTH}[[auth.api_keys]]\nid = \"b\"\nkey = \"${{KEY_A}}\"\n"),
                "auth.api_keys[1].key:",
            ),
            (
                format!("{AUTH}[[auth.api_keys]]\nid = \"b\"\nkey = \"${{SHORT}}\"\n"),
                "auth.api_keys[1].key:",
            ),
            (
                format!(
                    "{AUTH}[[auth.jwt]]\nid = \"i\"\nissuer = \"https://i\"\nalgorithms = [\"RS256\"]\n"
                ),
                "auth.jwt[0].jwks_url:",
            ),
            (
                format!(
                    "{AUTH}[[auth.jwt]]\nid = \"i\"\nissuer = \"https://i\"\nalgorithms = [\"HS256\"]\n"
                ),
                "auth.jwt[0].secret:",
            ),
            (
                format!(
                    "{AUTH}[[auth.jwt]]\nid = \"i\"\nissuer = \"https://i\"\nalgorithms = [\"RS256\"]\njwks_file = \"/nope.json\"\n"
                ),
                "auth.jwt[0].jwks_file:",
            ),
            (
                format!("{AUTH}[auth.claim_headers]\nsub = \"Authorization\"\n"),
                "auth.claim_headers.sub:",
            ),
            (
                format!("{AUTH}{UP}[[upstream.auth.rules]]\nscopes = [\"a b\"]\ntools = [\"x\"]\n"),
                "upstream[0].auth.rules[0].scopes[0]:",
            ),
            (
                format!("{AUTH}{UP}[[upstream.auth.rules]]\nscopes = [\"a\"]\n"),
                "upstream[0].auth.rules[0].methods:",
            ),
            (
                format!("{UP}[[upstream.auth.rules]]\nscopes = [\"a\"]\ntools = [\"*\"]\n"),
                "upstream[0].auth.rules:",
            ),
        ];
        for (text, prefix) in cases {
            let text = if text.contains("[[upstream]]") {
                text
            } else {
                format!("{text}{UP}")
            };
            let e = err(&text);
            assert!(e.starts_with(prefix), "expected {prefix}, got {e}");
        }
    }

    #[test]
    fn unknown_algorithm_is_named() {
        let e = err(&format!(
            "{AUTH}[[auth.jwt]]\nid = \"i\"\nissuer = \"https://i\"\nalgorithms = [\"none\"]\n{UP}"
        ));
        assert!(e.contains("none") && e.contains("algorithms"), "{e}");
    }

    #[test]
    fn upstream_auth_section_loads() {
        let c = load(&format!(
            "{AUTH}{UP}[upstream.auth]\ncredential = {{ header = \"Authorization\", value = \"Bearer ${{TOKEN}}\" }}\n\
             [[upstream.auth.rules]]\nscopes = [\"crawl\"]\nmethods = [\"tools/list\"]\ntools = [\"crawl_*\"]\n"
        ))
        .unwrap();
        let a = &c.upstream[0].auth;
        assert_eq!(
            a.credential.as_ref().unwrap().value.expose(),
            "Bearer t0k3n"
        );
        assert_eq!(a.rules[0].tools, vec!["crawl_*"]);
    }
}
