//! `--html report.html`: one self-contained page (inline SVG charts drawn with `plotters`, no
//! script, no external file): the summary, latency over time (p50, p99, max), throughput and
//! errors over time, the latency percentile distribution, and the error breakdown.

use plotters::prelude::*;

use crate::report::{Report, decode};

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 320);

/// The report as an HTML page.
pub fn page(report: &Report) -> String {
    let l = &report.latency_ms;
    let mut errors = String::new();
    for (kind, n) in &report.errors_by_kind {
        errors.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{n}</td></tr>",
            escape(kind)
        ));
    }
    if errors.is_empty() {
        errors.push_str("<tr><td colspan=\"2\">none</td></tr>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mcp-load report</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}code{{font-size:90%}}</style></head><body>\
<h1>mcp-load report</h1><p>{tool}; {config}</p>\
<table><tr><th>requests</th><th>errors</th><th>error rate</th><th>rps</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\
<tr><td>{req}</td><td>{err}</td><td>{rate:.3}%</td><td>{rps:.1}</td><td>{p50:.2} ms</td><td>{p90:.2} ms</td><td>{p99:.2} ms</td><td>{p999:.2} ms</td><td>{max:.2} ms</td></tr></table>\
<h2>Latency over time</h2>{latency}<h2>Throughput and errors over time</h2>{throughput}\
<h2>Latency distribution</h2>{distribution}<h2>Errors</h2><table><tr><th>kind</th><th>count</th></tr>{errors}</table>\
{streams}</body></html>\n",
        tool = escape(&report.tool),
        config = escape(&report.config.to_string()),
        req = report.requests,
        err = report.errors,
        rate = report.error_rate * 100.0,
        rps = report.rps,
        p50 = l.p50,
        p90 = l.p90,
        p99 = l.p99,
        p999 = l.p999,
        max = l.max,
        latency = latency_chart(report),
        throughput = throughput_chart(report),
        distribution = distribution_chart(report),
        streams = report
            .streams
            .as_ref()
            .map(streams_table)
            .unwrap_or_default(),
    )
}

/// The streams' table (`--streams`): counts, rates, and the open, first-event, gap and
/// delivery percentiles.
fn streams_table(s: &crate::streams::StreamReport) -> String {
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

/// One line of a chart over time: its name, colour and value at an interval.
type Line<'a> = (
    &'a str,
    RGBColor,
    &'a dyn Fn(&crate::report::Interval) -> f64,
);

/// Lines over the series' intervals; `y` picks each line's value. An empty run draws empty axes.
fn over_time(report: &Report, y_desc: &str, lines: &[Line<'_>]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let end = (report.intervals.len() as f64 * report.interval_s).max(report.interval_s);
        let top = report
            .intervals
            .iter()
            .flat_map(|i| lines.iter().map(move |(_, _, f)| f(i)))
            .fold(0.0_f64, f64::max)
            .max(1e-3)
            * 1.1;
        let Ok(mut chart) = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..top)
        else {
            return "<p>(no chart: the axes could not be drawn)</p>".to_owned();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw();
        for (name, color, f) in lines {
            let points = report
                .intervals
                .iter()
                .map(|i| (i.start_s + report.interval_s / 2.0, f(i)));
            if let Ok(series) = chart.draw_series(LineSeries::new(points, color)) {
                let c = *color;
                series
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg_or_note(svg)
}

fn svg_or_note(svg: String) -> String {
    if svg.contains("<svg") {
        svg
    } else {
        "<p>(no chart: nothing measured)</p>".to_owned()
    }
}

fn latency_chart(report: &Report) -> String {
    over_time(
        report,
        "latency (ms)",
        &[
            ("p50", BLUE, &|i| i.latency_ms.p50),
            ("p99", RED, &|i| i.latency_ms.p99),
            ("max", BLACK, &|i| i.latency_ms.max),
        ],
    )
}

fn throughput_chart(report: &Report) -> String {
    let step = report.interval_s.max(1e-9);
    over_time(
        report,
        "per second",
        &[
            ("requests/s", BLUE, &|i| i.rps),
            ("errors/s", RED, &move |i| i.errors as f64 / step),
        ],
    )
}

/// Latency against percentile, the percentile axis in "nines" (90%, 99%, 99.9%, ...), as
/// HdrHistogram plots it: the tail is where load tests differ.
fn distribution_chart(report: &Report) -> String {
    let Ok(h) = decode(&report.histogram, "the run") else {
        return "<p>(no chart: unreadable histogram)</p>".to_owned();
    };
    if h.is_empty() {
        return "<p>(no chart: nothing measured)</p>".to_owned();
    }
    let points: Vec<(f64, f64)> = (0..=60)
        .map(|k| {
            let nines = f64::from(k) / 10.0; // 0 .. 6 nines
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let Ok(mut chart) = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..6.0, 0.0..top)
        else {
            return "<p>(no chart: the axes could not be drawn)</p>".to_owned();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|n| {
                let pct = 100.0 * (1.0 - 10f64.powf(-n));
                format!("{pct:.4}%")
            })
            .draw();
        let _ = chart.draw_series(LineSeries::new(points, &BLUE));
        let _ = root.present();
    }
    svg_or_note(svg)
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
}
