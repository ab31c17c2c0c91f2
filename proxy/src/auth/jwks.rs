//! Signing keys of one issuer, from a JWKS URL or file: parsed leniently (a key this sidecar
//! cannot use is skipped, not fatal), used for `jwks_refresh`, refetched early when a token names
//! an unknown `kid` (at most every `jwks_min_refresh_interval`), and kept while a refetch fails
//! (`mcp_sidecar_jwks_stale` says so).
//!
//! Refreshes are single-flight: concurrent requests that need new keys wait for one fetch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

use super::fetch::Fetcher;
use super::metrics::AuthMetrics;
use crate::config::{ConfigError, JwtIssuerConfig};

/// Smallest RSA modulus accepted: 2048 bits (NIST SP 800-131A; RFC 7518 3.3 requires it).
pub const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The kind of key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
}

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// `kid`, if the JWKS gave one.
    pub kid: Option<String>,
    /// Key type.
    pub kind: KeyKind,
    /// `alg`, if the JWKS pinned one.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let kind_ok = match self.kind {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        };
        kind_ok && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// Parses a JWKS document, keeping the signature keys this sidecar can use. Fails only when the
/// document is not a JWKS at all.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::with_capacity(doc.keys.len());
    for value in doc.keys {
        match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => match usable(&jwk) {
                Ok(key) => out.push(key),
                Err(why) => tracing::debug!(kid = ?jwk.common.key_id, why, "JWKS key skipped"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "JWKS entry skipped: not a key this sidecar knows")
            }
        }
    }
    Ok(out)
}

fn usable(jwk: &Jwk) -> Result<VerifyKey, &'static str> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("not a signature key (`use`)");
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signature_alg(*a).ok_or("`alg` is not a signature algorithm")?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = decode_b64(&p.n).ok_or("bad `n`")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA key shorter than 2048 bits");
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err("unsupported curve"),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported curve"),
        },
        // Shared secrets never come from a JWKS: HMAC keys are configured (`secret`) only.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted"),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key parameters")?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key,
    })
}

fn signature_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Where the keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// A local file, re-read on refresh.
    File(PathBuf),
    /// An HTTP(S) endpoint.
    Url(Box<Fetcher>),
}

impl KeySource {
    async fn load(&self) -> Result<Vec<VerifyKey>, String> {
        let bytes = match self {
            Self::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            Self::Url(fetcher) => fetcher.get().await?.to_vec(),
        };
        parse_jwks(&bytes)
    }
}

/// Why no key could be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupError {
    /// The keys are loaded but none has the token's `kid`.
    UnknownKid,
    /// No keys could ever be loaded.
    Unavailable,
}

#[derive(Debug, Default)]
struct KeyState {
    keys: Arc<Vec<VerifyKey>>,
    /// Last successful load.
    loaded_at: Option<Instant>,
    /// Last attempt, successful or not.
    attempted_at: Option<Instant>,
    /// Bumped by every attempt, so a waiter can tell that someone else refreshed meanwhile.
    attempts: u64,
}

/// The keys of one issuer.
#[derive(Debug)]
pub struct KeyStore {
    issuer_id: String,
    source: KeySource,
    refresh_every: Duration,
    min_refresh: Duration,
    timeout: Duration,
    state: RwLock<KeyState>,
    refreshing: tokio::sync::Mutex<()>,
    /// A background refresh is spawned and not finished: do not spawn another.
    background: AtomicBool,
    metrics: AuthMetrics,
    /// What a config reload compares to keep this store (a `jwks_url` without a CA file, and
    /// its refresh settings); `None`: never kept (a file is read again, as is a CA file).
    kept_as: Option<String>,
}

impl KeyStore {
    /// A store that loads from `source` on first use.
    pub fn new(
        issuer_id: &str,
        source: KeySource,
        refresh_every: Duration,
        min_refresh: Duration,
        timeout: Duration,
        metrics: AuthMetrics,
    ) -> Self {
        metrics.jwks_stale.with_label_values(&[issuer_id]).set(0);
        metrics.jwks_keys.with_label_values(&[issuer_id]).set(0);
        Self {
            issuer_id: issuer_id.to_owned(),
            source,
            refresh_every,
            min_refresh,
            timeout,
            state: RwLock::new(KeyState::default()),
            refreshing: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
            metrics,
            kept_as: None,
        }
    }

