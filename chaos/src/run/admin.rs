//! A small client for the endpoints the runner reads while a scenario runs: the sidecar's admin
//! listener (`/readyz`, `/healthz`, `/breakers`) and a backend's counters (the fixture's
//! `/stats`). It is the sidecar library's pooled HTTP/1.1 client, every request bounded.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Limited};
use mcp_sidecar::body::full;
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::upstream::{Pool, build_client};
use serde_json::Value;

use super::RunError;

/// Longest wait for one admin answer: these are loopback reads of a few KiB, so a slower one is
/// a stalled process, and the observer must not stall with it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest admin answer read (a `/breakers` listing is a few hundred bytes a breaker).
const ADMIN_MAX_BYTES: usize = 1024 * 1024;

/// An origin (`http://host:port`) whose endpoints are read.
#[derive(Debug, Clone)]
pub struct Admin {
    origin: Uri,
    pool: Pool,
}

impl Admin {
    /// A client for `url`'s origin (its path is ignored: each read names its own).
    pub fn new(url: &str) -> Result<Self, RunError> {
        let bad = |m: String| RunError::Setup(format!("admin URL `{url}`: {m}"));
        let uri: Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(bad("expected http://host:port".into()));
        };
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut config = UpstreamConfig::new("chaos-admin", url, None);
        config.connect_timeout = ADMIN_TIMEOUT;
        let pool = build_client(&config, origin.clone()).map_err(|e| bad(e.to_string()))?;
        Ok(Self { origin, pool })
    }

    /// `GET path`: the status and body, `None` when there was no answer in time.
    async fn get(&self, path: &str) -> Option<(u16, Bytes)> {
        let mut parts = self.origin.clone().into_parts();
        parts.path_and_query = Some(path.parse().ok()?);
        let uri = Uri::from_parts(parts).ok()?;
        let mut req = Request::new(full(Bytes::new()));
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri;
        let read = async {
            let response = self.pool.request(req).await.ok()?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), ADMIN_MAX_BYTES)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        };
        tokio::time::timeout(ADMIN_TIMEOUT, read).await.ok()?
    }

    /// The status of `GET path`.
    pub async fn status(&self, path: &str) -> Option<u16> {
        self.get(path).await.map(|(status, _)| status)
    }

    /// The text body of a 200 answer to `GET path`.
    pub async fn text(&self, path: &str) -> Option<String> {
        match self.get(path).await? {
            (200, body) => String::from_utf8(body.to_vec()).ok(),
            _ => None,
        }
    }

    /// The JSON body of a 200 answer to `GET path`.
    pub async fn json(&self, path: &str) -> Option<Value> {
        match self.get(path).await? {
            (200, body) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }
}
