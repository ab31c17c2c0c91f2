//! The pooled HTTP client for one upstream: hyper-util's connector (TCP, connect timeout,
//! rustls for `https://`) under the sidecar's own [`Pool`], which speaks HTTP/1.1 on the
//! connections itself (`upstream::h1`).
//!
//! HTTP/1.1 only towards backends: one HTTP/2 connection per backend (what general-purpose pools
//! keep) would put every long-lived SSE stream and every call on one connection's stream limit
//! and flow-control window.

use std::sync::Arc;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use super::pool::Pool;
use crate::config::{ConfigError, UpstreamConfig};

/// The client type used for every upstream.
pub type UpstreamClient = Pool;

/// Builds the pooled client for one upstream from its settings.
pub fn build_client(
    config: &UpstreamConfig,
    target: http::Uri,
) -> Result<UpstreamClient, ConfigError> {
    let mut http = HttpConnector::new();
    // Nagle's algorithm adds up to 40 ms to small JSON-RPC messages.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.enforce_http(false);
    // Standing streams have no idle timeout: a backend that vanished is found by probes.
    crate::tcp_keepalive::configure(&mut http);
    let tls = tls_config(config)?;
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Pool::new(
        connector,
        target,
        config.pool_max_idle,
        config.pool_idle_timeout,
    ))
}

/// The rustls client settings of an upstream: the system roots (best effort) and its `ca_file`.
/// Public for other clients of the library (the load generator's HTTP/2 leg).
pub fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let field = format!("upstream `{}` ca_file", config.name);
    let mut roots = rustls::RootCertStore::empty();
    // System roots are best effort: a minimal container may have none, and a CA file may be all
    // that is needed. A backend that needs them and finds none fails its TLS handshake with a 502.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError::invalid(&field, format!("cannot read {}: {e}", path.display()))
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| ConfigError::invalid(&field, format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| ConfigError::invalid(&field, format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::invalid(
                &field,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid(&field, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}
