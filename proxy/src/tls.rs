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

/// The HTTP/1.1 client connector of the sidecar's own outbound calls that are not upstream
/// traffic (JWKS fetches, OTLP span exports): `http://` or `https://` with rustls (ring) and
/// the system's roots plus `extra_roots`, `TCP_NODELAY`, and `connect_timeout` when given.
pub fn outbound_connector(
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    connect_timeout: Option<std::time::Duration>,
) -> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String>
{
    let mut roots = rustls::RootCertStore::empty();
    // A system root rustls cannot read is skipped, as every rustls client does.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in extra_roots {
        roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(connect_timeout);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}
