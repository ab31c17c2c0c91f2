//! A run's report in its three forms: the readable summary with its timeline (stdout), the JSON
//! report (`--out`) and JUnit XML (`--junit`), which CI systems render as test results: a
//! `<testsuite>` per scenario, a `<testcase>` per assertion (and the steady state), a
//! `<failure>` naming the measured value and what was expected.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::jobs::JobEnd;
use super::traffic::Sample;
use super::verdict::{Verdict, percentile};

/// One moment of the run's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// What happened.
    pub what: String,
}

/// The traffic's totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficSummary {
    /// Requests with an outcome.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// The others, by class.
    pub errors: BTreeMap<String, u64>,
    /// The median latency in milliseconds (none without requests).
    pub p50_ms: Option<f64>,
    /// The 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// The slowest request's latency in milliseconds.
    pub max_ms: Option<f64>,
}

impl TrafficSummary {
    /// The totals of `samples`.
    pub fn of(samples: &[Sample]) -> Self {
        let mut errors = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.ok()) {
            *errors.entry(s.class.clone()).or_insert(0) += 1;
        }
        let pct = |q: f64| percentile(samples.iter().map(|s| s.latency), q).map(millis);
        Self {
            requests: samples.len() as u64,
            ok: samples.iter().filter(|s| s.ok()).count() as u64,
            errors,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: samples.iter().map(|s| s.latency).max().map(millis),
        }
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One scenario's report.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// The promise it checks.
    pub description: String,
    /// The seed of every fault decision (run it again with `--seed` to replay them).
    pub seed: u64,
    /// Whether the steady state and every assertion held.
    pub passed: bool,
    /// Why the run could not be made (or was cut short), when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the run took, in seconds.
    pub duration_s: f64,
    /// The traffic's totals.
    pub traffic: TrafficSummary,
    /// What happened when.
    pub timeline: Vec<Event>,
    /// The steady state's verdicts, then the assertions'.
    pub verdicts: Vec<Verdict>,
    /// The jobs' ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobEnd>,
    /// The end of the managed sidecar's log, when something failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_log_tail: Option<String>,
}

/// The report of a whole `mcp-chaos run`.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// mcp-chaos's version.
    pub version: String,
    /// Whether every scenario passed.
    pub passed: bool,
    /// The scenarios, in the order run.
    pub scenarios: Vec<ScenarioReport>,
}

/// The readable summary of one scenario.
pub fn summary(r: &ScenarioReport) -> String {
    let mut out = String::new();
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "scenario {} ({}), seed {}: {verdict} in {:.1} s",
        r.name, r.file, r.seed, r.duration_s
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {e}");
    }
    let t = &r.traffic;
    let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "  traffic: {} requests, {} ok{}; p50 {}, p99 {}, max {}",
        t.requests,
        t.ok,
        if errors.is_empty() {
            String::new()
        } else {
            format!("; errors: {}", errors.join(", "))
        },
        opt_ms(t.p50_ms),
        opt_ms(t.p99_ms),
        opt_ms(t.max_ms)
    );
    let _ = writeln!(out, "  timeline:");
    for e in &r.timeline {
        let _ = writeln!(out, "    {:>8.3} s  {}", e.at_s, e.what);
    }
    let _ = writeln!(out, "  assertions:");
    for v in &r.verdicts {
        let mark = if v.passed { "PASS" } else { "FAIL" };
        let line = if v.line > 0 {
            format!(" (line {})", v.line)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    {mark} {}{line}: {}; expected {}",
            v.name, v.measured, v.expected
        );
    }
    if let Some(tail) = &r.sidecar_log_tail {
        let _ = writeln!(out, "  the end of the sidecar's log:");
        for l in tail.lines() {
            let _ = writeln!(out, "    | {l}");
        }
    }
    out
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |m| format!("{m:.1} ms"))
}

/// The JUnit XML of a suite run.
pub fn junit(suite: &SuiteReport) -> String {
    let total: usize = suite.scenarios.iter().map(cases).sum();
    let failed: usize = suite.scenarios.iter().map(failures).sum();
    let time: f64 = suite.scenarios.iter().map(|s| s.duration_s).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"mcp-chaos\" tests=\"{total}\" failures=\"{failed}\" time=\"{time:.3}\">"
    );
    for s in &suite.scenarios {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
            xml(&s.name),
            cases(s),
            failures(s),
            s.duration_s
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"seed\" value=\"{}\"/><property name=\"file\" value=\"{}\"/></properties>",
            s.seed,
            xml(&s.file)
        );
        let class = format!("mcp-chaos.{}", s.name);
        if let Some(e) = &s.error {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"run\"><failure message=\"{}\"/></testcase>",
                xml(&class),
                xml(e)
            );
        }
        for v in &s.verdicts {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(&class),
                xml(&v.name)
            );
            if v.passed {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    "><failure message=\"{}\">{}</failure></testcase>",
                    xml(&format!("{}; expected {}", v.measured, v.expected)),
                    xml(&format!("{} (kind {}, line {})", v.name, v.kind, v.line))
                );
            }
        }
        let _ = writeln!(out, "    <system-out>{}</system-out>", xml(&summary(s)));
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn cases(s: &ScenarioReport) -> usize {
    s.verdicts.len() + usize::from(s.error.is_some())
}

fn failures(s: &ScenarioReport) -> usize {
    s.verdicts.iter().filter(|v| !v.passed).count() + usize::from(s.error.is_some())
}

/// Text escaped for XML attributes and content (the five predefined entities; characters XML
/// 1.0 cannot carry at all are replaced). Written here: five replacements need no crate.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A duration for the timeline.
pub fn at(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
