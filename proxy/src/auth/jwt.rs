//! JWT validation: issuer by `iss`, algorithm pinned per issuer and per key, signature, then the
//! claims (`iss` exact, `aud` present, `exp`/`nbf`/`iat` against a clock with leeway, required
//! claims), producing a cached [`Principal`].
//!
//! The library checks only the signature and the algorithm allow-list; every claim check is done
//! here, against [`Clock`], so tests control time and each failure has its own outcome label. The
//! audience is checked per request against the upstream being called ([`Principal::audience_ok`]),
//! because one sidecar can front several resources.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::apikey::CredentialDigest;
use super::cache::TokenCache;
use super::crypto;
use super::jwks::{KeyLookupError, KeyStore};
use super::metrics::AuthMetrics;
use super::principal::{Principal, Source, claim_header_value};
use crate::config::auth::is_hmac;
use crate::config::{AuthConfig, ConfigError, JwtIssuerConfig};

/// Unix seconds now; injectable so tests control time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWS compact token, or unparseable header/claims.
    Malformed,
    /// `alg` not accepted for the issuer (includes `none`, which does not even parse).
    AlgorithmNotAllowed,
    /// `iss` missing or not a configured issuer.
    WrongIssuer,
    /// No key with the token's `kid`.
    UnknownKey,
    /// The issuer's keys could not be loaded.
    KeyUnavailable,
    /// The `kid` names a key that cannot verify this `alg`.
    WrongKeyType,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// A required claim is missing or malformed.
    MissingClaim(String),
}

impl JwtError {
    /// Metric outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::WrongIssuer => "wrong_issuer",
            Self::UnknownKey => "unknown_key",
            Self::KeyUnavailable => "key_unavailable",
            Self::WrongKeyType => "wrong_key_type",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingClaim(_) => "missing_claim",
        }
    }

    /// `error_description` for `WWW-Authenticate` and the JSON-RPC message.
    pub fn description(&self) -> String {
        match self {
            Self::Malformed => "the token is malformed".into(),
            Self::AlgorithmNotAllowed => "the token's algorithm is not accepted".into(),
            Self::WrongIssuer => "the token's issuer is not trusted".into(),
            Self::UnknownKey => "the token's signing key is unknown".into(),
            Self::KeyUnavailable => "signing keys are unavailable; try again later".into(),
            Self::WrongKeyType => "the token's key does not fit its algorithm".into(),
            Self::BadSignature => "the token's signature is invalid".into(),
            Self::Expired => "the token has expired".into(),
            Self::NotYetValid => "the token is not valid yet".into(),
            Self::MissingClaim(c) => format!("the token's `{c}` claim is missing or malformed"),
        }
    }
}

/// One trusted issuer, compiled from config.
#[derive(Debug)]
pub struct JwtIssuer {
    /// Config id (metric label, principal source).
    pub id: String,
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Extra accepted audiences.
    pub extra_audiences: Vec<String>,
    /// Asymmetric keys.
    pub keys: Option<Arc<KeyStore>>,
    /// HMAC secret.
    pub hmac: Option<DecodingKey>,
    /// Leeway on time claims, seconds.
    pub leeway: u64,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Claim holding the scopes (`None`: `scope`, then `scp`).
    pub scope_claim: Option<String>,
}

impl JwtIssuer {
    /// `auth.jwt[i]` compiled: its key store (a `jwks_file` loaded now) and, when one of its
    /// algorithms is HMAC, its secret.
    /// `previous`: the issuer of the same id before a config reload (its key store may be kept).
    pub async fn from_config(
        i: usize,
        config: &JwtIssuerConfig,
        metrics: &AuthMetrics,
        previous: Option<&JwtIssuer>,
    ) -> Result<Self, ConfigError> {
        let field = |f: &str| format!("auth.jwt[{i}].{f}");
        let kept = previous.and_then(|p| p.keys.as_ref());
        let keys = KeyStore::from_config(config, &field, metrics, kept).await?;
        let hmac = config
            .secret
            .as_ref()
            .filter(|_| config.algorithms.iter().any(|a| is_hmac(*a)))
            .map(|s| DecodingKey::from_secret(s.expose().as_bytes()));
        Ok(Self {
            id: config.id.clone(),
            issuer: config.issuer.clone(),
            algorithms: config.algorithms.clone(),
            extra_audiences: config.audiences.clone(),
            keys,
            hmac,
            leeway: config.leeway.as_secs(),
            required_claims: config.required_claims.clone(),
            scope_claim: config.scope_claim.clone(),
        })
    }
}