    /// The store of one `[[auth.jwt]]` issuer (`field` names its fields), `None` when it has
    /// neither `jwks_url` nor `jwks_file` (HMAC only). A `jwks_url` (with its `jwks_ca_file`) is
    /// fetched on first use; a `jwks_file` is loaded now, so a broken or keyless file stops the
    /// start.
    ///
    /// After a config reload, `previous` (the issuer's store before it) is kept when its
    /// `jwks_url` and refresh settings are unchanged: its keys stay, served stale through an
    /// outage of the authorization server as before the reload, and nothing is fetched again.
    pub async fn from_config(
        config: &JwtIssuerConfig,
        field: &(dyn Fn(&str) -> String + Sync),
        metrics: &AuthMetrics,
        previous: Option<&Arc<Self>>,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let kept_as = config
            .jwks_url
            .as_ref()
            .filter(|_| config.jwks_ca_file.is_none())
            .map(|url| {
                serde_json::json!({
                    "url": url,
                    "refresh": config.jwks_refresh,
                    "min_refresh": config.jwks_min_refresh_interval,
                    "timeout": config.jwks_timeout,
                })
                .to_string()
            });
        if let (Some(kept_as), Some(previous)) = (&kept_as, previous)
            && previous.kept_as.as_ref() == Some(kept_as)
        {
            return Ok(Some(previous.clone()));
        }
        let source = match (&config.jwks_url, &config.jwks_file) {
            (Some(url), _) => {
                let ca = match &config.jwks_ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        ConfigError::invalid(
                            field("jwks_ca_file"),
                            format!("{}: {e}", path.display()),
                        )
                    })?),
                    None => None,
                };
                let fetcher = Fetcher::new(url, ca.as_deref())
                    .map_err(|e| ConfigError::invalid(field("jwks_url"), e))?;
                KeySource::Url(Box::new(fetcher))
            }
            (None, Some(path)) => KeySource::File(path.clone()),
            (None, None) => return Ok(None),
        };
        let is_file = matches!(source, KeySource::File(_));
        let mut store = Self::new(
            &config.id,
            source,
            config.jwks_refresh,
            config.jwks_min_refresh_interval,
            config.jwks_timeout,
            metrics.clone(),
        );
        store.kept_as = kept_as;
        let store = Arc::new(store);
        if is_file {
            let n = store
                .load_now()
                .await
                .map_err(|e| ConfigError::invalid(field("jwks_file"), e))?;
            if n == 0 {
                return Err(ConfigError::invalid(
                    field("jwks_file"),
                    "holds no usable signing key (RSA >= 2048 bits, EC P-256/P-384, Ed25519)",
                ));
            }
        }
        Ok(Some(store))
    }

    /// Loads the keys now (start-up check for files); returns the error text on failure.
    pub async fn load_now(&self) -> Result<usize, String> {
        self.refresh(None).await;
        let state = self.read();
        match state.loaded_at {
            Some(_) => Ok(state.keys.len()),
            None => Err(format!(
                "no signing keys could be loaded for issuer `{}`",
                self.issuer_id
            )),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn may_refetch(&self, state: &KeyState) -> bool {
        state
            .attempted_at
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// The current keys, holding `kid` when one is given: loads them on first use, refreshes them
    /// in the background when older than `jwks_refresh`, refetches early for an unknown `kid`.
    pub async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
    ) -> Result<Arc<Vec<VerifyKey>>, KeyLookupError> {
        let (keys, loaded_at, may_refetch, attempts) = {
            let s = self.read();
            (
                s.keys.clone(),
                s.loaded_at,
                self.may_refetch(&s),
                s.attempts,
            )
        };
        let has_kid = |keys: &[VerifyKey]| {
            kid.is_none_or(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        };
        match loaded_at {
            None => {
                if may_refetch {
                    self.refresh(Some(attempts)).await;
                }
                let s = self.read();
                if s.loaded_at.is_none() {
                    return Err(KeyLookupError::Unavailable);
                }
                return if has_kid(&s.keys) {
                    Ok(s.keys.clone())
                } else {
                    Err(KeyLookupError::UnknownKid)
                };
            }
            Some(at)
                if at.elapsed() >= self.refresh_every
                    && may_refetch
                    && !self.background.swap(true, Ordering::AcqRel) =>
            {
                // Stale-while-revalidate: this request uses the keys it has.
                let this = self.clone();
                tokio::spawn(async move {
                    this.refresh(Some(attempts)).await;
                    this.background.store(false, Ordering::Release);
                });
            }
            Some(_) => {}
        }
        if has_kid(&keys) {
            return Ok(keys);
        }
        if !may_refetch {
            return Err(KeyLookupError::UnknownKid);
        }
        self.refresh(Some(attempts)).await;
        let s = self.read();
        if has_kid(&s.keys) {
            Ok(s.keys.clone())
        } else {
            Err(KeyLookupError::UnknownKid)
        }
    }

    /// Fetches the keys once. `seen_attempts` is the attempt count the caller saw; if another
    /// task attempted a refresh since, this returns without fetching again.
    async fn refresh(&self, seen_attempts: Option<u64>) {
        let _single_flight = self.refreshing.lock().await;
        if let Some(seen) = seen_attempts
            && self.read().attempts != seen
        {
            return;
        }
        let result = match tokio::time::timeout(self.timeout, self.source.load()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.attempts += 1;
        state.attempted_at = Some(Instant::now());
        let id = self.issuer_id.as_str();
        match result {
            Ok(keys) => {
                tracing::debug!(issuer = id, keys = keys.len(), "signing keys loaded");
                self.metrics
                    .jwks_refresh
                    .with_label_values(&[id, "ok"])
                    .inc();
                self.metrics.jwks_stale.with_label_values(&[id]).set(0);
                self.metrics
                    .jwks_keys
                    .with_label_values(&[id])
                    .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
                state.keys = Arc::new(keys);
                state.loaded_at = Some(Instant::now());
            }
            Err(error) => {
                let stale = state.loaded_at.is_some();
                tracing::warn!(issuer = id, %error, serving_stale_keys = stale, "JWKS refresh failed");
                self.metrics
                    .jwks_refresh
                    .with_label_values(&[id, "error"])
                    .inc();
                if stale {
                    self.metrics.jwks_stale.with_label_values(&[id]).set(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn jwks_parsing_keeps_usable_signature_keys() {
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "r-enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "short", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, vec!["r", "e"]);
        assert!(keys[0].fits(Algorithm::PS256) && keys[0].fits(Algorithm::RS512));
        assert!(!keys[0].fits(Algorithm::ES256) && !keys[0].fits(Algorithm::HS256));
        assert!(keys[1].fits(Algorithm::ES256) && !keys[1].fits(Algorithm::ES384));
        assert!(parse_jwks(b"{\"nokeys\":1}").is_err());
        assert!(parse_jwks(b"garbage").is_err());
    }
}
