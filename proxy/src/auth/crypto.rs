//! JWT signature verification on `ring` (already linked for rustls) instead of the pure-Rust
//! RustCrypto backend: much faster per verification (BENCHMARKS.md, "Figures behind code
//! decisions"), constant-time, and the same audited code that verifies TLS handshakes. Signing and
//! JWK helpers (used only by tests and the demo through the fixtures) stay on the RustCrypto
//! provider.
//!
//! Installed process-wide by [`install`]; if something in the process already used jsonwebtoken
//! before (a test minting tokens first), the RustCrypto provider stays in place, which is equally
//! correct, only slower on cache misses.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

enum Key {
    /// RSA from a JWK's `n` and `e`.
    RsaComponents {
        n: Vec<u8>,
        e: Vec<u8>,
        params: &'static sig::RsaParameters,
    },
    /// Anything `ring` parses itself: RSA PKCS#1 DER, EC uncompressed points, Ed25519 keys.
    Unparsed(UnparsedPublicKey<Vec<u8>>),
    /// HMAC secret.
    Hmac(ring::hmac::Key),
}

struct RingVerifier {
    alg: Algorithm,
    key: Key,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let ok = match &self.key {
            Key::RsaComponents { n, e, params } => RsaPublicKeyComponents { n, e }
                .verify(params, msg, signature)
                .is_ok(),
            Key::Unparsed(key) => key.verify(msg, signature).is_ok(),
            // Constant-time comparison of the recomputed tag.
            Key::Hmac(key) => ring::hmac::verify(key, msg, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(SignatureError::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    use Algorithm::*;
    let family = key.family();
    let expected = match alg {
        HS256 | HS384 | HS512 => AlgorithmFamily::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => AlgorithmFamily::Rsa,
        ES256 | ES384 => AlgorithmFamily::Ec,
        EdDSA => AlgorithmFamily::Ed,
    };
    // The key's family decides what it may verify: an RSA key is never an HMAC secret.
    if family != expected {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let rsa_params: Option<&'static sig::RsaParameters> = match alg {
        RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    };
    let key = match (alg, key.kind()) {
        (HS256 | HS384 | HS512, DecodingKeyKind::SecretOrDer(secret)) => {
            let algorithm = match alg {
                HS256 => ring::hmac::HMAC_SHA256,
                HS384 => ring::hmac::HMAC_SHA384,
                _ => ring::hmac::HMAC_SHA512,
            };
            Key::Hmac(ring::hmac::Key::new(algorithm, secret))
        }
        (_, DecodingKeyKind::RsaModulusExponent { n, e }) => Key::RsaComponents {
            n: n.clone(),
            e: e.clone(),
            params: rsa_params.ok_or(ErrorKind::InvalidKeyFormat)?,
        },
        (_, DecodingKeyKind::SecretOrDer(bytes)) => {
            let algorithm: &'static dyn sig::VerificationAlgorithm = match (alg, rsa_params) {
                (_, Some(params)) => params,
                (ES256, _) => &sig::ECDSA_P256_SHA256_FIXED,
                (ES384, _) => &sig::ECDSA_P384_SHA384_FIXED,
                (EdDSA, _) => &sig::ED25519,
                _ => return Err(ErrorKind::InvalidAlgorithm.into()),
            };
            Key::Unparsed(UnparsedPublicKey::new(algorithm, bytes.clone()))
        }
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

fn rsa_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    (rust_crypto::DEFAULT_PROVIDER
        .jwk_utils
        .extract_rsa_public_key_components)(der)
}

fn ec_coordinates(der: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    (rust_crypto::DEFAULT_PROVIDER
        .jwk_utils
        .extract_ec_public_key_coordinates)(der, alg)
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    (rust_crypto::DEFAULT_PROVIDER.jwk_utils.compute_digest)(data, hash)
}

/// Verification on `ring`, signing and JWK helpers on RustCrypto.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: rsa_components,
        extract_ec_public_key_coordinates: ec_coordinates,
        compute_digest: digest,
    },
};

/// Installs [`PROVIDER`] unless a provider is already in place (first use wins, by design of
/// jsonwebtoken); returns whether this call installed it.
pub fn install() -> bool {
    PROVIDER.install_default().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_fixtures::token::{self, EC_P256, EC_P384, ED25519, RSA_2048};
    use serde_json::Value;

    fn decoding_key(jwk: &Value) -> DecodingKey {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    }

    /// Verifies with this module's verifier directly (whatever provider the process installed).
    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> bool {
        let (message, signature) = token.rsplit_once('.').unwrap();
        use base64::Engine;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        verifier(&alg, key)
            .map(|v| v.verify(message.as_bytes(), &signature).is_ok())
            .unwrap_or(false)
    }

    #[test]
    fn ring_verifies_what_rust_crypto_signs_and_nothing_else() {
        let claims = token::claims("i", "a", "s", "", std::time::Duration::from_secs(60));
        let rsa = decoding_key(&RSA_2048.jwk());
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let t = RSA_2048.mint_with(alg, &claims).unwrap();
            assert!(verify(&t, &rsa, alg), "{alg:?}");
            let other = if alg == Algorithm::RS256 {
                Algorithm::PS256
            } else {
                Algorithm::RS256
            };
            assert!(!verify(&t, &rsa, other), "{alg:?} as {other:?}");
        }
        for key in [EC_P256, EC_P384, ED25519] {
            let t = key.mint(&claims).unwrap();
            assert!(
                verify(&t, &decoding_key(&key.jwk()), key.alg),
                "{:?}",
                key.alg
            );
            let mut tampered = t.clone();
            tampered.insert(t.find('.').unwrap() + 3, 'x');
            assert!(!verify(&tampered, &decoding_key(&key.jwk()), key.alg));
        }
        let hs = token::mint_hmac(
            Algorithm::HS256,
            b"secret-secret-secret-secret-0123",
            &claims,
        )
        .unwrap();
        let secret = DecodingKey::from_secret(b"secret-secret-secret-secret-0123");
        assert!(verify(&hs, &secret, Algorithm::HS256));
        assert!(!verify(
            &hs,
            &DecodingKey::from_secret(b"other"),
            Algorithm::HS256
        ));
        // Algorithm confusion: an RSA key is never used as an HMAC secret.
        assert!(verifier(&Algorithm::HS256, &rsa).is_err());
        assert!(verifier(&Algorithm::ES256, &rsa).is_err());
    }
}
