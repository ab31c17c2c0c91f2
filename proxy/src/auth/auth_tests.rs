//! The security matrix at the module boundary: every bad credential is refused with its own
//! outcome, every configured algorithm passes, random bytes never authenticate, cached tokens
//! expire with the (injected) clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use mcp_fixtures::token::{self, EC_P256, EC_P256_ROTATED, EC_P384, ED25519, RSA_2048};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::mcp::classify;

const ISS: &str = "https://idp.test";
const AUD: &str = "https://mcp.example.test/mcp";
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-hs";
const API_KEY: &str = "ci-key-0123456789abcdef";

struct Env {
    auth: Auth,
    upstream: Arc<Upstream>,
    clock: Arc<AtomicU64>,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, token::JWKS_JSON).unwrap();
    let text = format!(
        r#"
[auth]
public_url = "https://mcp.example.test"
[[auth.api_keys]]
id = "ci"
key = "${{CI_KEY}}"
scopes = ["tools:read"]
[[auth.jwt]]
id = "idp"
issuer = "{ISS}"
algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
jwks_file = "{}"
required_claims = ["sub"]
[[auth.jwt]]
id = "hs"
issuer = "https://hs.test"
algorithms = ["HS256"]
secret = "${{HS_SECRET}}"
[auth.claim_headers]
sub = "X-Auth-Subject"
scope = "X-Auth-Scopes"
email = "X-Auth-Email"
[[upstream]]
name = "u"
url = "http://127.0.0.1:1/mcp"
[[upstream.auth.rules]]
scopes = ["crawl"]
methods = ["tools/list"]
tools = ["crawl_*"]
[[upstream.auth.rules]]
scopes = ["tools:read"]
methods = ["tools/list"]
tools = ["echo", "add"]
"#,
        jwks.display()
    );
    let config = Config::from_toml_with_env(&text, &|v| match v {
        "CI_KEY" => Some(API_KEY.into()),
        "HS_SECRET" => Some(HS_SECRET.into()),
        _ => None,
    })
    .unwrap();
    let clock = Arc::new(AtomicU64::new(token::now()));
    let c = clock.clone();
    let metrics = Metrics::new().unwrap();
    let auth = Auth::with_clock(
        &config,
        &metrics,
        Arc::new(move || c.load(Ordering::SeqCst)),
    )
    .await
    .unwrap();
    let upstream = Arc::new(Upstream::from_config(&config.upstream[0], &metrics).unwrap());
    Env {
        auth,
        upstream,
        clock,
        metrics,
        _dir: dir,
    }
}

fn claims(scope: &str) -> Value {
    token::claims(ISS, AUD, "alice", scope, Duration::from_secs(3600))
}

