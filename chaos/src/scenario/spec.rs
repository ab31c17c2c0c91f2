//! The TOML form of a [`Scenario`] and its checks. Every table refuses unknown keys; durations are
//! humantime strings (`"250ms"`, `"2s"`); each error names the line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Table, Value};

use super::{
    Fault, FaultAction, FixtureOptions, Link, Load, Request, Scenario, ScenarioError, Signal,
    SteadyState, System, Traffic,
};
use crate::http::spec::{FaultSpec, SpecError};
use crate::tcp::toxic::Toxic;

/// Default virtual sessions: one, so a plain scenario needs no session arithmetic.
const DEFAULT_SESSIONS: u32 = 1;
/// Default per-request timeout: mcp-load's own default, so results compare with its runs.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSpec {
    name: String,
    description: Spanned<String>,
    seed: Option<u64>,
    system: Spanned<SystemSpec>,
    traffic: Spanned<TrafficSpec>,
    steady_state: Spanned<SteadyStateSpec>,
    #[serde(default)]
    fault: Vec<Spanned<FaultEntry>>,
    #[serde(default)]
    assert: Vec<Spanned<Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemSpec {
    sidecar_config: Option<String>,
    fixture: Option<FixtureSpec>,
    #[serde(default)]
    jwks: bool,
    target_url: Option<String>,
    admin_url: Option<String>,
    backend_stats_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum FixtureMode {
    Json,
    Sse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureSpec {
    mode: Option<FixtureMode>,
    #[serde(default)]
    stateless: bool,
    #[serde(default)]
    conformance_tools: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficSpec {
    rate: Option<f64>,
    concurrency: Option<u32>,
    call: Option<String>,
    method: Option<String>,
    sessions: Option<u32>,
    timeout: Option<Spanned<String>>,
    duration: Spanned<String>,
    #[serde(default)]
    jobs: u32,
    job_call: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SteadyStateSpec {
    duration: Spanned<String>,
    min_success_rate: Option<Spanned<f64>>,
    max_p99: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultEntry {
    name: Option<String>,
    at: Spanned<String>,
    until: Option<Spanned<String>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    toxic: Option<Spanned<Table>>,
    proxy_down: Option<Spanned<bool>>,
    http: Option<Spanned<Table>>,
    kill_sidecar: Option<Spanned<String>>,
    restart_after: Option<Spanned<String>>,
    link: Option<Spanned<String>>,
}

/// Errors of one file: the path and the text, to turn byte offsets into lines.
pub(super) struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(0, |before| before.matches('\n').count())
            + 1
    }

    pub(super) fn err(&self, offset: usize, message: String) -> ScenarioError {
        ScenarioError {
            path: self.path.to_owned(),
            line: Some(self.line(offset)),
            message,
        }
    }

    fn duration(&self, key: &str, value: &Spanned<String>) -> Result<Duration, ScenarioError> {
        parse_duration(key, value.get_ref()).map_err(|m| self.err(value.span().start, m))
    }
}

pub(super) fn parse_duration(key: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{key} = \"{value}\": {e} (a duration such as \"250ms\" or \"2s\")"))
}

/// Parses and checks a scenario file's text.
pub(super) fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { path, text };
    let spec: ScenarioSpec = toml::from_str(text).map_err(|e| ScenarioError {
        path: path.to_owned(),
        line: e.span().map(|s| cx.line(s.start)),
        message: e.message().trim().to_owned(),
    })?;
    if spec.description.get_ref().trim().is_empty() {
        return Err(cx.err(
            spec.description.span().start,
            "description: must say, in a paragraph, the promise the scenario checks".into(),
        ));
    }
    let system = system(&cx, spec.system)?;
    let traffic = traffic(&cx, spec.traffic)?;
    let steady_state = steady_state(&cx, spec.steady_state)?;
    let mut faults: Vec<Fault> = Vec::with_capacity(spec.fault.len());
    for (i, entry) in spec.fault.into_iter().enumerate() {
        // Timeline errors point at the key that sets the time in question.
        let e = entry.get_ref();
        let at_offset = e.at.span().start;
        let (end_key, end_offset) = [
            ("until", &e.until),
            ("for", &e.for_),
            ("restart_after", &e.restart_after),
        ]
        .into_iter()
        .find_map(|(k, v)| v.as_ref().map(|v| (k, v.span().start)))
        .unwrap_or(("until", entry.span().start));
        let f = fault(&cx, i, entry, &system)?;
        if f.until > traffic.duration {
            return Err(cx.err(
                end_offset,
                format!(
                    "fault `{}`: {end_key}: ends at {} but the run lasts {} (traffic.duration)",
                    f.name,
                    humantime::format_duration(f.until),
                    humantime::format_duration(traffic.duration)
                ),
            ));
        }
        if f.at < steady_state.duration {
            return Err(cx.err(
                at_offset,
                format!(
                    "fault `{}`: at = {} starts before the steady state is measured \
                     (steady_state.duration = {})",
                    f.name,
                    humantime::format_duration(f.at),
                    humantime::format_duration(steady_state.duration)
                ),
            ));
        }
        if faults.iter().any(|g| g.name == f.name) {
            return Err(cx.err(
                line_start(cx.text, f.line),
                format!("fault `{}`: name: already used by another fault", f.name),
            ));
        }
        faults.push(f);
    }
    let asserts = spec
        .assert
        .into_iter()
        .map(|a| super::checks::assertion(&cx, a, &system, &traffic, &faults))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        name: spec.name,
        description: spec.description.into_inner(),
        seed: spec.seed,
        system,
        traffic,
        steady_state,
        faults,
        asserts,
    })
}

