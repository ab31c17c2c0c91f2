use super::*;

const API_KEY: &str = "ak-0123456789abcdef-secret";
const HMAC: &str = "hmac-0123456789abcdef0123456789abcdef";
const CREDENTIAL: &str = "backend-credential-0123456789";
const ADMIN: &str = "admin-0123456789abcdef0123456789abcdef";

fn env(name: &str) -> Option<String> {
    Some(
        match name {
            "API_KEY" => API_KEY,
            "HMAC" => HMAC,
            "CREDENTIAL" => CREDENTIAL,
            "ADMIN" => ADMIN,
            _ => return None,
        }
        .to_owned(),
    )
}

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[admin]
token = "${{ADMIN}}"
[auth]
public_url = "https://mcp.example.com"
[[auth.api_keys]]
id = "ci"
key = "${{API_KEY}}"
[[auth.jwt]]
id = "hs"
issuer = "https://issuer.example.com"
audiences = ["https://mcp.example.com/mcp"]
algorithms = ["HS256"]
secret = "${{HMAC}}"
[[auth.jwt]]
id = "rs"
issuer = "https://other.example.com"
algorithms = ["RS256"]
jwks_url = "https://other.example.com/jwks"
[[upstream]]
name = "a"
url = "http://127.0.0.1:8000/mcp"
path = "/mcp"
{extra}
[upstream.auth.credential]
header = "authorization"
value = "Bearer ${{CREDENTIAL}}"
"#
    );
    Config::from_toml_with_env(&text, &env).unwrap()
}

#[test]
fn every_secret_is_redacted() {
    let view = config("").view().unwrap();
    let shown = view.document().to_string();
    for secret in [API_KEY, HMAC, CREDENTIAL, ADMIN] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    assert_eq!(view.config["admin"]["token"], REDACTED);
    assert_eq!(view.config["auth"]["api_keys"][0]["key"], REDACTED);
    assert_eq!(view.config["auth"]["jwt"][0]["secret"], REDACTED);
    assert_eq!(
        view.config["upstream"][0]["auth"]["credential"]["value"],
        REDACTED
    );
    assert_eq!(
        view.config["auth"]["jwt"][1]["jwks_url"],
        "https://other.example.com/jwks"
    );
}

#[test]
fn the_effective_values_are_shown_defaults_included() {
    let view = config("").view().unwrap();
    assert_eq!(view.config["shutdown"]["grace_period"], "30s");
    assert_eq!(view.config["shutdown"]["drain_delay"], "5s");
    assert_eq!(view.config["upstream"][0]["name"], "a");
    assert_eq!(view.config["auth"]["api_keys"][0]["id"], "ci");
}

#[test]
fn the_hash_is_stable_and_follows_every_shown_change() {
    let a = config("").view().unwrap();
    let b = config("").view().unwrap();
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    assert!(a.hash.bytes().all(|c| c.is_ascii_hexdigit()));
    let c = config("response_timeout = \"121s\"").view().unwrap();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn canonical_form_sorts_keys_at_every_depth() {
    let mut out = String::new();
    write_canonical(
        &serde_json::json!({"b": 1, "a": {"d": [2, {"f": 3, "e": "x"}], "c": null}}),
        &mut out,
    );
    assert_eq!(out, r#"{"a":{"c":null,"d":[2,{"e":"x","f":3}]},"b":1}"#);
}

/// Validation refuses credentials and queries in the backend and JWKS URLs; any other URL a
/// config may hold still has its secrets redacted.
#[test]
fn urls_without_secrets_are_shown_as_written() {
    assert_eq!(redact_url("http://127.0.0.1:8000/mcp?region=eu"), None);
    assert_eq!(redact_url("not a url"), None);
    assert_eq!(
        redact_url("https://u:p@h.example/x?access_token=t&a=b").as_deref(),
        Some("https://u:%5Bredacted%5D@h.example/x?access_token=%5Bredacted%5D&a=b")
    );
}

#[test]
fn an_error_about_a_url_does_not_show_its_secrets() {
    let text =
        "[[upstream]]\nname = \"a\"\nurl = \"http://u:${P}@127.0.0.1:8000/mcp?token=${P}\"\n";
    let err = Config::from_toml_with_env(text, &|_| Some("hunter2-secret".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("upstream[0].url: "), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}
