//! A small HTTP(S) GET client for JWKS documents, on the same hyper-util + rustls stack as the
//! upstream clients (no second HTTP library): bounded response size, 200 only, no redirects.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest JWKS document accepted. Real ones are a few KiB; this bounds what a misbehaving
/// endpoint can make the sidecar hold.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// GETs one URL.
#[derive(Debug)]
pub struct Fetcher {
    uri: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// A fetcher for `url`, trusting the system roots plus the PEM certificates in `extra_ca`.
    pub fn new(url: &str, extra_ca: Option<&[u8]>) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let mut extra = Vec::new();
        if let Some(pem) = extra_ca {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                extra.push(cert.map_err(|e| format!("CA file: {e}"))?);
            }
            if extra.is_empty() {
                return Err("CA file holds no PEM certificate".into());
            }
        }
        let connector = crate::tls::outbound_connector(extra, None)?;
        // No pool timer needed: fetches are minutes apart, so idle connections are simply dropped.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self { uri, client })
    }

    /// GETs the document; errors describe what failed (for logs). The caller bounds the time.
    pub async fn get(&self) -> Result<Bytes, String> {
        let req = http::Request::get(self.uri.clone())
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .header(http::header::USER_AGENT, "mcp-sidecar")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("GET {}: {e}", self.uri))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("GET {}: HTTP {}", self.uri, resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {}: body: {e}", self.uri))?;
        Ok(body.to_bytes())
    }
}
