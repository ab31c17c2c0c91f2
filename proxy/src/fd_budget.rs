//! The file-descriptor budget: at start the soft `RLIMIT_NOFILE` is raised to the hard limit
//! (as nginx's `worker_rlimit_nofile` and Go's runtime do), and the descriptors the configured
//! caps can hold at once are estimated and checked against it.
//!
//! Every proxied request and stream holds two descriptors (the client's connection and the
//! backend's), so the caps, not the traffic, decide how many the sidecar may need. Many systems
//! still start services with a soft limit of 1,024 and a far higher hard limit: without the
//! raise, 1,000 SSE streams exhaust the table long before `limits.max_streams`, and every
//! request after that fails for want of a descriptor (`503 local_resources`,
//! `crate::local_resources`). When even the hard limit cannot hold what the caps allow, the
//! warning names the fields to lower (or the limit to raise).

use crate::config::Config;

/// Descriptors per proxied request or stream: the client's connection and the backend's.
pub const DESCRIPTORS_PER_EXCHANGE: u64 = 2;

/// Descriptors kept for what the caps do not count: standard streams, the runtime's epoll and
/// wake-up descriptors, health-check and JWKS connections, admin scrapes, idle keep-alive
/// client connections between requests, files read at start. A few dozen in practice; 64 leaves
/// room.
pub const SLACK: u64 = 64;

/// What the configured caps can hold open at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Descriptors needed when every cap is full.
    pub needed: u64,
    /// The terms of `needed`, as `(config field, descriptors)`, for the warning.
    pub terms: Vec<(String, u64)>,
    /// Caps that are off (`0`): what they admit is bounded only by the descriptor limit.
    pub uncapped: Vec<&'static str>,
}

/// Estimates the descriptors `config`'s caps can hold open at once: two per standalone stream
/// (`limits.max_streams`) and per request in flight (`limits.max_in_flight`, or the sum of the
/// upstreams' `max_in_flight` when that is lower or the global cap is off), the idle pooled
/// backend connections (`upstream[].pool_max_idle`), one per listener and per upstream's health
/// check, and [`SLACK`].
pub fn estimate(config: &Config) -> Estimate {
    let mut terms = Vec::new();
    let mut uncapped = Vec::new();
    let streams = config.limits.max_streams as u64;
    if streams == 0 {
        uncapped.push("limits.max_streams");
    } else {
        terms.push((
            "limits.max_streams".to_owned(),
            streams * DESCRIPTORS_PER_EXCHANGE,
        ));
    }
    let per_upstream = config
        .upstream
        .iter()
        .map(|u| (u.max_in_flight > 0).then_some(u.max_in_flight as u64))
        .sum::<Option<u64>>()
        .filter(|_| !config.upstream.is_empty());
    let global = (config.limits.max_in_flight > 0).then_some(config.limits.max_in_flight as u64);
    let in_flight = match (global, per_upstream) {
        (Some(g), Some(u)) if u < g => Some(("upstream[].max_in_flight", u)),
        (Some(g), _) => Some(("limits.max_in_flight", g)),
        (None, Some(u)) => Some(("upstream[].max_in_flight", u)),
        (None, None) => None,
    };
    match in_flight {
        Some((field, n)) => terms.push((field.to_owned(), n * DESCRIPTORS_PER_EXCHANGE)),
        None => uncapped.push("limits.max_in_flight"),
    }
    let pooled: u64 = config.upstream.iter().map(|u| u.pool_max_idle as u64).sum();
    terms.push(("upstream[].pool_max_idle".to_owned(), pooled));
    let listeners = 2 + config.upstream.len() as u64;
    terms.push(("listeners and health checks".to_owned(), listeners));
    terms.push(("slack".to_owned(), SLACK));
    Estimate {
        needed: terms.iter().map(|(_, n)| n).sum(),
        terms,
        uncapped,
    }
}

/// The descriptor limit before and after [`raise_nofile`]; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit the process started with.
    pub before: Option<u64>,
    /// The soft limit in force now.
    pub soft: Option<u64>,
    /// The hard limit (the most the soft one can be raised to).
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. The limit is the process's: a sidecar
/// that shares its process with other work (tests) raises it for them too.
#[cfg(unix)]
pub fn raise_nofile() -> std::io::Result<NofileLimit> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let start = getrlimit(Resource::Nofile);
    let mut limit = NofileLimit {
        before: start.current,
        soft: start.current,
        hard: start.maximum,
    };
    if start.current != start.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: start.maximum,
                maximum: start.maximum,
            },
        )?;
        limit.soft = getrlimit(Resource::Nofile).current;
    }
    Ok(limit)
}

