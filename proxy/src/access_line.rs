//! The access-log line, formatted by hand: the one log line every request writes.
//!
//! Through tracing-subscriber's generic formatter the line was a large share of the sidecar's CPU
//! per request (BENCHMARKS.md, "Figures behind code decisions"): a `fmt::Write` call per field
//! name, `=`, value and style, and a calendar computation per timestamp. Like Envoy's and nginx's
//! access logs it is a fixed line, so it is written here directly into the log buffer with the
//! layout the generic formatter gives (`pretty`: `2026-12-01T14:22:42.360295Z  INFO access: request
//! method=POST path=/mcp ...`; `json`: one flat object with the same keys), and it still obeys
//! `RUST_LOG` (`access=off`, `warn`, ...) through [`tracing::enabled!`].
//!
//! Text that comes from the client (path, request id) is escaped in both formats, so a request
//! cannot forge log lines.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The fields of one access-log line, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub struct AccessFields<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Status sent to the client.
    pub status: u16,
    /// Upstream name or `none`.
    pub upstream: &'a str,
    /// Request id.
    pub request_id: &'a str,
    /// Time until the body ended.
    pub duration: Duration,
    /// Time to response headers.
    pub ttfb: Duration,
    /// Body bytes sent.
    pub bytes: u64,
    /// `complete`, `client_gone`, `shutdown`, `idle_timeout`, `upstream_error`.
    pub outcome: &'a str,
    /// Why the sidecar answered itself, or empty.
    pub error: &'a str,
    /// The caller's subject, or empty.
    pub subject: &'a str,
    /// The W3C trace id (32 lowercase hex digits) when tracing is on, or empty (then the field
    /// is left out of the line).
    pub trace_id: &'a str,
}

/// Appends the line (with its newline) for `fields` at `now` in `format` to `out`.
pub fn write_line(out: &mut Vec<u8>, format: LogFormat, now: SystemTime, f: &AccessFields<'_>) {
    match format {
        LogFormat::Pretty => write_pretty(out, now, f),
        LogFormat::Json => write_json(out, now, f),
    }
}

fn write_pretty(out: &mut Vec<u8>, now: SystemTime, f: &AccessFields<'_>) {
    write_timestamp(out, now);
    out.extend_from_slice(b"  INFO access: request method=");
    push_plain(out, f.method);
    out.extend_from_slice(b" path=");
    push_plain(out, f.path);
    out.extend_from_slice(b" status=");
    push_int(out, u64::from(f.status));
    out.extend_from_slice(b" upstream=");
    push_plain(out, f.upstream);
    out.extend_from_slice(b" request_id=");
    push_plain(out, f.request_id);
    if !f.trace_id.is_empty() {
        out.extend_from_slice(b" trace_id=");
        push_plain(out, f.trace_id);
    }
    out.extend_from_slice(b" duration_ms=");
    push_millis(out, f.duration);
    out.extend_from_slice(b" ttfb_ms=");
    push_millis(out, f.ttfb);
    out.extend_from_slice(b" bytes=");
    push_int(out, f.bytes);
    out.extend_from_slice(b" outcome=");
    push_quoted(out, f.outcome);
    out.extend_from_slice(b" error=");
    push_quoted(out, f.error);
    out.extend_from_slice(b" subject=");
    push_quoted(out, f.subject);
    out.push(b'\n');
}

fn write_json(out: &mut Vec<u8>, now: SystemTime, f: &AccessFields<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    push_json(out, f.method);
    out.extend_from_slice(b",\"path\":");
    push_json(out, f.path);
    out.extend_from_slice(b",\"status\":");
    push_int(out, u64::from(f.status));
    out.extend_from_slice(b",\"upstream\":");
    push_json(out, f.upstream);
    out.extend_from_slice(b",\"request_id\":");
    push_json(out, f.request_id);
    if !f.trace_id.is_empty() {
        out.extend_from_slice(b",\"trace_id\":");
        push_json(out, f.trace_id);
    }
    out.extend_from_slice(b",\"duration_ms\":");
    push_millis(out, f.duration);
    out.extend_from_slice(b",\"ttfb_ms\":");
    push_millis(out, f.ttfb);
    out.extend_from_slice(b",\"bytes\":");
    push_int(out, f.bytes);
    out.extend_from_slice(b",\"outcome\":");
    push_json(out, f.outcome);
    out.extend_from_slice(b",\"error\":");
    push_json(out, f.error);
    out.extend_from_slice(b",\"subject\":");
    push_json(out, f.subject);
    out.extend_from_slice(b",\"target\":\"access\"}\n");
}

fn push_int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with microsecond resolution (`1.060`), a JSON number in both formats.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_int(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Whether `s` can be written as is: printable ASCII with nothing that needs quoting.
fn is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// An unquoted value (the generic formatter's `%` fields); escaped like Rust's `{:?}` if it holds
/// anything but plain printable ASCII, so it stays one line.
fn push_plain(out: &mut Vec<u8>, s: &str) {
    if is_plain(s) {
        out.extend_from_slice(s.as_bytes());
    } else {
        push_debug(out, s);
    }
}

/// A quoted value (the generic formatter's string fields): `"complete"`.
fn push_quoted(out: &mut Vec<u8>, s: &str) {
    if is_plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        push_debug(out, s);
    }
}

