//! The system under test, set up for one run.
//!
//! Managed (`sidecar_config`): the fixture backend in-process; in front of it the fault chain,
//! sidecar → TCP fault proxy (toxics, `proxy_down`) → HTTP fault proxy (`http` faults) →
//! fixture, so that every fault sits where a real network or backend would fail; and the real
//! `mcp-sidecar` process, configured through `CHAOS_*` variables. With `system.jwks`, also a
//! JWKS server behind a TCP fault proxy of its own (`CHAOS_JWKS_URL`). External (`target_url`): the
//! runner only sends traffic and reads what it is given.

use std::net::SocketAddr;
use std::path::Path;

use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use tokio::sync::Mutex;

use super::RunError;
use super::admin::Admin;
use super::jwks::{self, JwksServer};
use super::sidecar::Sidecar;
use crate::http::HttpFaultProxy;
use crate::scenario::{FixtureOptions, Link, System};
use crate::tcp::TcpProxy;

/// The TCP proxies' names in reports (Toxiproxy names each proxy).
const BACKEND_PROXY: &str = "backend";
const JWKS_PROXY: &str = "jwks";

/// The system under test.
#[derive(Debug)]
pub struct Sut {
    /// The sidecar's MCP URL, where traffic goes.
    pub target_url: String,
    /// The sidecar's admin listener, when known.
    pub admin: Option<Admin>,
    /// The backend's request counter.
    backend: Backend,
    /// What the runner started (none for an external system).
    pub managed: Option<Managed>,
    /// The traffic's `Authorization` (`system.jwks`).
    pub bearer: Option<String>,
}

/// Where the requests that reached the backend are counted.
#[derive(Debug)]
enum Backend {
    /// Nowhere.
    Unknown,
    /// The fixture's `/stats` (`http_requests_total`) of an external system.
    Stats(Admin),
    /// The HTTP fault proxy: the first hop after the sidecar, so also requests a fault answered.
    Chain,
}

/// What the runner started for a managed scenario.
#[derive(Debug)]
pub struct Managed {
    /// The fixture backend (its direct URL answers the expected results of jobs).
    pub fixture: FixtureServer,
    /// The HTTP fault proxy in front of the fixture.
    pub http: HttpFaultProxy,
    /// The TCP fault proxy in front of the HTTP one; the sidecar's upstream.
    pub tcp: TcpProxy,
    /// The JWKS server and the TCP fault proxy in front of it (`system.jwks`).
    pub(super) jwks: Option<(JwksServer, TcpProxy)>,
    /// The sidecar process.
    pub sidecar: Mutex<Sidecar>,
    /// The run's directory: the sidecar's log, `CHAOS_STATE_DIR`.
    pub dir: tempfile::TempDir,
}

impl Sut {
    /// Sets up `system` (for a managed one: starts everything and waits for the sidecar to be
    /// ready), fault decisions drawn from `seed`.
    pub async fn start(system: &System, sidecar_bin: &Path, seed: u64) -> Result<Self, RunError> {
        match system {
            System::External {
                target_url,
                admin_url,
                backend_stats_url,
            } => Ok(Self {
                target_url: target_url.clone(),
                admin: admin_url.as_deref().map(Admin::new).transpose()?,
                backend: match backend_stats_url {
                    Some(url) => Backend::Stats(Admin::new(url)?),
                    None => Backend::Unknown,
                },
                managed: None,
                bearer: None,
            }),
            System::Managed {
                sidecar_config,
                fixture,
                jwks,
            } => Self::managed(sidecar_config, fixture, *jwks, sidecar_bin, seed).await,
        }
    }

