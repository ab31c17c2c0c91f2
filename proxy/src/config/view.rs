//! The running config as the admin listener shows it (`GET /config`): the effective values
//! (defaults filled in, `${ENV}` references resolved) with every secret redacted, and the SHA-256
//! of that form, canonical (keys sorted, no whitespace), so two instances running the same
//! config show the same hash.
//!
//! Redacted: every [`Secret`](super::Secret) (API keys, JWT HMAC secrets, the backends'
//! credentials, the admin token), a password in a URL's userinfo, and the values of URL query
//! parameters whose names say they carry one (`key`, `token`, `secret`, ...: legacy servers take
//! credentials there). Secrets are not part of the hash: rotating one does not change it, and the
//! hash, published as a metric label, says nothing about them.

use serde_json::Value;

use super::{Config, ConfigError};

/// What a secret is shown as: never its text.
pub(super) const REDACTED: &str = "[redacted]";

/// Parts of a query parameter's name that make its value a secret.
const SECRET_PARAM_WORDS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "sig",
    "credential",
    "session",
];

/// The config, redacted, and its hash.
#[derive(Debug, Clone)]
pub struct ConfigView {
    /// The effective config, secrets redacted.
    pub config: Value,
    /// Lower-case hex SHA-256 of `config`'s canonical form.
    pub hash: String,
}

impl ConfigView {
    /// The `GET /config` document: `{"hash": ..., "config": {...}}`.
    pub fn document(&self) -> Value {
        serde_json::json!({ "hash": self.hash, "config": self.config })
    }
}

/// Whether `a` and `b` serialize the same: how a config reload compares settings (as their
/// effective values, defaults filled in). Secrets serialize redacted: use it only on sections
/// without any.
pub fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Config {
    /// This config as [`ConfigView`] shows it.
    pub fn view(&self) -> Result<ConfigView, ConfigError> {
        let mut config = serde_json::to_value(self)
            .map_err(|e| ConfigError::invalid("config", format!("cannot be shown: {e}")))?;
        redact_urls(&mut config);
        let mut canonical = String::new();
        write_canonical(&config, &mut canonical);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(ConfigView { config, hash })
    }
}

/// Redacts URL passwords and secret query parameters in every string of `value`.
fn redact_urls(value: &mut Value) {
    match value {
        Value::String(s) if s.contains("://") => {
            if let Some(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        Value::Object(map) => map.values_mut().for_each(redact_urls),
        _ => {}
    }
}

/// `text` as an error message may show it: its secrets redacted (an error about a URL must not
/// print the password or token an `${ENV}` reference put in it).
pub(super) fn shown_url(text: &str) -> String {
    redact_url(text).unwrap_or_else(|| text.to_owned())
}

/// `text` with its secrets redacted, or `None` when it is not a URL or has none (then it is
/// shown as written, not as the URL parser would normalise it).
fn redact_url(text: &str) -> Option<String> {
    let mut url = url::Url::parse(text).ok()?;
    let mut changed = false;
    if url.password().is_some() {
        url.set_password(Some(REDACTED)).ok()?;
        changed = true;
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let name = k.to_ascii_lowercase();
                if SECRET_PARAM_WORDS.iter().any(|w| name.contains(w)) {
                    changed = true;
                    (k.into_owned(), REDACTED.to_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        if changed {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    changed.then(|| url.to_string())
}

/// Writes `value` as JSON with object keys sorted and no whitespace.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
