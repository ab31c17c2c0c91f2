//! Checks a parsed [`Config`] for what types cannot express: addresses that parse, URLs with a
//! usable scheme, mount paths that do not collide, names usable as metric labels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, ConfigError, UpstreamConfig};

/// Parses a socket address, naming the field on failure.
pub(crate) fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            field,
            format!("`{value}` is not a socket address; expected IP:PORT such as 127.0.0.1:8080"),
        )
    })
}

/// Normalises a mount path: leading `/`, no trailing `/` (except the root itself).
pub(crate) fn normalise_mount(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl Config {
    /// Validates the whole config; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listen = parse_addr("listen.addr", &self.listen.addr)?;
        let admin = parse_addr("admin.addr", &self.admin.addr)?;
        if listen == admin && listen.port() != 0 {
            return Err(ConfigError::invalid(
                "admin.addr",
                format!("`{admin}` is also listen.addr; the admin listener needs its own port"),
            ));
        }
        if let Some(token) = &self.admin.token {
            let token = token.expose();
            if token.len() < super::MIN_ADMIN_TOKEN_LEN {
                return Err(ConfigError::invalid(
                    "admin.token",
                    format!(
                        "the token must be at least {} characters (use a random one: openssl rand -hex 32)",
                        super::MIN_ADMIN_TOKEN_LEN
                    ),
                ));
            }
            // What a client can send in `Authorization: Bearer` (RFC 6750 b64token, widened to
            // any visible ASCII): a token no request can carry would lock the operator out.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    "admin.token",
                    "the token must be visible ASCII without spaces (it is sent as `Authorization: Bearer TOKEN`)",
                ));
            }
        }
        if let Some(tls) = &self.listen.tls {
            for (field, path) in [("listen.tls.cert", &tls.cert), ("listen.tls.key", &tls.key)] {
                if !path.is_file() {
                    return Err(ConfigError::invalid(
                        field,
                        format!("file `{}` does not exist or is not a file", path.display()),
                    ));
                }
            }
        }
        if self.shutdown.drain_delay > super::MAX_DRAIN_DELAY {
            return Err(ConfigError::invalid(
                "shutdown.drain_delay",
                format!(
                    "{} is longer than the {} allowed; it only needs to cover how long load balancers take to stop sending (a few seconds)",
                    humantime::format_duration(self.shutdown.drain_delay),
                    humantime::format_duration(super::MAX_DRAIN_DELAY)
                ),
            ));
        }
        nonzero(
            "listen.header_read_timeout",
            self.listen.header_read_timeout,
        )?;
        nonzero("listen.body_read_timeout", self.listen.body_read_timeout)?;
        if self.listen.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "listen.max_body_bytes",
                "must be at least 1",
            ));
        }
        if self.upstream.is_empty() {
            return Err(ConfigError::invalid(
                "upstream",
                "no [[upstream]] configured; add at least one with `name` and `url`",
            ));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut paths: HashMap<String, usize> = HashMap::new();
        for (i, up) in self.upstream.iter().enumerate() {
            let field = |f: &str| format!("upstream[{i}].{f}");
            validate_upstream(up, &field)?;
            super::resilience::validate(up, &field)?;
            if let Some(prev) = names.insert(up.name.as_str(), i) {
                return Err(ConfigError::invalid(
                    field("name"),
                    format!(
                        "`{}` is already the name of upstream[{prev}]; names must be unique",
                        up.name
                    ),
                ));
            }
            let mount = up.mount_path();
            if self.jobs.enabled
                && (mount == self.jobs.path || mount.starts_with(&format!("{}/", self.jobs.path)))
            {
                return Err(ConfigError::invalid(
                    field("path"),
                    format!(
                        "`{mount}` is under jobs.path `{}`, where the job API is served; mount the upstream elsewhere or set jobs.path",
                        self.jobs.path
                    ),
                ));
            }
            for (t, tool) in up.tool.iter().enumerate() {
                if let Some(d) = tool.job_deadline {
                    nonzero(&field(&format!("tool[{t}].job_deadline")), d)?;
                }
            }
            super::tasks::validate(up, self.jobs.enabled, &field)?;
            if let Some(prev) = paths.insert(mount.clone(), i) {
                return Err(ConfigError::invalid(
                    field("path"),
                    format!(
                        "`{mount}` is already the path of upstream[{prev}]; each upstream needs its own path"
                    ),
                ));
            }
        }
        super::limits::validate(self)?;
        self.validate_auth()?;
        self.cors.validate()?;
        self.jobs.validate()?;
        if self.jobs.enabled && self.jobs.store == super::StoreKind::Redis && self.redis.is_none() {
            return Err(ConfigError::invalid(
                "jobs.store",
                "`redis` needs a [redis] section (url = \"${REDIS_URL}\") naming the server the replicas share",
            ));
        }
        if let Some(redis) = &self.redis {
            redis.validate()?;
        }
        self.tracing.validate()?;
        Ok(())
    }
}

