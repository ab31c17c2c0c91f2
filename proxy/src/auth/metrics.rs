//! The auth module's own metrics, registered into the sidecar's registry.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Authentication/authorization counters and JWKS state.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    /// `mcp_sidecar_auth_total{method,outcome}`: one per authentication or authorization decision
    /// that was not a plain pass (`method`: `api_key`, `jwt`, `none`).
    pub outcomes: IntCounterVec,
    /// `mcp_sidecar_auth_token_cache_total{result}`: `hit` / `miss`.
    pub token_cache: IntCounterVec,
    /// `mcp_sidecar_jwks_refresh_total{issuer,result}`: `ok` / `error`.
    pub jwks_refresh: IntCounterVec,
    /// `mcp_sidecar_jwks_stale{issuer}`: 1 while keys are served past a failed refresh.
    pub jwks_stale: IntGaugeVec,
    /// `mcp_sidecar_jwks_keys{issuer}`: usable keys held.
    pub jwks_keys: IntGaugeVec,
}

impl AuthMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_auth_total",
                "Authentication and authorization outcomes, by credential type and outcome.",
            ),
            &["method", "outcome"],
        )?;
        let token_cache = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_auth_token_cache_total",
                "Validated-token cache lookups, by result (hit, miss).",
            ),
            &["result"],
        )?;
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "mcp_sidecar_jwks_refresh_total",
                "JWKS fetches, by issuer id and result (ok, error).",
            ),
            &["issuer", "result"],
        )?;
        let jwks_stale = IntGaugeVec::new(
            Opts::new(
                "mcp_sidecar_jwks_stale",
                "1 while an issuer's signing keys are served after a failed refresh.",
            ),
            &["issuer"],
        )?;
        let jwks_keys = IntGaugeVec::new(
            Opts::new(
                "mcp_sidecar_jwks_keys",
                "Usable signing keys held, by issuer id.",
            ),
            &["issuer"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        registry.register(Box::new(token_cache.clone()))?;
        registry.register(Box::new(jwks_refresh.clone()))?;
        registry.register(Box::new(jwks_stale.clone()))?;
        registry.register(Box::new(jwks_keys.clone()))?;
        Ok(Self {
            outcomes,
            token_cache,
            jwks_refresh,
            jwks_stale,
            jwks_keys,
        })
    }

    /// Counts one outcome.
    pub fn outcome(&self, method: &str, outcome: &str) {
        self.outcomes.with_label_values(&[method, outcome]).inc();
    }
}