/// The byte offset of the start of 1-based `line`.
fn line_start(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

fn system(cx: &Ctx<'_>, spec: Spanned<SystemSpec>) -> Result<System, ScenarioError> {
    let at = spec.span().start;
    let s = spec.into_inner();
    match (s.sidecar_config, s.target_url) {
        (Some(config), None) => {
            if s.admin_url.is_some() || s.backend_stats_url.is_some() {
                return Err(cx.err(
                    at,
                    "system: admin_url and backend_stats_url go with target_url; with \
                     sidecar_config the runner knows them"
                        .into(),
                ));
            }
            let config = PathBuf::from(config);
            let sidecar_config = match cx.path.parent() {
                Some(dir) if config.is_relative() => dir.join(config),
                _ => config,
            };
            let f = s.fixture.unwrap_or(FixtureSpec {
                mode: None,
                stateless: false,
                conformance_tools: false,
            });
            Ok(System::Managed {
                jwks: s.jwks,
                sidecar_config,
                fixture: FixtureOptions {
                    sse: matches!(f.mode, Some(FixtureMode::Sse)),
                    stateless: f.stateless,
                    conformance_tools: f.conformance_tools,
                },
            })
        }
        (None, Some(target_url)) => {
            if s.jwks {
                return Err(cx.err(
                    at,
                    "system.jwks: only with sidecar_config (the runner serves the JWKS)".into(),
                ));
            }
            if s.fixture.is_some() {
                return Err(cx.err(
                    at,
                    "system.fixture: only with sidecar_config (the runner starts the fixture)"
                        .into(),
                ));
            }
            Ok(System::External {
                target_url,
                admin_url: s.admin_url,
                backend_stats_url: s.backend_stats_url,
            })
        }
        _ => Err(cx.err(
            at,
            "system: give either sidecar_config (the runner starts the fixture and the sidecar) \
             or target_url (a system already running), not both or neither"
                .into(),
        )),
    }
}

fn traffic(cx: &Ctx<'_>, spec: Spanned<TrafficSpec>) -> Result<Traffic, ScenarioError> {
    let at = spec.span().start;
    let t = spec.into_inner();
    let load = match (t.rate, t.concurrency) {
        (Some(r), None) if r.is_finite() && r > 0.0 => Load::Rate(r),
        (None, Some(c)) if c > 0 => Load::Concurrency(c),
        (Some(_), None) => return Err(cx.err(at, "traffic.rate: must be above 0".into())),
        (None, Some(_)) => return Err(cx.err(at, "traffic.concurrency: must be at least 1".into())),
        _ => {
            return Err(cx.err(
                at,
                "traffic: give either rate (requests/s) or concurrency, not both or neither".into(),
            ));
        }
    };
    let request = match (t.call, t.method) {
        (Some(call), None) => {
            mcp_loadtest::workload::Workload::call(&call)
                .map_err(|e| cx.err(at, format!("traffic.call: {e}")))?;
            Request::Call(call)
        }
        (None, Some(method)) if !method.trim().is_empty() => Request::Method(method),
        _ => {
            return Err(cx.err(
                at,
                "traffic: give either call (\"tool {json args}\") or method, not both or neither"
                    .into(),
            ));
        }
    };
    let sessions = t.sessions.unwrap_or(DEFAULT_SESSIONS);
    if sessions == 0 {
        return Err(cx.err(at, "traffic.sessions: must be at least 1".into()));
    }
    let timeout = match &t.timeout {
        Some(v) => cx.duration("traffic.timeout", v)?,
        None => DEFAULT_TIMEOUT,
    };
    let duration = cx.duration("traffic.duration", &t.duration)?;
    if duration.is_zero() {
        return Err(cx.err(
            t.duration.span().start,
            "traffic.duration: must be above 0".into(),
        ));
    }
    let job_call = match t.job_call {
        Some(_) if t.jobs == 0 => {
            return Err(cx.err(
                at,
                "traffic.job_call: only with jobs (the number of jobs to submit)".into(),
            ));
        }
        Some(call) => {
            mcp_loadtest::workload::Workload::call(&call)
                .map_err(|e| cx.err(at, format!("traffic.job_call: {e}")))?;
            Some(call)
        }
        None => None,
    };
    Ok(Traffic {
        load,
        request,
        sessions,
        timeout,
        duration,
        jobs: t.jobs,
        job_call,
    })
}

fn steady_state(
    cx: &Ctx<'_>,
    spec: Spanned<SteadyStateSpec>,
) -> Result<SteadyState, ScenarioError> {
    let at = spec.span().start;
    let s = spec.into_inner();
    let min_success_rate = match s.min_success_rate {
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => Some(r.into_inner()),
        Some(r) => {
            return Err(cx.err(
                r.span().start,
                format!(
                    "steady_state.min_success_rate = {}: must be from 0 to 1",
                    r.get_ref()
                ),
            ));
        }
        None => None,
    };
    let max_p99 = match &s.max_p99 {
        Some(v) => Some(cx.duration("steady_state.max_p99", v)?),
        None => None,
    };
    if min_success_rate.is_none() && max_p99.is_none() {
        return Err(cx.err(
            at,
            "steady_state: give at least one check (min_success_rate, max_p99)".into(),
        ));
    }
    Ok(SteadyState {
        duration: cx.duration("steady_state.duration", &s.duration)?,
        min_success_rate,
        max_p99,
    })
}

fn fault(
    cx: &Ctx<'_>,
    i: usize,
    spec: Spanned<FaultEntry>,
    system: &System,
) -> Result<Fault, ScenarioError> {
    let start = spec.span().start;
    let line = cx.line(start);
    let f = spec.into_inner();
    let name = f.name.unwrap_or_else(|| format!("fault-{}", i + 1));
    let err = |offset: usize, m: String| cx.err(offset, format!("fault `{name}`: {m}"));
    let at = cx
        .duration("at", &f.at)
        .map_err(|e| err(f.at.span().start, e.message))?;
    // The backend link's faults live in the runner's fault chain, which only a managed system
    // has (against a running system, put `mcp-chaos proxy`/`http-proxy` in front of its backend).
    let managed_only = |key: &str, at: usize| {
        if system.is_managed() {
            Ok(())
        } else {
            Err(err(
                at,
                format!(
                    "{key}: needs system.sidecar_config (the runner's fault proxies sit \
                     between the sidecar it starts and the backend)"
                ),
            ))
        }
    };
    if let Some(t) = &f.toxic {
        managed_only("toxic", t.span().start)?;
    }
    if let Some(d) = &f.proxy_down {
        managed_only("proxy_down", d.span().start)?;
    }
    if let Some(h) = &f.http {
        managed_only("http", h.span().start)?;
    }
    let mut actions = Vec::new();
    if let Some(table) = f.toxic {
        let at = table.span().start;
        let json =
            serde_json::to_value(table.get_ref()).map_err(|e| err(at, format!("toxic: {e}")))?;
        let toxic = Toxic::from_json(&json).map_err(|m| err(at, format!("toxic.{m}")))?;
        actions.push(FaultAction::Toxic(toxic.named(&name)));
    }
    match f.proxy_down {
        Some(down) if *down.get_ref() => actions.push(FaultAction::ProxyDown),
        Some(down) => {
            return Err(err(
                down.span().start,
                "proxy_down = false is not a fault (leave it out)".into(),
            ));
        }
        None => {}
    }
    if let Some(table) = f.http {
        let at = table.span().start;
        let mut table = table.into_inner();
        table
            .entry("name")
            .or_insert_with(|| Value::String(name.clone()));
        let http = Value::Table(table)
            .try_into::<FaultSpec>()
            .map_err(|e| err(at, format!("http: {}", e.message().trim())))?
            .into_fault()
            .map_err(|e| match e {
                SpecError::Fault { problem, .. } => err(at, format!("http: {problem}")),
                SpecError::Toml(e) => err(at, format!("http: {}", e.message().trim())),
            })?;
        actions.push(FaultAction::Http(http));
    }
    if let Some(signal) = &f.kill_sidecar {
        let at = signal.span().start;
        let signal = match signal.get_ref().as_str() {
            "SIGKILL" => Signal::Kill,
            "SIGTERM" => Signal::Term,
            other => {
                return Err(err(
                    at,
                    format!("kill_sidecar = \"{other}\": expected \"SIGKILL\" or \"SIGTERM\""),
                ));
            }
        };
        if !system.is_managed() {
            return Err(err(
                at,
                "kill_sidecar: needs system.sidecar_config (the runner must own the process)"
                    .into(),
            ));
        }
        actions.push(FaultAction::KillSidecar { signal });
    }
    if actions.len() != 1 {
        return Err(err(
            start,
            format!(
                "give exactly one of toxic, proxy_down, http, kill_sidecar, not {}",
                actions.len()
            ),
        ));
    }
    let action = actions.remove(0);
    let link = match &f.link {
        None => Link::Backend,
        Some(l) => {
            let at = l.span().start;
            if !matches!(action, FaultAction::Toxic(_) | FaultAction::ProxyDown) {
                return Err(err(at, "link: only with toxic or proxy_down".into()));
            }
            match l.get_ref().as_str() {
                "backend" => Link::Backend,
                "jwks" if matches!(system, System::Managed { jwks: true, .. }) => Link::Jwks,
                "jwks" => {
                    return Err(err(
                        at,
                        "link = \"jwks\": needs system.jwks = true (the runner's JWKS)".into(),
                    ));
                }
                other => {
                    return Err(err(
                        at,
                        format!("link = \"{other}\": expected \"backend\" or \"jwks\""),
                    ));
                }
            }
        }
    };
    let end = |key: &str, v: &Spanned<String>| {
        cx.duration(key, v)
            .map_err(|e| err(v.span().start, e.message))
    };
    let until = match (&action, &f.until, &f.for_, &f.restart_after) {
        (FaultAction::KillSidecar { .. }, None, None, Some(r)) => at + end("restart_after", r)?,
        (FaultAction::KillSidecar { .. }, ..) => {
            return Err(err(
                start,
                "kill_sidecar: give restart_after (and neither until nor for)".into(),
            ));
        }
        (_, _, _, Some(r)) => {
            return Err(err(
                r.span().start,
                "restart_after: only with kill_sidecar".into(),
            ));
        }
        (_, Some(u), None, None) => {
            let until = end("until", u)?;
            if until <= at {
                return Err(err(
                    u.span().start,
                    format!(
                        "until = \"{}\" is not after at = \"{}\"",
                        u.get_ref(),
                        f.at.get_ref()
                    ),
                ));
            }
            until
        }
        (_, None, Some(d), None) => {
            let d = end("for", d)?;
            if d.is_zero() {
                return Err(err(start, "for: must be above 0".into()));
            }
            at + d
        }
        _ => {
            return Err(err(
                start,
                "give either until or for (when the fault ends)".into(),
            ));
        }
    };
    Ok(Fault {
        name,
        at,
        until,
        action,
        link,
        line,
    })
}
