//! `[tracing]`: OpenTelemetry traces (see [`crate::trace`]): off by default; when on, a span per
//! request, per upstream attempt and per job run, exported over OTLP/HTTP (protobuf).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where spans go by default: the OTLP/HTTP port of a collector (or agent) on the same host or
/// pod, the layout the OpenTelemetry Collector's and most vendors' agents use out of the box.
pub const DEFAULT_TRACING_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";
/// Share of new traces (requests without a sampled parent) recorded. 1.0 is the OpenTelemetry
/// SDKs' default (`parentbased_always_on`): a sidecar beside one legacy server sees modest
/// traffic, and an operator who turns tracing on expects to see every request first; busy
/// instances lower it. A client's own decision (its `traceparent`'s sampled flag) always wins.
pub const DEFAULT_TRACING_SAMPLING: f64 = 1.0;
/// `service.name` of the exported spans: the sidecar's own name, so its spans are told apart from
/// the backend's (which reports its own service name) in the same trace.
pub const DEFAULT_TRACING_SERVICE_NAME: &str = "mcp-sidecar";
/// Longest wait for the collector to answer one export: the OpenTelemetry SDKs' default
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`). Exports run off the request path, so a slow collector only
/// delays the next batch (spans that do not fit the queue meanwhile are counted and dropped).
pub const DEFAULT_TRACING_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `tracing.export_timeout` accepted: a longer one is almost surely a unit typo, and it
/// would hold a full queue for that long at shutdown.
pub const MAX_TRACING_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// `[tracing]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Record and export spans. Default `false`: no span is made, no header read.
    #[serde(default)]
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces URL (protobuf), `http://` or `https://`. Default
    /// `http://127.0.0.1:4318/v1/traces`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Share of new traces recorded, 0.0 to 1.0; a client's sampled flag is honoured. Default 1.0.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
    /// `service.name` of the spans. Default `mcp-sidecar`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Longest wait for the collector to answer one export. Default 10 s.
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub export_timeout: Duration,
}

fn default_endpoint() -> String {
    DEFAULT_TRACING_ENDPOINT.to_owned()
}
fn default_sampling() -> f64 {
    DEFAULT_TRACING_SAMPLING
}
fn default_service_name() -> String {
    DEFAULT_TRACING_SERVICE_NAME.to_owned()
}
fn default_export_timeout() -> Duration {
    DEFAULT_TRACING_EXPORT_TIMEOUT
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: default_endpoint(),
            sampling: DEFAULT_TRACING_SAMPLING,
            service_name: default_service_name(),
            export_timeout: DEFAULT_TRACING_EXPORT_TIMEOUT,
        }
    }
}

impl TracingConfig {
    /// Validates `[tracing]` (checked when off too: turning it on later must not be the moment a
    /// typo shows up); errors name the field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.endpoint).map_err(|e| {
            ConfigError::invalid(
                "tracing.endpoint",
                format!(
                    "`{}` is not a URL ({e}); expected the collector's OTLP/HTTP traces URL such as {DEFAULT_TRACING_ENDPOINT}",
                    self.endpoint
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                "tracing.endpoint",
                format!(
                    "`{}` must be an http:// or https:// URL with a host (OTLP/HTTP; gRPC is not supported)",
                    self.endpoint
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::invalid(
                "tracing.endpoint",
                "must not carry credentials (they would be shown by GET /config and in logs)",
            ));
        }
        if !(0.0..=1.0).contains(&self.sampling) {
            return Err(ConfigError::invalid(
                "tracing.sampling",
                format!(
                    "{} is not a ratio; expected 0.0 (no new traces) to 1.0 (every one)",
                    self.sampling
                ),
            ));
        }
        let name = self.service_name.trim();
        if name.is_empty() || name.len() != self.service_name.len() {
            return Err(ConfigError::invalid(
                "tracing.service_name",
                "must be a non-empty name without surrounding spaces",
            ));
        }
        if self.export_timeout.is_zero() || self.export_timeout > MAX_TRACING_EXPORT_TIMEOUT {
            return Err(ConfigError::invalid(
                "tracing.export_timeout",
                "must be greater than zero and at most 60s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(tracing: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:9/mcp\"\n[tracing]\n{tracing}"
        );
        Config::from_toml_with_env(&text, &|_| None)
    }

    fn field_of(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn tracing_is_off_by_default_with_the_otlp_http_defaults() {
        let c = load("").unwrap().tracing;
        assert_eq!(c, TracingConfig::default());
        assert!(!c.enabled);
        assert_eq!(c.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert!((c.sampling - 1.0).abs() < f64::EPSILON);
        assert_eq!(c.service_name, "mcp-sidecar");
        assert_eq!(c.export_timeout, Duration::from_secs(10));
    }

    #[test]
    fn tracing_keys_are_read() {
        let c = load(
            "enabled = true\nendpoint = \"https://otel.example:4318/v1/traces\"\nsampling = 0.25\n\
             service_name = \"search-sidecar\"\nexport_timeout = \"3s\"",
        )
        .unwrap()
        .tracing;
        assert!(c.enabled);
        assert_eq!(c.endpoint, "https://otel.example:4318/v1/traces");
        assert!((c.sampling - 0.25).abs() < f64::EPSILON);
        assert_eq!(c.service_name, "search-sidecar");
        assert_eq!(c.export_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_tracing_values_are_refused_naming_the_field() {
        for (toml, field) in [
            ("endpoint = \"not a url\"", "tracing.endpoint"),
            ("endpoint = \"grpc://127.0.0.1:4317\"", "tracing.endpoint"),
            (
                "endpoint = \"http://user:pw@127.0.0.1:4318/v1/traces\"",
                "tracing.endpoint",
            ),
            ("sampling = 1.5", "tracing.sampling"),
            ("sampling = -0.1", "tracing.sampling"),
            ("sampling = nan", "tracing.sampling"),
            ("service_name = \"\"", "tracing.service_name"),
            ("service_name = \" x\"", "tracing.service_name"),
            ("export_timeout = \"0s\"", "tracing.export_timeout"),
            ("export_timeout = \"2m\"", "tracing.export_timeout"),
        ] {
            assert_eq!(field_of(load(toml).unwrap_err()), field, "{toml}");
        }
        assert!(matches!(
            load("exporter = \"otlp\""),
            Err(ConfigError::Parse(_))
        ));
    }
}