/// Validates tokens for all issuers, with the cache in front.
pub struct JwtValidator {
    issuers: Vec<JwtIssuer>,
    cache: TokenCache,
    cache_ttl: u64,
    clock: Clock,
    claim_headers: Vec<(String, http::HeaderName)>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuers", &self.issuers)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Whether a validated token came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache.
    Hit,
    /// Verified now.
    Miss,
}

impl JwtValidator {
    /// The validator of `auth.jwt`, `None` when no issuer is configured. Installs the crypto
    /// provider first; issuers are compiled in order, so the first broken one names the error.
    /// `claim_headers` (claim, header) are the claims forwarded from a validated token.
    /// `previous`: the validator a config reload replaces (issuers' key stores may be kept).
    pub async fn from_config(
        auth: &AuthConfig,
        clock: Clock,
        claim_headers: &[(String, http::HeaderName)],
        metrics: &AuthMetrics,
        previous: Option<&JwtValidator>,
    ) -> Result<Option<Self>, ConfigError> {
        if auth.jwt.is_empty() {
            return Ok(None);
        }
        if !crypto::install() {
            tracing::debug!("a JWT crypto provider was already installed; keeping it");
        }
        let mut issuers = Vec::with_capacity(auth.jwt.len());
        for (i, config) in auth.jwt.iter().enumerate() {
            let before = previous.and_then(|p| p.issuers.iter().find(|b| b.id == config.id));
            issuers.push(JwtIssuer::from_config(i, config, metrics, before).await?);
        }
        Ok(Some(Self::new(
            issuers,
            auth.token_cache_size,
            auth.token_cache_ttl,
            clock,
            claim_headers.to_vec(),
        )))
    }

    /// The issuer `id`.
    pub fn issuer(&self, id: &str) -> Option<&JwtIssuer> {
        self.issuers.iter().find(|i| i.id == id)
    }

    /// A validator over `issuers`.
    pub fn new(
        issuers: Vec<JwtIssuer>,
        cache_size: usize,
        cache_ttl: std::time::Duration,
        clock: Clock,
        claim_headers: Vec<(String, http::HeaderName)>,
    ) -> Self {
        Self {
            issuers,
            cache: TokenCache::new(cache_size),
            cache_ttl: cache_ttl.as_secs().max(1),
            clock,
            claim_headers,
        }
    }

    /// The issuers.
    pub fn issuers(&self) -> &[JwtIssuer] {
        &self.issuers
    }

    /// Validates `token` (whose SHA-256 is `digest`), from the cache when possible.
    pub async fn validate(
        &self,
        token: &str,
        digest: &CredentialDigest,
    ) -> Result<(Arc<Principal>, CacheResult), JwtError> {
        let now = (self.clock)();
        if let Some(p) = self.cache.get(digest, now) {
            return Ok((p, CacheResult::Hit));
        }
        // Boxed: verification (and a possible JWKS fetch) is the rare, slow path; inline, its
        // state would sit in every request's future, which is moved and copied on every request.
        let (principal, valid_until) = Box::pin(self.verify(token, now)).await?;
        let principal = Arc::new(principal);
        let until = valid_until.min(now.saturating_add(self.cache_ttl));
        self.cache.insert(*digest, principal.clone(), until, now);
        Ok((principal, CacheResult::Miss))
    }

