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

/// Registers the two info gauges, each one series at 1 (the Prometheus "info" pattern: join on
/// them for the labels): `mcp_sidecar_build_info{version,commit}` and
/// `mcp_sidecar_config_info{hash}` with `config_hash`.
pub fn register_info_metrics(
    registry: &Registry,
    config_hash: &str,
) -> Result<(), prometheus::Error> {
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
    registry.register(Box::new(config))?;
    Ok(())
}
