//! What a reload changes: the fields only a restart can change (the reload is refused whole when
//! one did), what changed at the top level (for the answer and the log), and what the new
//! config gets only partly until a restart (warnings).

use serde_json::Value;

use crate::config::Config;

/// What happens to a `[jobs]` key on reload: every one but `path` configures the job engine and
/// its store, which a reload never rebuilds (jobs in the store and running would be lost).
const JOBS_SWAPPABLE: &[&str] = &["path"];

/// One field a reload cannot change, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartField {
    /// Its path (`listen.addr`, `jobs.data_dir`).
    pub field: String,
    /// What changed and why only a restart applies it.
    pub why: String,
}

impl std::fmt::Display for RestartField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; needs a restart", self.field, self.why)
    }
}

/// The fields `new` changes that only a restart can: the listeners' addresses (bound once),
/// turning TLS on or off on the client listener (the protocol of connections already
/// accepted), and the job engine's settings and store (its queues and the jobs in it live
/// across reloads).
pub fn restart_fields(old: &Config, new: &Config) -> Vec<RestartField> {
    let mut out = Vec::new();
    let mut addr = |field: &str, before: Option<std::net::SocketAddr>, after| {
        if before != after {
            let show =
                |a: Option<std::net::SocketAddr>| a.map_or("?".to_owned(), |a| a.to_string());
            out.push(RestartField {
                field: field.to_owned(),
                why: format!(
                    "{} -> {} (the listener is bound once, at start)",
                    show(before),
                    show(after)
                ),
            });
        }
    };
    addr(
        "listen.addr",
        old.listen_addr().ok(),
        new.listen_addr().ok(),
    );
    addr("admin.addr", old.admin_addr().ok(), new.admin_addr().ok());
    if old.listen.tls.is_some() != new.listen.tls.is_some() {
        let state = |on: bool| if on { "on" } else { "off" };
        out.push(RestartField {
            field: "listen.tls".to_owned(),
            why: format!(
                "TLS {} -> {} (the listener's protocol is set at start; a changed certificate or \
                 key file is read again on reload)",
                state(old.listen.tls.is_some()),
                state(new.listen.tls.is_some())
            ),
        });
    }
    // The span exporter and the Redis connection are one per process, made at start (the
    // exporter's task, the connection other features' state lives behind).
    for (field, before, after) in [
        ("tracing", json(&old.tracing), json(&new.tracing)),
        ("redis", json(&old.redis), json(&new.redis)),
    ] {
        if before != after {
            out.push(RestartField {
                field: field.to_owned(),
                why: "the section changed (it is set up once, at start)".to_owned(),
            });
        }
    }
    let (before, after) = (json(&old.jobs), json(&new.jobs));
    if let (Value::Object(before), Value::Object(after)) = (&before, &after) {
        for (key, value) in before {
            if JOBS_SWAPPABLE.contains(&key.as_str()) || after.get(key) == Some(value) {
                continue;
            }
            out.push(RestartField {
                field: format!("jobs.{key}"),
                why: format!(
                    "{} -> {} (the job engine and its store are set at start, and outlive reloads)",
                    short(value),
                    after.get(key).map_or("?".to_owned(), short)
                ),
            });
        }
    }
    out
}

/// The top-level sections (`upstream`, `rate_limit`, `auth`, ...) whose redacted view differs.
/// Secrets are redacted in both, so a rotated key alone shows no change (it is applied all
/// the same).
pub fn changed_sections(old: &Value, new: &Value) -> Vec<String> {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

/// What the new config gets only partly until a restart: with the job engine on, an upstream
/// added by the reload serves live calls, but its calls cannot become jobs (the engine's
/// per-upstream queues are made at start).
pub fn warnings(old: &Config, new: &Config) -> Vec<String> {
    if !new.jobs.enabled {
        return Vec::new();
    }
    new.upstream
        .iter()
        .filter(|u| !old.upstream.iter().any(|o| o.name == u.name))
        .map(|u| {
            format!(
                "upstream `{}` is new: it serves live calls now, but its calls can become jobs \
                 (and MCP tasks) only after a restart (the job engine's per-upstream queues are \
                 made at start)",
                u.name
            )
        })
        .collect()
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A value as an error message shows it: JSON, cut short.
fn short(v: &Value) -> String {
    const MAX: usize = 80;
    let text = v.to_string();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}
