//! The JWKS a managed scenario's sidecar verifies tokens with (`system.jwks`): the shipped test
//! keys' public JWKS (`fixtures/keys/jwks.json`) served at `/jwks.json`, and the tokens the
//! runner signs: the traffic's with a key the JWKS has, the probes' with one it lacks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mcp_fixtures::token;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::RunError;

/// The `iss` of the runner's tokens (`CHAOS_JWT_ISSUER`).
pub(super) const ISSUER: &str = "mcp-chaos";
/// The `aud` of the runner's tokens (`CHAOS_JWT_AUDIENCE`; a config lists it in `audiences`).
pub(super) const AUDIENCE: &str = "mcp-chaos";
/// How long the runner's tokens are valid: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// A running JWKS server; dropping it stops it.
#[derive(Debug)]
pub(super) struct JwksServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl JwksServer {
    /// Serves the JWKS on a free loopback port.
    pub(super) async fn start() -> Result<Self, RunError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RunError::Setup(format!("JWKS server: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RunError::Setup(format!("JWKS server: {e}")))?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        let mut response = if req.uri().path() == "/jwks.json" {
                            Response::new(Full::new(Bytes::from_static(
                                token::JWKS_JSON.as_bytes(),
                            )))
                        } else {
                            let mut r =
                                Response::new(Full::new(Bytes::from_static(b"not found\n")));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, accept })
    }

    /// Its address.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `Bearer <token>` signed with `key`, for the runner's issuer and audience.
fn bearer(key: &token::TestKey) -> Result<String, RunError> {
    let claims = token::claims(ISSUER, AUDIENCE, "mcp-chaos", "", TOKEN_TTL);
    key.mint(&claims)
        .map(|t| format!("Bearer {t}"))
        .map_err(|e| RunError::Setup(format!("signing a token with {}: {e}", key.kid)))
}

/// The traffic's credential: signed with a key the JWKS has (`ec-p256`).
pub(super) fn known_key_bearer() -> Result<String, RunError> {
    bearer(&token::EC_P256)
}

/// The probes' credential: signed with a key the JWKS lacks (`ec-p256-rotated`).
pub(super) fn unknown_key_bearer() -> Result<String, RunError> {
    bearer(&token::EC_P256_ROTATED)
}
