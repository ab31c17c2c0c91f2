//! What this binary is: its version and the commit it was built from (recorded by
//! `proxy/build.rs`), and the info metrics that publish them and the running config's hash.

use prometheus::{IntGaugeVec, Opts, Registry};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short commit hash the binary was built from, or `unknown` (built without git).
pub const COMMIT: &str = env!("MCP_SIDECAR_COMMIT");
/// What `--version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MCP_SIDECAR_COMMIT"),
    ")"
);

/// `mcp_sidecar_config_info{hash}`: one series, the running config's. A reload moves it to the
/// new hash (the old series goes: a join on it must see one config at a time).
#[derive(Debug, Clone)]
pub struct ConfigInfo(IntGaugeVec);

impl ConfigInfo {
    /// The running config is now the one hashed `new` (it was `old`).
    pub fn replace(&self, old: &str, new: &str) {
        if old != new {
            let _ = self.0.remove_label_values(&[old]);
        }
        self.0.with_label_values(&[new]).set(1);
    }
}

/// Registers the two info gauges, each one series at 1 (the Prometheus "info" pattern: join on
/// them for the labels): `mcp_sidecar_build_info{version,commit}` and
/// `mcp_sidecar_config_info{hash}` with `config_hash`; the second is returned for reloads.
pub fn register_info_metrics(
    registry: &Registry,
    config_hash: &str,
) -> Result<ConfigInfo, prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new(
            "mcp_sidecar_build_info",
            "Always 1; the labels say which build runs (version, commit).",
        ),
        &["version", "commit"],
    )?;
    build.with_label_values(&[VERSION, COMMIT]).set(1);
    let config = IntGaugeVec::new(
        Opts::new(
            "mcp_sidecar_config_info",
            "Always 1; `hash` is the SHA-256 of the running config's canonical form \
             (GET /config on the admin listener), secrets redacted.",
        ),
        &["hash"],
    )?;
    config.with_label_values(&[config_hash]).set(1);
    registry.register(Box::new(build))?;
    registry.register(Box::new(config.clone()))?;
    Ok(ConfigInfo(config))
}
