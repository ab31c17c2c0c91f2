//! `--threshold` expressions in the style k6 users write. The syntax, by example (not targets):
//! a latency percentile with a unit (`p99<250ms`, `p50<=10ms`, `max<2s`), `error_rate<0.1%`,
//! `rps>900`, `errors==0`, `requests>=1000`. A crossed threshold names itself and the measured
//! value.

use std::fmt;

use crate::report::Report;

/// What a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// A latency percentile (0.5, 0.9, 0.99, 0.999) or the max (1.0) or the mean (`None`), in ms.
    Latency(Option<f64>),
    /// `errors / requests`, a fraction.
    ErrorRate,
    /// Requests per second.
    Rps,
    /// Errors.
    Errors,
    /// Requests.
    Requests,
    /// Standalone streams that failed to open or ended early (`--streams`).
    StreamErrors,
    /// Standalone streams opened.
    StreamsOpened,
    /// A percentile (0.5, 0.99) or the max (1.0) of the streams' event delivery latency, in ms.
    Delivery(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One parsed `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: Metric,
    op: Op,
    value: f64,
}

/// Why a threshold expression was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("threshold `{text}`: {why}")]
pub struct ParseError {
    text: String,
    why: String,
}

/// A threshold the run crossed.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossed {
    /// The threshold as written.
    pub threshold: String,
    /// The measured value, with its unit.
    pub measured: String,
}

impl fmt::Display for Crossed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threshold `{}` crossed: measured {}",
            self.threshold, self.measured
        )
    }
}

impl std::str::FromStr for Threshold {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>', '='])
            .ok_or_else(|| err("no comparison: write it as METRIC<VALUE, such as p99<250ms"))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (op, v)))
        .ok_or_else(|| err("the comparison must be <, <=, >, >= or =="))?;
        let metric = match name {
            "p50" | "median" => Metric::Latency(Some(0.5)),
            "p90" => Metric::Latency(Some(0.9)),
            "p99" => Metric::Latency(Some(0.99)),
            "p999" | "p99.9" => Metric::Latency(Some(0.999)),
            "max" => Metric::Latency(Some(1.0)),
            "mean" | "avg" => Metric::Latency(None),
            "error_rate" => Metric::ErrorRate,
            "rps" => Metric::Rps,
            "errors" => Metric::Errors,
            "requests" => Metric::Requests,
            "stream_errors" => Metric::StreamErrors,
            "streams_opened" => Metric::StreamsOpened,
            "delivery_p50" => Metric::Delivery(0.5),
            "delivery_p99" => Metric::Delivery(0.99),
            "delivery_max" => Metric::Delivery(1.0),
            _ => {
                return Err(err(
                    "unknown metric: p50, p90, p99, p999, max, mean, error_rate, rps, errors, requests, stream_errors, streams_opened, delivery_p50, delivery_p99 or delivery_max",
                ));
            }
        };
        let number = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| err("the value is not a non-negative number"))
        };
        let value = match metric {
            Metric::Latency(_) | Metric::Delivery(_) => {
                let (digits, scale) = if let Some(v) = value.strip_suffix("ms") {
                    (v, 1.0)
                } else if let Some(v) = value.strip_suffix("us") {
                    (v, 0.001)
                } else if let Some(v) = value.strip_suffix('s') {
                    (v, 1000.0)
                } else {
                    return Err(err("a latency needs a unit: us, ms or s (p99<250ms)"));
                };
                number(digits)? * scale
            }
            Metric::ErrorRate => match value.strip_suffix('%') {
                Some(v) => number(v)? / 100.0,
                None => number(value)?,
            },
            _ => number(value)?,
        };
        Ok(Threshold {
            text: text.trim().to_owned(),
            metric,
            op,
            value,
        })
    }
}

impl Threshold {
    /// `Err` naming the threshold and the measured value when `report` crosses it.
    pub fn check(&self, report: &Report) -> Result<(), Crossed> {
        let l = &report.latency_ms;
        let (measured, shown) = match self.metric {
            Metric::Latency(q) => {
                let v = match q {
                    Some(q) if q >= 1.0 => l.max,
                    Some(q) if q >= 0.999 => l.p999,
                    Some(q) if q >= 0.99 => l.p99,
                    Some(q) if q >= 0.9 => l.p90,
                    Some(_) => l.p50,
                    None => l.mean,
                };
                (v, format!("{v:.3} ms"))
            }
            Metric::ErrorRate => (
                report.error_rate,
                format!("{:.4}%", report.error_rate * 100.0),
            ),
            Metric::Rps => (report.rps, format!("{:.1} rps", report.rps)),
            Metric::Errors => (report.errors as f64, report.errors.to_string()),
            Metric::Requests => (report.requests as f64, report.requests.to_string()),
            // A run without streams has none of them: no errors, none opened, no delivery.
            Metric::StreamErrors => {
                let n = report.streams.as_ref().map_or(0, |s| s.errors);
                (n as f64, n.to_string())
            }
            Metric::StreamsOpened => {
                let n = report.streams.as_ref().map_or(0, |s| s.opened);
                (n as f64, n.to_string())
            }
            Metric::Delivery(q) => {
                let d = report.streams.as_ref().map(|s| s.delivery_ms);
                let v = d.map_or(0.0, |d| match q {
                    q if q >= 1.0 => d.max,
                    q if q >= 0.99 => d.p99,
                    _ => d.p50,
                });
                (v, format!("{v:.3} ms"))
            }
        };
        let holds = match self.op {
            Op::Lt => measured < self.value,
            Op::Le => measured <= self.value,
            Op::Gt => measured > self.value,
            Op::Ge => measured >= self.value,
            Op::Eq => (measured - self.value).abs() < f64::EPSILON,
        };
        if holds {
            Ok(())
        } else {
            Err(Crossed {
                threshold: self.text.clone(),
                measured: shown,
            })
        }
    }
}

#[cfg(test)]
#[path = "threshold_tests.rs"]
mod tests;