fn with(claims: Value, patch: Value) -> Value {
    let mut c = claims;
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

impl Env {
    async fn bearer(&self, token: &str) -> Result<Option<Arc<Principal>>, ProxyError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        self.auth.authenticate_headers(&self.upstream, &h).await
    }

    async fn outcome(&self, token: &str) -> &'static str {
        match self.bearer(token).await {
            Ok(_) => "ok",
            Err(ProxyError::Unauthorized { outcome, .. }) => outcome,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Header and payload segments of a JWT, base64url.
fn segments(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

#[tokio::test]
async fn every_configured_algorithm_passes() {
    let env = env().await;
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let t = RSA_2048.mint_with(alg, &claims("crawl")).unwrap();
        assert_eq!(env.outcome(&t).await, "ok", "{alg:?}");
    }
    for key in [EC_P256, EC_P384, ED25519] {
        let t = key.mint(&claims("crawl")).unwrap();
        assert_eq!(env.outcome(&t).await, "ok", "{:?}", key.alg);
    }
    let hs = token::mint_hmac(
        Algorithm::HS256,
        HS_SECRET.as_bytes(),
        &with(claims("crawl"), json!({"iss": "https://hs.test"})),
    )
    .unwrap();
    assert_eq!(env.outcome(&hs).await, "ok");
    let p = env
        .bearer(&EC_P256.mint(&claims("crawl tools:read")).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.subject, "alice");
    assert_eq!(p.scopes, vec!["crawl", "tools:read"]);
    assert_eq!(p.source_label(), "jwt:idp");
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let env = env().await;
    let good = EC_P256.mint(&claims("crawl")).unwrap();
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{sig}",
        B64.encode(with(claims("crawl"), json!({"scope": "admin"})).to_string())
    );
    let alg_none = format!(
        "{}.",
        segments(&json!({"alg": "none", "typ": "JWT"}), &claims("crawl"))
    );
    // Algorithm confusion: HS256 "signed" with the RSA public key (as published) as the secret.
    let rsa_public = RSA_2048.jwk().to_string();
    let confused = token::mint_hmac(Algorithm::HS256, rsa_public.as_bytes(), &claims("crawl"))
        .unwrap()
        .replacen(
            &B64.encode(r#"{"typ":"JWT","alg":"HS256"}"#),
            &B64.encode(r#"{"typ":"JWT","alg":"HS256","kid":"rsa-2048"}"#),
            1,
        );
    let now = token::now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "garbage".into(), "malformed"),
        ("16 KB", "a".repeat(16 * 1024), "too_large"),
        ("alg none", alg_none, "algorithm_not_allowed"),
        (
            "HS256 with the RSA public key",
            confused,
            "algorithm_not_allowed",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "expired",
            EC_P256
                .mint(&with(
                    claims("crawl"),
                    json!({"exp": now - 3600, "iat": now - 7200}),
                ))
                .unwrap(),
            "expired",
        ),
        (
            "not yet valid",
            EC_P256
                .mint(&with(claims("crawl"), json!({"nbf": now + 3600})))
                .unwrap(),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            EC_P256
                .mint(&with(claims("crawl"), json!({"iss": "https://evil.test"})))
                .unwrap(),
            "wrong_issuer",
        ),
        (
            "wrong audience",
            EC_P256
                .mint(&with(
                    claims("crawl"),
                    json!({"aud": "https://other.test/mcp"}),
                ))
                .unwrap(),
            "wrong_audience",
        ),
        (
            "unknown kid",
            EC_P256_ROTATED.mint(&claims("crawl")).unwrap(),
            "unknown_key",
        ),
        (
            "key of the wrong type",
            {
                let key = EC_P256.encoding_key().unwrap();
                let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
                h.kid = Some("rsa-2048".into());
                jsonwebtoken::encode(&h, &claims("crawl"), &key).unwrap()
            },
            "wrong_key_type",
        ),
        (
            "no exp",
            EC_P256
                .mint(&with(claims("crawl"), json!({"exp": null})))
                .unwrap(),
            "missing_claim",
        ),
        (
            "no aud",
            EC_P256
                .mint(&with(claims("crawl"), json!({"aud": null})))
                .unwrap(),
            "missing_claim",
        ),
        (
            "required sub missing",
            EC_P256
                .mint(&with(claims("crawl"), json!({"sub": null})))
                .unwrap(),
            "missing_claim",
        ),
        (
            "HS256 with the wrong secret",
            token::mint_hmac(
                Algorithm::HS256,
                b"another-secret-0123456789abcdef0123",
                &with(claims("crawl"), json!({"iss": "https://hs.test"})),
            )
            .unwrap(),
            "bad_signature",
        ),
        (
            "RS256 for the HS-only issuer",
            RSA_2048
                .mint(&with(claims("crawl"), json!({"iss": "https://hs.test"})))
                .unwrap(),
            "algorithm_not_allowed",
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(env.outcome(&token).await, expected, "{what}");
    }
    let text = String::from_utf8(env.metrics.render().unwrap()).unwrap();
    assert!(
        text.contains(r#"mcp_sidecar_auth_total{method="jwt",outcome="expired"} 1"#),
        "{text}"
    );
}

/// An issuer that accepts both HMAC and RSA: an HS256 token "signed" with the RSA public key
/// (JWK or PEM text) as the secret, carrying the RSA key's `kid`, must still fail: HMAC verifies
/// with the configured secret only, never with a JWKS key.
#[tokio::test]
async fn mixed_hmac_and_rsa_issuer_is_not_confused() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, token::JWKS_JSON).unwrap();
    let text = format!(
        "[auth]\npublic_url = \"https://mcp.example.test\"\n[[auth.jwt]]\nid = \"mixed\"\nissuer = \"{ISS}\"\n\
         algorithms = [\"HS256\", \"RS256\"]\nsecret = \"${{HS}}\"\njwks_file = \"{}\"\n\
         [[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n",
        jwks.display()
    );
    let config = Config::from_toml_with_env(&text, &|_| Some(HS_SECRET.into())).unwrap();
    let metrics = Metrics::new().unwrap();
    let auth = Auth::new(&config, &metrics).await.unwrap();
    let upstream = Upstream::from_config(&config.upstream[0], &metrics).unwrap();
    let check = |token: String| {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    };
    let jwk_text = RSA_2048.jwk().to_string();
    let n = RSA_2048.jwk()["n"].as_str().unwrap().to_owned();
    let pem_like = format!("-----BEGIN PUBLIC KEY-----\n{n}\n-----END PUBLIC KEY-----\n");
    for secret in [jwk_text.as_bytes(), pem_like.as_bytes(), n.as_bytes()] {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("rsa-2048".into());
        let forged = jsonwebtoken::encode(
            &header,
            &claims("crawl"),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        let result = auth.authenticate_headers(&upstream, &check(forged)).await;
        assert!(
            matches!(
                result,
                Err(ProxyError::Unauthorized {
                    outcome: "bad_signature",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    // Both legitimate kinds pass.
    let hs = token::mint_hmac(Algorithm::HS256, HS_SECRET.as_bytes(), &claims("crawl")).unwrap();
    assert!(
        auth.authenticate_headers(&upstream, &check(hs))
            .await
            .is_ok()
    );
    let rs = RSA_2048.mint(&claims("crawl")).unwrap();
    assert!(
        auth.authenticate_headers(&upstream, &check(rs))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn challenges_name_the_metadata_and_the_error() {
    let env = env().await;
    let Err(ProxyError::Unauthorized {
        challenge, outcome, ..
    }) = env
        .auth
        .authenticate_headers(&env.upstream, &HeaderMap::new())
        .await
    else {
        panic!("no token must be refused")
    };
    assert_eq!(outcome, "missing");
    let c = challenge.to_str().unwrap();
    assert_eq!(
        c,
        "Bearer resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\", scope=\"crawl tools:read\""
    );
    let Err(ProxyError::Unauthorized { challenge, .. }) = env.bearer("x.y.z").await else {
        panic!()
    };
    assert!(
        challenge
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\", error_description=")
    );
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic YTpi"),
    );
    assert!(matches!(
        env.auth.authenticate_headers(&env.upstream, &h).await,
        Err(ProxyError::Unauthorized {
            outcome: "malformed",
            ..
        })
    ));
    // A request dressed as a CORS preflight needs a credential too: the sidecar answers real
    // preflights itself (crate::cors) before this phase, so none is ever let through here.
    let mut h = HeaderMap::new();
    h.insert(
        header::ORIGIN,
        HeaderValue::from_static("http://localhost:3000"),
    );
    h.insert(
        header::ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("POST"),
    );
    assert!(matches!(
        env.auth.authenticate_headers(&env.upstream, &h).await,
        Err(ProxyError::Unauthorized {
            outcome: "missing",
            ..
        })
    ));
}

#[tokio::test]
async fn api_keys_as_bearer_or_header() {
    let env = env().await;
    let p = env.bearer(API_KEY).await.unwrap().unwrap();
    assert_eq!(p.source_label(), "api_key:ci");
    let mut h = HeaderMap::new();
    h.insert(&X_API_KEY, HeaderValue::from_static(API_KEY));
    assert!(
        env.auth
            .authenticate_headers(&env.upstream, &h)
            .await
            .unwrap()
            .is_some()
    );
    h.insert(
        &X_API_KEY,
        HeaderValue::from_static("ci-key-0123456789abcdeX"),
    );
    assert!(matches!(
        env.auth.authenticate_headers(&env.upstream, &h).await,
        Err(ProxyError::Unauthorized {
            outcome: "unknown_api_key",
            ..
        })
    ));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    assert!(
        matches!(
            env.auth.authenticate_headers(&env.upstream, &h).await,
            Err(ProxyError::Unauthorized {
                outcome: "malformed",
                ..
            })
        ),
        "two credentials are ambiguous"
    );
}

#[tokio::test]
async fn cached_tokens_expire_with_the_clock() {
    let env = env().await;
    let now = env.clock.load(Ordering::SeqCst);
    let t = EC_P256
        .mint(&with(claims("crawl"), json!({"exp": now + 100})))
        .unwrap();
    assert_eq!(env.outcome(&t).await, "ok");
    assert_eq!(env.outcome(&t).await, "ok");
    let text = String::from_utf8(env.metrics.render().unwrap()).unwrap();
    assert!(
        text.contains("mcp_sidecar_auth_token_cache_total{result=\"hit\"} 1"),
        "{text}"
    );
    // Past exp + leeway (60 s): the cache entry is dead and the token refused.
    env.clock.store(now + 161, Ordering::SeqCst);
    assert_eq!(env.outcome(&t).await, "expired");
    env.clock.store(now + 150, Ordering::SeqCst);
    assert_eq!(env.outcome(&t).await, "ok", "within leeway");
}

#[tokio::test]
async fn authorization_decides_every_message_and_challenges_with_scopes() {
    let env = env().await;
    let p = env
        .bearer(&EC_P256.mint(&claims("crawl")).unwrap())
        .await
        .unwrap();
    let call = |tool: &str| {
        classify(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    assert!(
        env.auth
            .authorize_messages(&env.upstream, p.as_ref(), Some(&call("crawl_web")))
            .is_ok()
    );
    let Err(ProxyError::Forbidden { challenge, detail }) =
        env.auth
            .authorize_messages(&env.upstream, p.as_ref(), Some(&call("echo")))
    else {
        panic!("echo needs tools:read")
    };
    assert_eq!(
        challenge.to_str().unwrap(),
        "Bearer error=\"insufficient_scope\", scope=\"tools:read\", resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\""
    );
    assert!(
        detail.contains("alice") && detail.contains("echo"),
        "{detail}"
    );
    let batch = classify(
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"crawl_a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add"}}]"#,
    )
    .unwrap();
    assert!(
        env.auth
            .authorize_messages(&env.upstream, p.as_ref(), Some(&batch))
            .is_err(),
        "one denied element denies the batch"
    );
}

#[tokio::test]
async fn upstream_headers_lose_client_credentials_and_gain_claims() {
    let env = env().await;
    let p = env
        .bearer(
            &EC_P256
                .mint(&with(claims("crawl"), json!({"email": "a@example.test"})))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer client-token"),
    );
    h.insert(&X_API_KEY, HeaderValue::from_static("client-key"));
    h.insert("x-auth-subject", HeaderValue::from_static("mallory"));
    h.append("x-auth-subject", HeaderValue::from_static("eve"));
    env.auth
        .prepare_upstream_headers(&env.upstream, p.as_deref(), &mut h);
    assert!(h.get(header::AUTHORIZATION).is_none());
    assert!(h.get(&X_API_KEY).is_none());
    assert_eq!(
        h.get_all("x-auth-subject").iter().collect::<Vec<_>>(),
        vec!["alice"]
    );
    assert_eq!(h["x-auth-scopes"], "crawl");
    assert_eq!(h["x-auth-email"], "a@example.test");
}

#[tokio::test]
async fn metadata_is_served_for_the_mount_and_the_root() {
    let env = env().await;
    assert!(
        env.auth
            .metadata_answer(&Method::GET, "/.well-known/oauth-protected-resource/mcp")
            .is_some()
    );
    assert!(
        env.auth
            .metadata_answer(&Method::GET, "/.well-known/oauth-protected-resource")
            .is_some()
    );
    assert!(env.auth.metadata_answer(&Method::GET, "/mcp").is_none());
    assert!(
        Auth::disabled()
            .metadata_answer(&Method::GET, prm::WELL_KNOWN)
            .is_none()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes as tokens never authenticate, whether sent raw, shaped like a JWT (three
    /// base64url segments) or with a real header and signature around a random payload.
    #[test]
    fn random_tokens_never_authenticate(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        shape in 0u8..3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = rt.block_on(async {
            let env = ENV.get_or_init(|| std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(env())
            }).join().unwrap());
            let token = match shape {
                0 => String::from_utf8_lossy(&bytes).into_owned(),
                1 => {
                    let third = bytes.len() / 3;
                    format!("{}.{}.{}", B64.encode(&bytes[..third]), B64.encode(&bytes[third..2 * third]), B64.encode(&bytes[2 * third..]))
                }
                _ => {
                    let real = EC_P256_TOKEN.get_or_init(|| EC_P256.mint(&claims("crawl")).unwrap());
                    let (head, rest) = real.split_once('.').unwrap();
                    let (_, sig) = rest.split_once('.').unwrap();
                    format!("{head}.{}.{sig}", B64.encode(&bytes))
                }
            };
            let mut h = HeaderMap::new();
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => { h.insert(header::AUTHORIZATION, v); }
                Err(_) => return None,
            }
            Some(env.auth.authenticate_headers(&env.upstream, &h).await)
        });
        if let Some(result) = result {
            prop_assert!(result.is_err(), "random token authenticated");
        }
    }
}

static ENV: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
static EC_P256_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The per-request cost of the auth phases for a cached JWT, in-process (not a pass/fail test:
/// run `cargo test --release -p mcp-sidecar --lib hot_path_cost -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "measurement; run in release with --nocapture"]
async fn hot_path_cost() {
    let env = env().await;
    let body = classify(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
    )
    .unwrap();
    for (name, token) in [
        ("ES256", EC_P256.mint(&claims("tools:read")).unwrap()),
        ("RS256", RSA_2048.mint(&claims("tools:read")).unwrap()),
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let run = |n: u32| {
            let h = h.clone();
            let env = &env;
            let body = &body;
            async move {
                let start = std::time::Instant::now();
                for _ in 0..n {
                    env.auth
                        .host_and_origin(&h, &http::Uri::from_static("/mcp"))
                        .unwrap();
                    let p = env
                        .auth
                        .authenticate_headers(&env.upstream, &h)
                        .await
                        .unwrap();
                    env.auth
                        .authorize_messages(&env.upstream, p.as_ref(), Some(body))
                        .unwrap();
                    let mut out = h.clone();
                    env.auth
                        .prepare_upstream_headers(&env.upstream, p.as_deref(), &mut out);
                    std::hint::black_box(out);
                }
                start.elapsed() / n
            }
        };
        run(1_000).await;
        let cached = run(100_000).await;
        let uncached = {
            let n = 200;
            let headers: Vec<HeaderMap> = (0..n)
                .map(|i| {
                    let c = with(claims("tools:read"), json!({"jti": i}));
                    let t = match name {
                        "ES256" => EC_P256.mint(&c).unwrap(),
                        _ => RSA_2048.mint(&c).unwrap(),
                    };
                    let mut h = HeaderMap::new();
                    h.insert(
                        header::AUTHORIZATION,
                        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
                    );
                    h
                })
                .collect();
            let start = std::time::Instant::now();
            for h in &headers {
                env.auth
                    .authenticate_headers(&env.upstream, h)
                    .await
                    .unwrap();
            }
            start.elapsed() / n
        };
        println!(
            "{name}: cached token, all auth phases: {cached:?} per request; first use (full verification): {uncached:?}"
        );
    }
}
