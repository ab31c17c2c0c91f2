//! `--html report.html`: one self-contained page (inline SVG charts drawn with `plotters`, no
//! script, no external file, nothing fetched): the summary, the timings measured apart (the
//! answer, the first SSE event, a job's completion, the generator's send lag), latency over
//! time (p50, p99, max), throughput and errors over time, the latency percentile distribution,
//! and the error breakdown. A chart with nothing to draw says so instead of showing empty axes.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::report::{Interval, Percentiles, Report, decode};

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 320);
/// How a line is drawn: its colour and width in pixels.
#[derive(Debug, Clone, Copy)]
struct Pen(RGBColor, u32);
/// The lines' pens, told apart by the colour-blind too (blue, vermilion). The third (a max) is
/// a wide light band drawn under the others: where it equals the p99 it still shows around it.
const FIRST: Pen = Pen(RGBColor(0, 114, 178), 2);
const SECOND: Pen = Pen(RGBColor(213, 94, 0), 2);
const THIRD: Pen = Pen(RGBColor(175, 175, 175), 6);
/// Lines of at most this many points have them marked.
const MARKED_POINTS: usize = 40;
/// The most "nines" the distribution shows (99.9999%): past what the run's count resolves,
/// every percentile is the maximum.
const MAX_NINES: f64 = 6.0;

/// The report as an HTML page.
pub fn page(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>mcp-load report</title><style>\
body{font-family:sans-serif;margin:2em;max-width:960px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th:first-child,td:first-child,.config td,.config th{text-align:left}\
code{font-size:90%}.legend span{display:inline-block;margin-right:1.5em}\
.legend i{display:inline-block;width:24px;vertical-align:middle;margin-right:6px}\
.note{color:#666;font-style:italic}</style></head><body>\n<h1>mcp-load report</h1>\n",
    );
    let _ = write!(out, "<p>{}</p>\n{}", escape(&report.tool), config(report));
    let _ = writeln!(
        out,
        "<h2>Summary</h2><table><tr><th>requests</th><th>errors</th><th>error rate</th>\
<th>throughput</th><th>measured for</th></tr><tr><td>{}</td><td>{}</td><td>{:.3}%</td>\
<td>{:.1} req/s</td><td>{:.1} s</td></tr></table>",
        report.requests,
        report.errors,
        report.error_rate * 100.0,
        report.rps,
        report.duration_s
    );
    out.push_str(&timings(report));
    out.push_str("<h2>Latency over time</h2>\n");
    out.push_str(&latency_chart(report));
    out.push_str("<h2>Throughput and errors over time</h2>\n");
    out.push_str(&throughput_chart(report));
    out.push_str("<h2>Latency distribution</h2>\n");
    out.push_str(&distribution_chart(report));
    out.push_str("<h2>Errors</h2>\n");
    out.push_str(&errors(report));
    if let Some(streams) = &report.streams {
        out.push_str(&streams_table(streams));
    }
    out.push_str("</body></html>\n");
    out
}

/// The streams' table (`--streams`): counts, rates, and the open, first-event, gap and
/// delivery percentiles.
fn streams_table(s: &crate::report::streams::StreamReport) -> String {
    let row = |name: &str, p: &crate::report::Percentiles| {
        format!(
            "<tr><td>{name}</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td></tr>",
            p.p50, p.p90, p.p99, p.max
        )
    };
    let mut errors = String::new();
    for (kind, n) in &s.errors_by_kind {
        errors.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{n}</td></tr>",
            escape(kind)
        ));
    }
    format!(
        "<h2>SSE streams</h2><table><tr><th>asked</th><th>opened</th><th>failed</th><th>errors</th><th>events</th><th>events/s</th><th>timed events</th></tr>\
<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr></table>\
<h3>Stream timings</h3><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{}{}{}{}</table>\
<h3>Stream errors</h3><table><tr><th>kind</th><th>count</th></tr>{}</table>",
        s.asked,
        s.opened,
        s.failed,
        s.errors,
        s.events,
        s.events_per_s,
        s.timed_events,
        row("open (to the head)", &s.open_ms),
        row("first event", &s.first_event_ms),
        row("gap between events", &s.gap_ms),
        row("delivery (send time to receipt)", &s.delivery_ms),
        if errors.is_empty() {
            "<tr><td colspan=\"2\">none</td></tr>".to_owned()
        } else {
            errors
        },
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What was run: a row per set key of the report's config.
fn config(report: &Report) -> String {
    let Some(map) = report.config.as_object() else {
        return String::new();
    };
    let mut rows = String::new();
    for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            escape(key),
            escape(&text)
        );
    }
    if rows.is_empty() {
        return rows;
    }
    format!("<table class=\"config\"><tr><th>setting</th><th>value</th></tr>{rows}</table>\n")
}

