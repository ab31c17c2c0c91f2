//! Server-side TLS for the client listener (rustls; ALPN offers HTTP/2 and HTTP/1.1).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsConfig};

/// Builds the acceptor from PEM files.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, ConfigError> {
    let certs = read_pem(&config.cert, "listen.tls.cert")?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut certs.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid("listen.tls.cert", e.to_string()))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            "listen.tls.cert",
            format!("{} holds no PEM certificate", config.cert.display()),
        ));
    }
    let key = read_pem(&config.key, "listen.tls.key")?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| ConfigError::invalid("listen.tls.key", e.to_string()))?
        .ok_or_else(|| {
            ConfigError::invalid(
                "listen.tls.key",
                format!("{} holds no PEM private key", config.key.display()),
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("listen.tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::invalid("listen.tls", format!("certificate and key do not fit: {e}"))
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_pem(path: &Path, field: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::invalid(field, format!("cannot read {}: {e}", path.display())))
}