/// No descriptor limit to raise off Unix.
#[cfg(not(unix))]
pub fn raise_nofile() -> std::io::Result<NofileLimit> {
    Ok(NofileLimit {
        before: None,
        soft: None,
        hard: None,
    })
}

/// The warning for `estimate` against a soft limit of `soft`, if the caps cannot fit in it.
pub fn shortfall(estimate: &Estimate, soft: Option<u64>) -> Option<String> {
    let soft = soft?;
    if estimate.needed <= soft {
        return None;
    }
    let terms: Vec<String> = estimate
        .terms
        .iter()
        .map(|(field, n)| format!("{field}: {n}"))
        .collect();
    Some(format!(
        "the configured caps can hold {} file descriptors open ({}), more than the limit of {soft} \
         (RLIMIT_NOFILE): requests beyond it get 503 local_resources; lower limits.max_streams, \
         limits.max_in_flight or upstream[].pool_max_idle, or raise the hard limit \
         (ulimit -Hn, systemd LimitNOFILE, docker --ulimit nofile)",
        estimate.needed,
        terms.join(", ")
    ))
}

/// Raises the descriptor limit and logs the result, warning when `config`'s caps cannot fit in
/// it. Called once by the binary before the sidecar binds.
pub fn apply(config: &Config) {
    let limit = match raise_nofile() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the file descriptor limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let estimate = estimate(config);
    let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        soft = %show(limit.soft),
        hard = %show(limit.hard),
        before = %show(limit.before),
        needed = estimate.needed,
        "file descriptor limit (RLIMIT_NOFILE)"
    );
    if let Some(warning) = shortfall(&estimate, limit.soft) {
        tracing::warn!("{warning}");
    }
    if !estimate.uncapped.is_empty() {
        tracing::info!(
            uncapped = %estimate.uncapped.join(", "),
            "caps set to 0: what they admit is bounded only by the descriptor limit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn config(max_streams: usize, max_in_flight: usize, pools: &[usize]) -> Config {
        let mut config: Config = toml::from_str("").unwrap();
        config.limits.max_streams = max_streams;
        config.limits.max_in_flight = max_in_flight;
        config.upstream = pools
            .iter()
            .enumerate()
            .map(|(i, &pool)| {
                let mut u = UpstreamConfig::new(format!("u{i}"), "http://h:1/mcp", None);
                u.pool_max_idle = pool;
                u
            })
            .collect();
        config
    }

    #[test]
    fn two_descriptors_per_stream_and_request_plus_pools_listeners_and_slack() {
        let e = estimate(&config(1000, 200, &[32, 8]));
        // 2 x 1000 streams + 2 x 200 requests + 40 pooled + 2 listeners + 2 health checks + 64.
        assert_eq!(e.needed, 2000 + 400 + 40 + 4 + SLACK);
        assert!(e.uncapped.is_empty());
        assert_eq!(e.terms[0], ("limits.max_streams".to_owned(), 2000));
    }

    #[test]
    fn the_defaults_fit_in_a_typical_hard_limit_but_not_in_1024() {
        let e = estimate(&config(
            crate::config::DEFAULT_MAX_STREAMS,
            crate::config::DEFAULT_MAX_IN_FLIGHT,
            &[crate::config::DEFAULT_POOL_MAX_IDLE],
        ));
        assert!(shortfall(&e, Some(1 << 20)).is_none());
        let warning = shortfall(&e, Some(1024)).unwrap();
        for field in [
            "limits.max_streams",
            "limits.max_in_flight",
            "upstream[].pool_max_idle",
            "1024",
        ] {
            assert!(warning.contains(field), "{warning}");
        }
    }

    #[test]
    fn per_upstream_caps_bound_in_flight_when_lower_or_when_the_global_cap_is_off() {
        let mut c = config(0, 1000, &[0, 0]);
        c.upstream[0].max_in_flight = 10;
        c.upstream[1].max_in_flight = 20;
        let e = estimate(&c);
        assert_eq!(e.terms[0], ("upstream[].max_in_flight".to_owned(), 60));
        assert_eq!(e.uncapped, ["limits.max_streams"]);
        c.limits.max_in_flight = 0;
        assert_eq!(estimate(&c).terms[0].1, 60);
        c.upstream[1].max_in_flight = 0;
        assert_eq!(
            estimate(&c).uncapped,
            ["limits.max_streams", "limits.max_in_flight"]
        );
    }

    #[test]
    fn an_unlimited_soft_limit_never_warns() {
        let e = estimate(&config(1 << 20, 1 << 20, &[]));
        assert!(shortfall(&e, None).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let limit = raise_nofile().unwrap();
        assert_eq!(limit.soft, limit.hard);
    }
}