/// The timings measured apart, in milliseconds, each with the count it is over.
fn timings(report: &Report) -> String {
    let latency = if report.jobs > 0 {
        "latency (to the 202 or the task's creation)"
    } else {
        "latency (to the answer)"
    };
    let mut rows = vec![(latency, report.requests, report.latency_ms)];
    if report.sse_answers > 0 {
        rows.push((
            "first event of an SSE answer",
            report.sse_answers,
            report.first_event_ms,
        ));
    }
    if report.jobs > 0 {
        rows.push((
            "completion of a job or task",
            report.jobs,
            report.completion_ms,
        ));
    }
    if report.send_lag_ms.max > 0.0 {
        rows.push((
            "send lag (the generator's own)",
            report.requests,
            report.send_lag_ms,
        ));
    }
    let mut out = String::from(
        "<h2>Timings (ms)</h2><table><tr><th>measured</th><th>count</th><th>p50</th>\
<th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>",
    );
    for (name, count, p) in rows {
        let Percentiles {
            p50,
            p90,
            p99,
            p999,
            max,
            mean,
        } = p;
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{count}</td><td>{p50:.2}</td><td>{p90:.2}</td>\
<td>{p99:.2}</td><td>{p999:.2}</td><td>{max:.2}</td><td>{mean:.2}</td></tr>"
        );
    }
    out.push_str("</table>\n");
    out
}

/// The error breakdown, with each class's share of the requests.
fn errors(report: &Report) -> String {
    if report.errors_by_kind.is_empty() {
        return "<p class=\"note\">No errors.</p>\n".to_owned();
    }
    let mut out =
        String::from("<table><tr><th>kind</th><th>count</th><th>share of requests</th></tr>");
    for (kind, n) in &report.errors_by_kind {
        let share = *n as f64 / report.requests.max(1) as f64 * 100.0;
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{n}</td><td>{share:.3}%</td></tr>",
            escape(kind)
        );
    }
    out.push_str("</table>\n");
    out
}

fn note(text: &str) -> String {
    format!("<p class=\"note\">{text}</p>\n")
}

/// A legend in HTML above a chart: it never covers a line.
fn legend(lines: &[(&str, Pen)]) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (name, Pen(RGBColor(r, g, b), width)) in lines {
        let _ = write!(
            out,
            "<span><i style=\"background:rgb({r},{g},{b});height:{width}px\"></i>{name}</span>"
        );
    }
    out.push_str("</p>\n");
    out
}

/// One line of a chart: its name, colour and points; `None` is a gap (nothing to show there),
/// where the line breaks off instead of dropping to zero.
type Line<'a> = (&'a str, Pen, Vec<Option<(f64, f64)>>);

/// An x axis's ticks: how each is labelled, and about how many there are.
type Ticks<'a> = (&'a dyn Fn(&f64) -> String, usize);

/// A chart of `lines` over `x` (0 to `x_end`) with the axes described; `x_label` formats the
/// x axis's ticks.
fn chart(
    lines: &[Line<'_>],
    x_end: f64,
    x_desc: &str,
    y_desc: &str,
    x_label: Option<Ticks<'_>>,
) -> String {
    let top = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().flatten().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    // Headroom above the highest point; a flat zero still gets a readable axis.
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let Ok(mut chart) = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(40)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_end.max(1e-9), 0.0..top)
        else {
            return note("(no chart: the axes could not be drawn)");
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14));
        if let Some((format, count)) = x_label {
            mesh.x_label_formatter(format).x_labels(count);
        }
        let _ = mesh.draw();
        // The first line on top: the legend's order is by importance (p50 before max).
        for (_, Pen(color, width), points) in lines.iter().rev() {
            let style = ShapeStyle::from(color).stroke_width(*width);
            for run in points.split(Option::is_none) {
                let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                let _ = chart.draw_series(LineSeries::new(run.iter().copied(), style));
                // Few points are marked: a short series shows where its measurements are
                // (many would only blur the line), and a run of one point is no line at all.
                if points.len() <= MARKED_POINTS || run.len() == 1 {
                    let _ = chart.draw_series(
                        run.iter()
                            .map(|&p| Circle::new(p, width + 1, ShapeStyle::from(color).filled())),
                    );
                }
            }
        }
        let _ = root.present();
    }
    if svg.contains("<svg") {
        svg + "\n"
    } else {
        note("(no chart: nothing measured)")
    }
}

/// Where an interval's point goes: its middle.
fn middle(report: &Report, i: &Interval) -> f64 {
    i.start_s + report.interval_s / 2.0
}

/// The x axis of the charts over time: the whole series (answers that came after the measured
/// time included).
fn series_end(report: &Report) -> f64 {
    (report.intervals.len() as f64 * report.interval_s).max(report.duration_s)
}

