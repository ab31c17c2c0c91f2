//! Static API keys: kept only as SHA-256 digests, compared in constant time.

use std::sync::Arc;

use http::HeaderName;
use subtle::ConstantTimeEq;

use super::principal::{ClaimHeaders, Principal, Source, claim_header_value};
use crate::config::ApiKeyConfig;

/// SHA-256 of a presented credential. Computed once per request: it is also the key of the
/// validated-token cache, so raw tokens are never kept in memory.
pub type CredentialDigest = [u8; 32];

/// Digest of `credential` (ring's SHA-256: assembly with SHA extensions where the CPU has them).
pub fn digest(credential: &str) -> CredentialDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, credential.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: Vec<(CredentialDigest, Arc<Principal>)>,
}

impl ApiKeys {
    /// From `auth.api_keys`. Of `claim_headers` (claim, header), an API key has only `sub` (its
    /// id) and `scope` (its scopes, space-separated); the other claims are not sent for it.
    pub fn from_config(config: &[ApiKeyConfig], claim_headers: &[(String, HeaderName)]) -> Self {
        let rendered = |id: &str, scopes: &[String]| {
            claim_headers
                .iter()
                .filter_map(|(claim, name)| {
                    let value = match claim.as_str() {
                        "sub" => claim_header_value(&serde_json::json!(id)),
                        "scope" => claim_header_value(&serde_json::json!(scopes.join(" "))),
                        _ => None,
                    };
                    value.map(|v| (name.clone(), v))
                })
                .collect()
        };
        Self::new(config, &rendered)
    }

    /// Hashes the configured keys; `claim_headers` renders `sub`/`scope` for each principal.
    pub fn new(
        config: &[ApiKeyConfig],
        claim_headers: &dyn Fn(&str, &[String]) -> ClaimHeaders,
    ) -> Self {
        let keys = config
            .iter()
            .map(|k| {
                let principal = Principal {
                    subject: k.id.clone(),
                    source: Source::ApiKey(k.id.clone()),
                    scopes: k.scopes.clone(),
                    audiences: Vec::new(),
                    audience_accepted_everywhere: true,
                    claim_headers: claim_headers(&k.id, &k.scopes),
                };
                (digest(k.key.expose()), Arc::new(principal))
            })
            .collect();
        Self { keys }
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of the key with this digest. Every configured digest is compared, in
    /// constant time, whatever matches, so timing reveals neither which key nor how much of one
    /// matched.
    pub fn lookup(&self, presented: &CredentialDigest) -> Option<Arc<Principal>> {
        let mut found = None;
        for (digest, principal) in &self.keys {
            if bool::from(digest.ct_eq(presented)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn keys_match_by_digest_only() {
        let keys = ApiKeys::new(
            &[
                ApiKeyConfig {
                    id: "a".into(),
                    key: Secret("key-a-0123456789abcdef".into()),
                    scopes: vec!["tools:read".into()],
                },
                ApiKeyConfig {
                    id: "b".into(),
                    key: Secret("key-b-0123456789abcdef".into()),
                    scopes: vec![],
                },
            ],
            &|_, _| Vec::new(),
        );
        let p = keys.lookup(&digest("key-b-0123456789abcdef")).unwrap();
        assert_eq!(p.subject, "b");
        assert!(keys.lookup(&digest("key-b-0123456789abcdeF")).is_none());
        assert!(keys.lookup(&digest("")).is_none());
        assert!(!format!("{keys:?}").contains("key-a"));
    }
}
