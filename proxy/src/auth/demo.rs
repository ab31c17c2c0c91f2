//! `mcp-sidecar demo --auth`: the demo's `/mcp` mount protected by an API key and JWTs signed
//! with the fixtures' test keys, with rules that let `tools:read` call `echo`, `add`, `progress`
//! and `admin` call everything. Prints a ready token and how to mint others.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_fixtures::token::{self, EC_P256};

use crate::config::{ApiKeyConfig, AuthConfig, JwtIssuerConfig, RuleConfig, Secret};

/// The demo's issuer (`iss`).
pub const DEMO_ISSUER: &str = "https://issuer.mcp-sidecar.demo";

/// Auth settings for the demo, and what to tell the user.
#[derive(Debug)]
pub struct DemoAuth {
    /// `[auth]`.
    pub config: AuthConfig,
    /// Rules for the `/mcp` mount.
    pub rules: Vec<RuleConfig>,
    api_key: String,
    token: String,
    jwks_path: PathBuf,
}

impl DemoAuth {
    /// Writes the test JWKS to a temporary file and builds the settings for a sidecar on `listen`.
    pub fn new(listen: &str) -> anyhow::Result<Self> {
        // Minting below would otherwise make jsonwebtoken settle on its default provider first.
        crate::auth::crypto::install();
        let jwks_path =
            std::env::temp_dir().join(format!("mcp-sidecar-demo-{}-jwks.json", std::process::id()));
        std::fs::write(&jwks_path, token::JWKS_JSON)?;
        let public_url = format!("http://{listen}");
        let mut issuer = JwtIssuerConfig::new(
            "demo",
            DEMO_ISSUER,
            vec![
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::RS256,
                Algorithm::EdDSA,
            ],
        );
        issuer.jwks_file = Some(jwks_path.clone());
        let api_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let claims = token::claims(
            DEMO_ISSUER,
            &format!("{public_url}/mcp"),
            "alice",
            "tools:read",
            Duration::from_secs(3600),
        );
        let token = EC_P256.mint(&claims)?;
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Ok(Self {
            config: AuthConfig {
                public_url: Some(public_url),
                api_keys: vec![ApiKeyConfig {
                    id: "demo-key".into(),
                    key: Secret(api_key.clone()),
                    scopes: v(&["tools:read"]),
                }],
                jwt: vec![issuer],
                claim_headers: [("sub".to_owned(), "X-Auth-Subject".to_owned())].into(),
                ..AuthConfig::default()
            },
            rules: vec![
                RuleConfig {
                    scopes: v(&["tools:read"]),
                    methods: v(&["tools/list"]),
                    tools: v(&["echo", "add", "progress"]),
                },
                RuleConfig {
                    scopes: v(&["admin"]),
                    methods: v(&["*"]),
                    tools: v(&["*"]),
                },
            ],
            api_key,
            token,
            jwks_path,
        })
    }

    /// What to try, for the demo's banner.
    pub fn instructions(&self, listen: &str) -> String {
        let headers =
            "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'";
        format!(
            r#"
Auth is on for /mcp (/legacy stays public). A token for alice with scope tools:read (1 h):
  TOKEN={token}
  # 401 without a token, with a WWW-Authenticate challenge pointing at the metadata
  curl -si http://{listen}/mcp {headers} -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}'
  curl -s http://{listen}/.well-known/oauth-protected-resource/mcp
  # initialize with the token, then tools/list shows only echo, add, progress
  SID=$(curl -s -D - -o /dev/null http://{listen}/mcp {headers} -H "authorization: Bearer $TOKEN" \
    -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}' \
    | awk 'tolower($1)=="mcp-session-id:" {{print $2}}' | tr -d '\r')
  curl -s http://{listen}/mcp {headers} -H "authorization: Bearer $TOKEN" -H "mcp-session-id: $SID" \
    -d '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'
  # `sleep` is not in scope: 403 with error="insufficient_scope"
  curl -si http://{listen}/mcp {headers} -H "authorization: Bearer $TOKEN" -H "mcp-session-id: $SID" \
    -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"sleep","arguments":{{"ms":1}}}}}}'
  # the API key works too (same scope)
  curl -s http://{listen}/mcp {headers} -H 'x-api-key: {key}' -H "mcp-session-id: $SID" \
    -d '{{"jsonrpc":"2.0","id":4,"method":"tools/list"}}'
  # other subjects and scopes (admin may call every tool):
  TOKEN=$(cargo run -q -p mcp-fixtures -- mint-token --key fixtures/keys/ec-p256.pem --alg ES256 \
    --iss {iss} --aud http://{listen}/mcp --sub bob --scope admin --ttl 1h)
"#,
            token = self.token,
            key = self.api_key,
            iss = DEMO_ISSUER,
        )
    }
}

impl Drop for DemoAuth {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.jwks_path);
    }
}
