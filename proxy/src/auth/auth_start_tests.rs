//! Start-up errors of the authenticators' builders: what validation cannot see (a JWKS file's
//! content, a CA file's certificates) stops the start with an error naming the field.

use super::*;
use crate::config::Config;

const UPSTREAM: &str = "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n";

/// `Auth::new` on `[auth]` holding `issuers`, with `{dir}` replaced by a scratch directory
/// where `files` (name, content) were written; the start-up error's text.
async fn start_error(issuers: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let text = format!("[auth]\npublic_url = \"https://mcp.example.test\"\n{issuers}{UPSTREAM}")
        .replace("{dir}", &dir.path().display().to_string());
    let config = Config::from_toml_with_env(&text, &|_| None).unwrap();
    let metrics = Metrics::new().unwrap();
    match Auth::new(&config, &metrics).await {
        Ok(_) => panic!("started with {text}"),
        Err(e) => e.to_string(),
    }
}

fn issuer(id: &str, keys: &str) -> String {
    format!(
        "[[auth.jwt]]\nid = \"{id}\"\nissuer = \"https://{id}.test\"\nalgorithms = [\"RS256\"]\n{keys}\n"
    )
}

#[tokio::test]
async fn a_jwks_file_that_is_not_a_jwks_is_refused_naming_the_field() {
    let err = start_error(
        &issuer("idp", "jwks_file = \"{dir}/jwks.json\""),
        &[("jwks.json", "not json")],
    )
    .await;
    assert_eq!(
        err,
        "auth.jwt[0].jwks_file: no signing keys could be loaded for issuer `idp`"
    );
}

#[tokio::test]
async fn a_jwks_file_without_a_usable_key_is_refused_naming_the_field() {
    // A symmetric key and a 1024-bit-looking RSA key are both skipped.
    let jwks =
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#;
    let err = start_error(
        &issuer("idp", "jwks_file = \"{dir}/jwks.json\""),
        &[("jwks.json", jwks)],
    )
    .await;
    assert_eq!(
        err,
        "auth.jwt[0].jwks_file: holds no usable signing key (RSA >= 2048 bits, EC P-256/P-384, Ed25519)"
    );
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused_naming_the_jwks_url() {
    let err = start_error(
        &issuer(
            "idp",
            "jwks_url = \"https://idp.test/jwks.json\"\njwks_ca_file = \"{dir}/ca.pem\"",
        ),
        &[("ca.pem", "no certificate here\n")],
    )
    .await;
    assert_eq!(
        err,
        "auth.jwt[0].jwks_url: CA file holds no PEM certificate"
    );
}

#[tokio::test]
async fn the_broken_issuer_is_named_by_its_own_index() {
    let issuers = issuer("good", "jwks_url = \"https://good.test/jwks.json\"")
        + &issuer("bad", "jwks_file = \"{dir}/jwks.json\"");
    let err = start_error(&issuers, &[("jwks.json", r#"{"keys": []}"#)]).await;
    assert!(
        err.starts_with("auth.jwt[1].jwks_file: holds no usable"),
        "{err}"
    );
}