    async fn managed(
        config: &Path,
        options: &FixtureOptions,
        with_jwks: bool,
        bin: &Path,
        seed: u64,
    ) -> Result<Self, RunError> {
        let setup = |what: &str, e: String| RunError::Setup(format!("{what}: {e}"));
        let fixture = FixtureServer::start(FixtureConfig {
            response_mode: if options.sse {
                ResponseMode::Sse
            } else {
                ResponseMode::Json
            },
            stateless: options.stateless,
            conformance_tools: options.conformance_tools,
            ..FixtureConfig::default()
        })
        .await
        .map_err(|e| setup("fixture backend", e.to_string()))?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let http = HttpFaultProxy::start(loopback, &format!("http://{}", fixture.addr()), seed)
            .await
            .map_err(|e| setup("HTTP fault proxy", e.to_string()))?;
        let tcp = TcpProxy::start(
            BACKEND_PROXY,
            "127.0.0.1:0",
            &http.local_addr().to_string(),
            seed,
        )
        .await
        .map_err(|e| setup("TCP fault proxy", e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("mcp-chaos-")
            .tempdir()
            .map_err(|e| setup("state directory", e.to_string()))?;
        let listen = free_port()?;
        let admin_addr = free_port()?;
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).map_err(|e| setup("state directory", e.to_string()))?;
        let mut env = vec![
            ("CHAOS_LISTEN".to_owned(), listen.to_string()),
            ("CHAOS_ADMIN".to_owned(), admin_addr.to_string()),
            (
                "CHAOS_BACKEND_URL".to_owned(),
                format!("http://{}", tcp.local_addr().await),
            ),
            (
                "CHAOS_STATE_DIR".to_owned(),
                state_dir.to_string_lossy().into_owned(),
            ),
        ];
        let (jwks, bearer) = if with_jwks {
            let server = JwksServer::start().await?;
            let link = TcpProxy::start(JWKS_PROXY, "127.0.0.1:0", &server.addr().to_string(), seed)
                .await
                .map_err(|e| setup("TCP fault proxy (JWKS)", e.to_string()))?;
            env.extend([
                (
                    "CHAOS_JWKS_URL".to_owned(),
                    format!("http://{}/jwks.json", link.local_addr().await),
                ),
                ("CHAOS_JWT_ISSUER".to_owned(), jwks::ISSUER.to_owned()),
                ("CHAOS_JWT_AUDIENCE".to_owned(), jwks::AUDIENCE.to_owned()),
            ]);
            (Some((server, link)), Some(jwks::known_key_bearer()?))
        } else {
            (None, None)
        };
        let mut sidecar = Sidecar::new(
            bin.to_owned(),
            config.to_owned(),
            env,
            dir.path().join("sidecar.log"),
            admin_addr,
        )?;
        sidecar.start().await?;
        Ok(Self {
            target_url: format!("http://{listen}/mcp"),
            admin: Some(Admin::new(&format!("http://{admin_addr}"))?),
            backend: Backend::Chain,
            managed: Some(Managed {
                fixture,
                http,
                tcp,
                jwks,
                sidecar: Mutex::new(sidecar),
                dir,
            }),
            bearer,
        })
    }

    /// The TCP fault proxy of `link`.
    pub fn link(&self, link: Link) -> Option<&TcpProxy> {
        let m = self.managed.as_ref()?;
        match link {
            Link::Backend => Some(&m.tcp),
            Link::Jwks => m.jwks.as_ref().map(|(_, proxy)| proxy),
        }
    }

    /// Requests that reached the backend so far, when it can be known.
    pub async fn backend_requests(&self) -> Option<u64> {
        match (&self.backend, &self.managed) {
            (Backend::Chain, Some(m)) => Some(m.http.requests()),
            (Backend::Stats(stats), _) => stats
                .json("/stats")
                .await?
                .get("http_requests_total")?
                .as_u64(),
            _ => None,
        }
    }

    /// Removes every fault and stops what the runner started (the sidecar gets SIGTERM).
    pub async fn shutdown(self) {
        if let Some(m) = self.managed {
            m.http.clear();
            let _ = m.tcp.reset().await;
            m.sidecar.lock().await.stop().await;
            let _ = m.tcp.set_enabled(false).await;
            if let Some((_, link)) = &m.jwks {
                let _ = link.set_enabled(false).await;
            }
            drop(m.http);
            m.fixture.shutdown().await;
        }
    }
}

/// A loopback address with a port free now (bound and released: the sidecar binds it next).
fn free_port() -> Result<SocketAddr, RunError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RunError::Setup(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map_err(|e| RunError::Setup(format!("no free loopback port: {e}")))
}