fn latency_chart(report: &Report) -> String {
    if report.intervals.iter().all(|i| i.requests == 0) {
        return note("(no chart: nothing measured)");
    }
    // An interval in which no answer came has no latency: a gap, not a zero.
    let line = |f: fn(&Percentiles) -> f64| -> Vec<Option<(f64, f64)>> {
        report
            .intervals
            .iter()
            .map(|i| (i.requests > 0).then(|| (middle(report, i), f(&i.latency_ms))))
            .collect()
    };
    let lines = [
        ("p50", FIRST, line(|p| p.p50)),
        ("p99", SECOND, line(|p| p.p99)),
        ("max", THIRD, line(|p| p.max)),
    ];
    legend(&[("p50", FIRST), ("p99", SECOND), ("max", THIRD)])
        + &chart(
            &lines,
            series_end(report),
            "time since the start (s)",
            "latency (ms)",
            None,
        )
}

fn throughput_chart(report: &Report) -> String {
    if report.intervals.is_empty() {
        return note("(no chart: nothing measured)");
    }
    // Rates over the part of each interval inside the measured time: the last one is often
    // partial, and answers that came after the end are in the totals but have no time to be a
    // rate over.
    let covered = |i: &Interval| (report.duration_s - i.start_s).min(report.interval_s);
    let line = |f: fn(&Interval) -> u64| -> Vec<Option<(f64, f64)>> {
        report
            .intervals
            .iter()
            .map(|i| {
                let t = covered(i);
                (t > 1e-9).then(|| (middle(report, i), f(i) as f64 / t))
            })
            .collect()
    };
    let lines = [
        ("requests/s", FIRST, line(|i| i.requests)),
        ("errors/s", SECOND, line(|i| i.errors)),
    ];
    legend(&[("requests/s", FIRST), ("errors/s", SECOND)])
        + &chart(
            &lines,
            series_end(report),
            "time since the start (s)",
            "per second",
            None,
        )
}

/// `nines` (2 is 99%) as a percentile label: 0%, 90%, 99%, 99.9%, …
fn percent_label(nines: f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.ceil() as usize).saturating_sub(2);
    let text = format!("{pct:.decimals$}");
    format!("{text}%")
}

/// Latency against percentile, the percentile axis in "nines" (90%, 99%, 99.9%, ...), as
/// HdrHistogram plots it: the tail is where load tests differ. The axis ends where the run's
/// count stops resolving percentiles.
fn distribution_chart(report: &Report) -> String {
    let Ok(h) = decode(&report.histogram, "the run") else {
        return note("(no chart: unreadable histogram)");
    };
    if h.is_empty() {
        return note("(no chart: nothing measured)");
    }
    let end = (h.len() as f64).log10().ceil().clamp(1.0, MAX_NINES);
    let steps = (end * 20.0) as u32;
    let points: Vec<Option<(f64, f64)>> = (0..=steps)
        .map(|k| {
            let nines = f64::from(k) / 20.0;
            let q = 1.0 - 10f64.powf(-nines);
            Some((nines, h.value_at_quantile(q) as f64 / 1000.0))
        })
        .collect();
    legend(&[("latency at percentile", FIRST)])
        + &chart(
            &[("latency", FIRST, points)],
            end,
            "percentile",
            "latency (ms)",
            Some((&|n| percent_label(*n), end as usize + 1)),
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{Outcome, Recorder};

    #[test]
    fn the_page_is_self_contained_with_three_charts_and_the_errors() {
        let mut r = Recorder::new(Duration::from_secs(1));
        for i in 0..500u64 {
            let outcome = if i % 50 == 0 {
                Outcome::Error("jsonrpc_-32000".into())
            } else {
                Outcome::Success
            };
            r.record(
                Duration::from_millis(i * 6),
                Duration::from_micros(500 + i * 10),
                Duration::ZERO,
                outcome,
            );
        }
        let page = page(&r.report(Duration::from_secs(3), serde_json::json!({"url": "<x>"})));
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        assert_eq!(page.matches("<svg").count(), 3, "three charts");
        assert!(page.contains("<code>jsonrpc_-32000</code></td><td>10</td>"));
        assert!(page.contains("&lt;x&gt;"), "config text is escaped");
        assert!(
            !page.contains("<script") && !page.contains("src=\"http"),
            "self-contained"
        );
        // An empty run still renders.
        let empty = page_of_empty();
        assert!(empty.contains("nothing measured"));
    }

    fn page_of_empty() -> String {
        page(
            &Recorder::new(Duration::from_secs(1))
                .report(Duration::from_secs(1), serde_json::json!({})),
        )
    }

    #[test]
    fn an_empty_run_draws_no_empty_axes() {
        let empty = page_of_empty();
        assert_eq!(empty.matches("<svg").count(), 0, "{empty}");
        assert_eq!(empty.matches("nothing measured").count(), 3);
        assert!(empty.contains("No errors."));
    }

    #[test]
    fn percentile_labels_show_as_many_nines_as_they_mean() {
        let labels: Vec<String> = (0..=4).map(|n| percent_label(f64::from(n))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }
}
