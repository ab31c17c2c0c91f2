//! The `[[assert]]` tables of a scenario file: each a `kind` with its parameters and an optional
//! `name`, checked against the rest of the scenario (a breaker assertion needs a fault to observe;
//! `jobs_all_terminal` needs jobs; process checks need a sidecar the runner starts).

use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Table, Value};

use super::spec::{Ctx, parse_duration};
use super::{Assert, Check, Fault, Recovery, ScenarioError, StatusPattern, System, Traffic};

/// Default `no_hang_past_timeout` margin: scheduling slack on a loaded 2-core CI machine.
const DEFAULT_HANG_MARGIN: Duration = Duration::from_secs(1);

/// An `[[assert]]` without its `name`; durations still strings.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CheckSpec {
    CircuitOpensWithin {
        requests: u64,
        fault: Option<String>,
    },
    FastFail {
        p99: String,
        fault: Option<String>,
    },
    NoBackendRequestsWhileOpen {
        fault: Option<String>,
    },
    RecoversWithin {
        within: Option<String>,
        open_period_plus: Option<String>,
        fault: Option<String>,
    },
    JobsAllTerminal {},
    NoHangPastTimeout {
        margin: Option<String>,
    },
    SidecarAlive {},
    RssBelow {
        bytes: Option<u64>,
        mib: Option<u64>,
    },
    StatusSeen {
        status: u16,
        #[serde(default)]
        retry_after: bool,
    },
    NoStatus {
        status: Value,
    },
    SuccessRateDuring {
        min: f64,
        fault: Option<String>,
    },
    OpenPeriodGrows {
        fault: Option<String>,
    },
    UnknownKeyRefused {
        status: Option<u16>,
        fault: Option<String>,
    },
}

