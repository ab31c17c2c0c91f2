//! TLS on both sides: clients reach the sidecar over rustls (HTTP/1.1 and HTTP/2 via ALPN), and
//! the sidecar reaches an `https://` backend trusted through `ca_file`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mcp_e2e_tests::{ACCEPT_BOTH, call, config, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::TlsConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

struct Pki {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let cert_pem = certified.cert.pem();
    let key_pem = certified.key_pair.serialize_pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    Pki {
        _dir: dir,
        cert,
        key,
        cert_pem,
        key_pem,
    }
}

async fn echo(client: &reqwest::Client, url: String) -> reqwest::Response {
    client
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(call(4, "echo", json!({"text": "over tls"})))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn clients_reach_the_sidecar_over_tls_with_http1_and_http2() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let pki = pki();
    let mut cfg = config(vec![upstream(backend.mcp_url(), None)]);
    cfg.listen.tls = Some(TlsConfig {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    });
    let sidecar = start(cfg).await;
    let url = format!("https://localhost:{}/mcp", sidecar.addr.port());
    let root = reqwest::Certificate::from_pem(pki.cert_pem.as_bytes()).unwrap();

    let h2 = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let resp = echo(&h2, url.clone()).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "over tls");

    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let resp = echo(&h1, url).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        backend.stats().last_request_headers["x-forwarded-proto"],
        "https"
    );
}

/// A TLS terminator in front of the fixture, so the sidecar has an https:// backend.
use rustls::pki_types::pem::PemObject;

async fn tls_front(pki: &Pki, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    let certs = rustls_pemfile_certs(&pki.cert_pem);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn https_upstream_is_trusted_through_ca_file() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let pki = pki();
    let front = tls_front(&pki, backend.addr()).await;
    let mut up = upstream(format!("https://localhost:{}/mcp", front.port()), None);
    up.ca_file = Some(pki.cert.clone());
    let sidecar = start(config(vec![up])).await;
    let resp = echo(&mcp_e2e_tests::client(), sidecar.url("/mcp")).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "over tls");
    // Host is the backend's own authority, as its TLS name and virtual host expect.
    assert_eq!(
        backend.stats().last_request_headers["host"],
        format!("localhost:{}", front.port())
    );
}

#[tokio::test]
async fn https_upstream_with_untrusted_certificate_is_502() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let pki = pki();
    let front = tls_front(&pki, backend.addr()).await;
    let sidecar = start(config(vec![upstream(
        format!("https://localhost:{}/mcp", front.port()),
        None,
    )]))
    .await;
    let resp = echo(&mcp_e2e_tests::client(), sidecar.url("/mcp")).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 4);
    assert_eq!(backend.stats().http_requests_total, 0);
}