fn push_debug(out: &mut Vec<u8>, s: &str) {
    let mut text = String::with_capacity(s.len() + 2);
    let _ = write!(text, "{s:?}");
    out.extend_from_slice(text.as_bytes());
}

/// A JSON string.
fn push_json(out: &mut Vec<u8>, s: &str) {
    if is_plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json escapes quotes, backslashes and control characters; writing to a Vec
        // cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

thread_local! {
    /// The last second formatted (`2026-12-01T14:22:42.`): the calendar work is done once a
    /// second per thread, not once per line.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// RFC 3339 UTC with microseconds, as tracing-subscriber writes it: `2026-12-01T14:22:42.360295Z`.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, second_prefix(secs));
        }
        out.extend_from_slice(&cached.1);
    });
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for a Unix time in seconds.
fn second_prefix(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = String::with_capacity(20);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let mut prefix = [b'0'; 20];
    let n = text.len().min(20);
    prefix[..n].copy_from_slice(&text.as_bytes()[..n]);
    prefix
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields<'a>(path: &'a str, request_id: &'a str) -> AccessFields<'a> {
        AccessFields {
            method: "POST",
            path,
            status: 200,
            upstream: "default",
            request_id,
            duration: Duration::from_micros(1_060),
            ttfb: Duration::from_micros(86),
            bytes: 75,
            outcome: "complete",
            error: "",
            subject: "",
            trace_id: "",
        }
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    fn line(format: LogFormat, f: &AccessFields<'_>) -> String {
        let mut out = Vec::new();
        // 2026-12-01T14:22:42.360295Z
        write_line(&mut out, format, at(1_796_134_962, 360_295), f);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pretty_line_has_the_generic_formatters_layout() {
        assert_eq!(
            line(LogFormat::Pretty, &fields("/mcp", "rid-1")),
            "2026-12-01T14:22:42.360295Z  INFO access: request method=POST path=/mcp status=200 \
             upstream=default request_id=rid-1 duration_ms=1.060 ttfb_ms=0.086 bytes=75 \
             outcome=\"complete\" error=\"\" subject=\"\"\n"
        );
    }

    #[test]
    fn trace_id_follows_the_request_id_only_when_traced() {
        let traced = AccessFields {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            ..fields("/mcp", "rid-1")
        };
        assert!(
            line(LogFormat::Pretty, &traced).contains(
                " request_id=rid-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 duration_ms="
            )
        );
        let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &traced)).unwrap();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!line(LogFormat::Pretty, &fields("/mcp", "rid-1")).contains("trace_id"));
        let v: serde_json::Value =
            serde_json::from_str(&line(LogFormat::Json, &fields("/mcp", "rid-1"))).unwrap();
        assert!(v.get("trace_id").is_none());
    }

    #[test]
    fn json_line_is_one_flat_object_with_numbers_as_numbers() {
        let text = line(LogFormat::Json, &fields("/mcp", "rid-1"));
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-12-01T14:22:42.360295Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["target"], "access");
        assert_eq!(v["path"], "/mcp");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.06);
        assert_eq!(v["ttfb_ms"], 0.086);
        assert_eq!(v["bytes"], 75);
        assert_eq!(v["subject"], "");
    }

    #[test]
    fn timestamps_match_the_calendar() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_709_251_199, "2024-02-29T23:59:59.000000Z"),
            (4_102_444_800, "2100-01-01T00:00:00.000000Z"),
        ];
        for (secs, want) in cases {
            let mut out = Vec::new();
            write_timestamp(&mut out, at(secs, 0));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        let mut out = Vec::new();
        write_timestamp(&mut out, at(59, 7));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:59.000007Z"
        );
    }

    proptest! {
        /// Whatever a client puts in the path or request id, each format stays one line, and the
        /// JSON line parses back to the same text.
        #[test]
        fn client_text_cannot_break_the_line(path in "\\PC*|[\\x00-\\x7f]*", rid in "\\PC*") {
            for format in [LogFormat::Pretty, LogFormat::Json] {
                let text = line(format, &fields(&path, &rid));
                prop_assert_eq!(text.matches('\n').count(), 1);
                prop_assert!(text.ends_with('\n'));
                if let LogFormat::Json = format {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(v["path"].as_str(), Some(path.as_str()));
                    prop_assert_eq!(v["request_id"].as_str(), Some(rid.as_str()));
                }
            }
        }

        #[test]
        fn millis_have_microsecond_resolution(micros in 0u64..10_000_000_000) {
            let mut out = Vec::new();
            push_millis(&mut out, Duration::from_micros(micros));
            let text = String::from_utf8(out).unwrap();
            let parsed: f64 = text.parse().unwrap();
            prop_assert!((parsed * 1000.0 - micros as f64).abs() < 0.5, "{} for {}", text, micros);
        }
    }
}