    /// Full verification; returns the principal and the unix time it stops being valid.
    async fn verify(&self, token: &str, now: u64) -> Result<(Principal, u64), JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An `alg` the library does not know (`none`, `HS1`): refused as an algorithm.
            ErrorKind::Json(err) if err.to_string().contains("unknown variant") => {
                JwtError::AlgorithmNotAllowed
            }
            _ => JwtError::Malformed,
        })?;
        let issuer = self.issuer_for(token)?;
        let alg = header.alg;
        if !issuer.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;

        let claims: Map<String, Value> = if is_hmac(alg) {
            let key = issuer.hmac.as_ref().ok_or(JwtError::AlgorithmNotAllowed)?;
            decode(token, key, &validation)?
        } else {
            let store = issuer.keys.as_ref().ok_or(JwtError::AlgorithmNotAllowed)?;
            let kid = header.kid.as_deref();
            let keys = store.keys_for(kid).await.map_err(|e| match e {
                KeyLookupError::UnknownKid => JwtError::UnknownKey,
                KeyLookupError::Unavailable => JwtError::KeyUnavailable,
            })?;
            let named: Vec<_> = keys
                .iter()
                .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
                .collect();
            let fitting: Vec<_> = named.iter().filter(|k| k.fits(alg)).collect();
            if fitting.is_empty() {
                return Err(if named.is_empty() {
                    JwtError::UnknownKey
                } else {
                    JwtError::WrongKeyType
                });
            }
            // With a `kid` there is one candidate; without, every key that fits is tried.
            let mut last = JwtError::BadSignature;
            let mut verified = None;
            for k in fitting {
                match decode(token, &k.key, &validation) {
                    Ok(c) => {
                        verified = Some(c);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            verified.ok_or(last)?
        };
        self.check_claims(issuer, claims, now)
    }

    fn issuer_for(&self, token: &str) -> Result<&JwtIssuer, JwtError> {
        if let [only] = self.issuers.as_slice() {
            return Ok(only);
        }
        #[derive(serde::Deserialize)]
        struct Peek {
            iss: Option<String>,
        }
        // Unverified peek only to pick the issuer whose keys verify the token; `iss` is checked
        // again after verification.
        let peek = jsonwebtoken::dangerous::insecure_decode::<Peek>(token)
            .map_err(|_| JwtError::Malformed)?;
        let iss = peek.claims.iss.ok_or(JwtError::WrongIssuer)?;
        self.issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(JwtError::WrongIssuer)
    }

    fn check_claims(
        &self,
        issuer: &JwtIssuer,
        claims: Map<String, Value>,
        now: u64,
    ) -> Result<(Principal, u64), JwtError> {
        let leeway = issuer.leeway;
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
            return Err(JwtError::WrongIssuer);
        }
        let time = |name: &str| -> Result<Option<u64>, JwtError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| JwtError::MissingClaim(name.to_owned())),
            }
        };
        let exp = time("exp")?.ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        for name in ["nbf", "iat"] {
            if time(name)?.is_some_and(|t| t > now.saturating_add(leeway)) {
                return Err(JwtError::NotYetValid);
            }
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if audiences.is_empty() {
            return Err(JwtError::MissingClaim("aud".into()));
        }
        for c in &issuer.required_claims {
            if claims.get(c).is_none_or(Value::is_null) {
                return Err(JwtError::MissingClaim(c.clone()));
            }
        }
        let scopes = scopes(&claims, issuer.scope_claim.as_deref());
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let claim_headers = self
            .claim_headers
            .iter()
            .filter_map(|(claim, header)| {
                let value = if claim == "scope" {
                    claim_header_value(&Value::String(scopes.join(" ")))
                } else {
                    claims.get(claim).and_then(claim_header_value)
                };
                value.map(|v| (header.clone(), v))
            })
            .collect();
        let audience_accepted_everywhere = audiences
            .iter()
            .any(|a| issuer.extra_audiences.iter().any(|x| x == a));
        let principal = Principal {
            subject,
            source: Source::Jwt(issuer.id.clone()),
            scopes,
            audiences,
            audience_accepted_everywhere,
            claim_headers,
        };
        Ok((principal, exp.saturating_add(leeway)))
    }
}

fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, JwtError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                JwtError::AlgorithmNotAllowed
            }
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => JwtError::WrongKeyType,
            _ => JwtError::Malformed,
        })
}

/// Scopes from `claim` (space-separated string or string array), or from `scope` then `scp`.
fn scopes(claims: &Map<String, Value>, claim: Option<&str>) -> Vec<String> {
    let read = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    match claim {
        Some(c) => claims.get(c).map(read).unwrap_or_default(),
        None => claims
            .get("scope")
            .or_else(|| claims.get("scp"))
            .map(read)
            .unwrap_or_default(),
    }
}