pub(super) fn assertion(
    cx: &Ctx<'_>,
    spec: Spanned<Table>,
    system: &System,
    traffic: &Traffic,
    faults: &[Fault],
) -> Result<Assert, ScenarioError> {
    let start = spec.span().start;
    let line = cx.line(start);
    let mut table = spec.into_inner();
    let name = match table.remove("name") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(v) => {
            return Err(cx.err(
                start,
                format!("assert: name = {v}: expected a non-empty string"),
            ));
        }
    };
    let label = match (&name, table.get("kind")) {
        (Some(n), _) => format!("assert `{n}`"),
        (None, Some(Value::String(k))) => format!("assert `{k}`"),
        _ => "assert".to_owned(),
    };
    let err = |m: String| cx.err(start, format!("{label}: {m}"));
    let dur = |key: &str, v: &str| parse_duration(key, v).map_err(&err);
    let spec: CheckSpec = Value::Table(table)
        .try_into()
        .map_err(|e| err(e.message().trim().to_owned()))?;
    // Breaker checks are about a fault that can open the breaker: a named one, or any declared.
    let about_fault = |fault: &Option<String>| -> Result<(), ScenarioError> {
        match fault {
            Some(f) if !faults.iter().any(|g| &g.name == f) => {
                Err(err(format!("fault = \"{f}\": no fault has this name")))
            }
            None if faults.is_empty() => Err(err(
                "needs a fault to observe, and the scenario declares no [[fault]]".into(),
            )),
            _ => Ok(()),
        }
    };
    let check = match spec {
        CheckSpec::CircuitOpensWithin { requests, fault } => {
            about_fault(&fault)?;
            if requests == 0 {
                return Err(err("requests: must be at least 1".into()));
            }
            Check::CircuitOpensWithin { requests, fault }
        }
        CheckSpec::FastFail { p99, fault } => {
            about_fault(&fault)?;
            Check::FastFail {
                p99: dur("p99", &p99)?,
                fault,
            }
        }
        CheckSpec::NoBackendRequestsWhileOpen { fault } => {
            about_fault(&fault)?;
            if let System::External {
                backend_stats_url: None,
                ..
            } = system
            {
                return Err(err(
                    "needs the backend's counters: set system.backend_stats_url".into(),
                ));
            }
            Check::NoBackendRequestsWhileOpen { fault }
        }
        CheckSpec::RecoversWithin {
            within,
            open_period_plus,
            fault,
        } => {
            about_fault(&fault)?;
            let within = match (within, open_period_plus) {
                (Some(w), None) => Recovery::Within(dur("within", &w)?),
                (None, Some(m)) => Recovery::OpenPeriodPlus(dur("open_period_plus", &m)?),
                _ => {
                    return Err(err(
                        "give either within or open_period_plus, not both or neither".into(),
                    ));
                }
            };
            Check::RecoversWithin { within, fault }
        }
        CheckSpec::JobsAllTerminal {} => {
            if traffic.jobs == 0 {
                return Err(err("needs jobs: set traffic.jobs above 0".into()));
            }
            Check::JobsAllTerminal
        }
        CheckSpec::NoHangPastTimeout { margin } => Check::NoHangPastTimeout {
            margin: match margin {
                Some(m) => dur("margin", &m)?,
                None => DEFAULT_HANG_MARGIN,
            },
        },
        CheckSpec::SidecarAlive {} | CheckSpec::RssBelow { .. } if !system.is_managed() => {
            return Err(err(
                "needs the sidecar's process: set system.sidecar_config".into(),
            ));
        }
        CheckSpec::SidecarAlive {} => Check::SidecarAlive,
        CheckSpec::RssBelow { bytes, mib } => Check::RssBelow {
            bytes: match (bytes, mib) {
                (Some(b), None) if b > 0 => b,
                (None, Some(m)) if m > 0 => m.saturating_mul(1024 * 1024),
                _ => {
                    return Err(err(
                        "give either bytes or mib (above 0), not both or neither".into(),
                    ));
                }
            },
        },
        CheckSpec::StatusSeen {
            status,
            retry_after,
        } => Check::StatusSeen {
            status: valid_status(status).map_err(&err)?,
            retry_after,
        },
        CheckSpec::NoStatus { status } => Check::NoStatus {
            status: status_pattern(&status).map_err(&err)?,
        },
        CheckSpec::SuccessRateDuring { min, fault } => {
            about_fault(&fault)?;
            if !(0.0..=1.0).contains(&min) {
                return Err(err(format!("min = {min}: must be from 0 to 1")));
            }
            Check::SuccessRateDuring { min, fault }
        }
        CheckSpec::OpenPeriodGrows { fault } => {
            about_fault(&fault)?;
            Check::OpenPeriodGrows { fault }
        }
        CheckSpec::UnknownKeyRefused { status, fault } => {
            about_fault(&fault)?;
            if !matches!(system, System::Managed { jwks: true, .. }) {
                return Err(err(
                    "needs system.jwks = true (the runner signs the probes with a key its JWKS lacks)"
                        .into(),
                ));
            }
            Check::UnknownKeyRefused {
                status: valid_status(status.unwrap_or(401)).map_err(&err)?,
                fault,
            }
        }
    };
    Ok(Assert { name, check, line })
}

fn valid_status(status: u16) -> Result<u16, String> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(format!("status = {status}: expected 100-599"))
    }
}

/// `503` or `"503"` (exact) or `"5xx"` (the class).
fn status_pattern(v: &Value) -> Result<StatusPattern, String> {
    let bad = || format!("status = {v}: expected a status (503) or a class (\"5xx\")");
    match v {
        Value::Integer(n) => u16::try_from(*n)
            .map_err(|_| bad())
            .and_then(|s| valid_status(s).map(StatusPattern::Exact)),
        Value::String(s) => match s.as_bytes() {
            [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                Ok(StatusPattern::Class(u16::from(c - b'0')))
            }
            _ => s
                .parse::<u16>()
                .map_err(|_| bad())
                .and_then(|s| valid_status(s).map(StatusPattern::Exact)),
        },
        _ => Err(bad()),
    }
}