fn nonzero(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

fn validate_upstream(
    up: &UpstreamConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if up.name.is_empty()
        || up.name.len() > 64
        || !up
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::invalid(
            field("name"),
            format!(
                "`{}` must be 1-64 characters of letters, digits, `_` or `-` (it is a metric label)",
                up.name
            ),
        ));
    }
    let url = url::Url::parse(&up.url).map_err(|e| {
        ConfigError::invalid(field("url"), format!("`{}` is not a URL: {e}", up.url))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(
            field("url"),
            format!(
                "scheme `{}` is not supported; use http:// or https://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            field("url"),
            format!("`{}` has no host", up.url),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            field("url"),
            format!(
                "`{}` must not have a query or fragment",
                super::view::shown_url(&up.url)
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            field("url"),
            "credentials in the URL are not supported (they would end up in logs)",
        ));
    }
    if let Some(path) = &up.path {
        if !path.starts_with('/') {
            return Err(ConfigError::invalid(
                field("path"),
                format!("`{path}` must start with `/`"),
            ));
        }
        if path.contains(['?', '#']) || path.contains("//") || path.split('/').any(|s| s == "..") {
            return Err(ConfigError::invalid(
                field("path"),
                format!("`{path}` must be a plain path without `?`, `#`, `//` or `..`"),
            ));
        }
    }
    if up.ca_file.is_some() && url.scheme() != "https" {
        return Err(ConfigError::invalid(
            field("ca_file"),
            "only meaningful with an https:// url",
        ));
    }
    if let Some(ca) = &up.ca_file
        && !ca.is_file()
    {
        return Err(ConfigError::invalid(
            field("ca_file"),
            format!("file `{}` does not exist or is not a file", ca.display()),
        ));
    }
    nonzero(&field("connect_timeout"), up.connect_timeout)?;
    nonzero(&field("response_timeout"), up.response_timeout)?;
    nonzero(&field("stream_idle_timeout"), up.stream_idle_timeout)?;
    nonzero(&field("pool_idle_timeout"), up.pool_idle_timeout)?;
    nonzero(&field("health_interval"), up.health_interval)?;
    Ok(())
}

impl UpstreamConfig {
    /// The normalised path clients use on the sidecar (the URL's own path when `path` is unset).
    pub fn mount_path(&self) -> String {
        match &self.path {
            Some(p) => normalise_mount(p),
            None => url::Url::parse(&self.url)
                .map(|u| normalise_mount(u.path()))
                .unwrap_or_else(|_| "/".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use proptest::prelude::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, &no_env)
    }

    const MINIMAL: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:8000/mcp\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.listen.addr, DEFAULT_LISTEN_ADDR);
        assert_eq!(c.admin.addr, DEFAULT_ADMIN_ADDR);
        assert_eq!(c.shutdown.grace_period, DEFAULT_GRACE_PERIOD);
        assert_eq!(c.upstream[0].mount_path(), "/mcp");
        assert_eq!(c.upstream[0].sse_keepalive, DEFAULT_SSE_KEEPALIVE);
    }

    #[test]
    fn drain_delay_defaults_and_refuses_what_is_surely_a_typo() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.shutdown.drain_delay, DEFAULT_DRAIN_DELAY);
        let c = load(&format!("[shutdown]\ndrain_delay = \"0s\"\n{MINIMAL}")).unwrap();
        assert!(
            c.shutdown.drain_delay.is_zero(),
            "0s goes straight to the grace period"
        );
        let err = load(&format!("[shutdown]\ndrain_delay = \"5m 1s\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("shutdown.drain_delay:"), "{err}");
        assert!(err.contains("5m"), "{err}");
    }

    #[test]
    fn admin_token_must_be_a_long_enough_env_reference() {
        let env = |name: &str| match name {
            "LONG" => Some("0123456789abcdef0123456789abcdef".to_owned()),
            "SHORT" => Some("tooshort".to_owned()),
            "SPACED" => Some("0123456789abcdef 0123456789abcdef".to_owned()),
            _ => None,
        };
        let load = |token: &str| {
            Config::from_toml_with_env(&format!("[admin]\ntoken = \"{token}\"\n{MINIMAL}"), &env)
        };
        let c = load("${LONG}").unwrap();
        assert_eq!(
            c.admin.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123456789abcdef")
        );
        for (token, says) in [
            ("0123456789abcdef0123456789abcdef", "environment reference"),
            ("${SHORT}", "at least 32"),
            ("${SPACED}", "visible ASCII"),
        ] {
            let err = load(token).unwrap_err().to_string();
            assert!(err.starts_with("admin.token:"), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn durations_are_human_readable() {
        let c = load(&format!(
            "{MINIMAL}response_timeout = \"10m\"\nsse_keepalive = \"0s\"\n"
        ))
        .unwrap();
        assert_eq!(c.upstream[0].response_timeout, Duration::from_secs(600));
        assert!(c.upstream[0].sse_keepalive.is_zero());
    }

    #[test]
    fn body_read_limits_default_and_validate() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.listen.body_read_timeout, DEFAULT_BODY_READ_TIMEOUT);
        assert_eq!(c.listen.body_min_rate, DEFAULT_BODY_MIN_RATE);
        let c = load(&format!(
            "[listen]\nbody_read_timeout = \"5s\"\nbody_min_rate = 0\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(c.listen.body_read_timeout, Duration::from_secs(5));
        assert_eq!(c.listen.body_min_rate, 0, "0 turns the rate rule off");
        let err = load(&format!("[listen]\nbody_read_timeout = \"0s\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("listen.body_read_timeout:"), "{err}");
        let err = load(&format!("[listen]\nbody_min_rate = -1\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("body_min_rate"), "{err}");
    }

    #[test]
    fn unknown_field_is_named() {
        let err = load(&format!("{MINIMAL}conect_timeout = \"1s\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("conect_timeout"), "{err}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = load(&format!("[listn]\naddr = \"x\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn bad_url_is_named() {
        let err = load("[[upstream]]\nname = \"a\"\nurl = \"not a url\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("upstream[0].url:"), "{err}");
        let err = load("[[upstream]]\nname = \"a\"\nurl = \"ftp://h/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp"), "{err}");
    }

    #[test]
    fn duplicate_path_is_named() {
        let text = "[[upstream]]\nname = \"a\"\nurl = \"http://h:1/mcp\"\n\
                    [[upstream]]\nname = \"b\"\nurl = \"http://h:2/x\"\npath = \"/mcp/\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(err.starts_with("upstream[1].path:"), "{err}");
        assert!(err.contains("upstream[0]"), "{err}");
    }

    #[test]
    fn duplicate_name_is_named() {
        let text = "[[upstream]]\nname = \"a\"\nurl = \"http://h:1/mcp\"\n\
                    [[upstream]]\nname = \"a\"\nurl = \"http://h:2/x\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(err.starts_with("upstream[1].name:"), "{err}");
    }

    #[test]
    fn missing_env_var_is_named() {
        let text = "[[upstream]]\nname = \"a\"\nurl = \"${SHIELD_URL}\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(
            err.contains("upstream[0].url") && err.contains("SHIELD_URL"),
            "{err}"
        );
    }

    #[test]
    fn env_vars_resolve_before_validation() {
        let text = "[[upstream]]\nname = \"a\"\nurl = \"http://${H}/mcp\"\n";
        let c = Config::from_toml_with_env(text, &|n| (n == "H").then(|| "127.0.0.1:9".into()))
            .unwrap();
        assert_eq!(c.upstream[0].url, "http://127.0.0.1:9/mcp");
    }

    #[test]
    fn no_upstream_is_rejected() {
        let err = load("[listen]\naddr = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("upstream:"), "{err}");
    }

    #[test]
    fn bad_listen_addr_is_named() {
        let err = load(&format!("[listen]\naddr = \"localhost\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("listen.addr:"), "{err}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let err = load(&format!("{MINIMAL}response_timeout = \"0s\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("upstream[0].response_timeout:"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err = load(&format!("{MINIMAL}response_timeout = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("response_timeout"), "{err}");
    }

    #[test]
    fn missing_tls_file_is_named() {
        let err = load(&format!(
            "[listen]\ntls = {{ cert = \"/nope.pem\", key = \"/nope.key\" }}\n{MINIMAL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("listen.tls.cert:"), "{err}");
    }

    #[test]
    fn bad_name_is_rejected() {
        let err = load("[[upstream]]\nname = \"a b\"\nurl = \"http://h:1/\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("upstream[0].name:"), "{err}");
    }

    #[test]
    fn mount_paths_are_normalised() {
        assert_eq!(super::normalise_mount("/mcp/"), "/mcp");
        assert_eq!(super::normalise_mount("/"), "/");
        assert_eq!(super::normalise_mount("///"), "/");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = load(&text);
        }

        #[test]
        fn arbitrary_upstream_values_are_accepted_or_named(
            name in "[a-zA-Z0-9 _.-]{0,10}",
            url in "(http|https|ftp)://[a-z0-9.]{0,8}(:[0-9]{1,5})?(/[a-z?#]{0,5}){0,3}",
            path in "/?[a-z/?#.]{0,8}",
        ) {
            let text = format!("[[upstream]]\nname = {name:?}\nurl = {url:?}\npath = {path:?}\n");
            match load(&text) {
                Ok(c) => prop_assert!(c.upstream[0].mount_path().starts_with('/')),
                Err(e) => prop_assert!(e.to_string().starts_with("upstream[0]."), "{}", e),
            }
        }

        #[test]
        fn arbitrary_durations_are_accepted_or_named(d in "[0-9a-z ]{0,6}") {
            let text = format!("{MINIMAL}connect_timeout = {d:?}\n");
            if let Err(e) = load(&text) {
                prop_assert!(e.to_string().contains("connect_timeout"), "{}", e);
            }
        }
    }
}
