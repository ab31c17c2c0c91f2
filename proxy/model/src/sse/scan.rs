//! Incremental SSE parsing: finding event boundaries in a stream that arrives in arbitrary
//! pieces ([`EventSplitter`]), and reading one complete event: [`classify`] for the sidecar's
//! legacy `endpoint` rewrite (byte ranges, no copy), [`decode`] for whoever needs the event as a
//! client sees it (type, id, data).
//!
//! Line endings follow the SSE grammar: CRLF, LF or CR, where a CR at the end of the available
//! bytes may still turn out to be the first half of a CRLF.

use std::ops::Range;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// Splits an SSE byte stream into events; keeps its position in the line grammar between calls so input
/// may be split anywhere.
#[derive(Debug, Default, Clone)]
pub struct EventSplitter {
    /// Bytes in the current line so far; 0 means the next terminator ends a blank line.
    line_len: usize,
    /// The previous byte was a CR, so an LF now completes a CRLF instead of ending another line.
    after_cr: bool,
}

impl EventSplitter {
    /// Scans `bytes`, continuing where the previous call stopped, and returns the offset just past the
    /// first blank line (the end of an event), or `None` after consuming all of `bytes` without one.
    pub fn find_event_end(&mut self, bytes: &[u8]) -> Option<usize> {
        for (index, &byte) in bytes.iter().enumerate() {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                // Second half of a CRLF whose CR already ended the line.
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let blank = self.line_len == 0;
                    self.line_len = 0;
                    if blank {
                        // A blank line written as CRLF ends after its LF: leaving the LF for the
                        // next event would hold it back until the backend sends more.
                        if self.after_cr && bytes.get(index + 1) == Some(&b'\n') {
                            self.after_cr = false;
                            return Some(index + 2);
                        }
                        return Some(index + 1);
                    }
                }
                _ => self.line_len += 1,
            }
        }
        None
    }
}

/// What a complete event means for the endpoint rewrite.
#[derive(Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A block a client would not dispatch (comments only, no `data`): forward it untouched.
    Ignored,
    /// A dispatched event that is not `endpoint`: forward it untouched.
    Other,
    /// An `endpoint` event whose single `data` value occupies this byte range of the event.
    Endpoint(Range<usize>),
    /// An `endpoint` event this parser cannot rewrite safely (several `data` lines, non-UTF-8 value).
    UnsupportedEndpoint,
}

/// Classifies one complete event as produced by [`EventSplitter`]. `at_stream_start` says whether the
/// event is the first bytes of the stream, where a UTF-8 byte order mark is ignored.
pub fn classify(event: &[u8], at_stream_start: bool) -> EventKind {
    let mut event_type: &[u8] = b"";
    let mut data_values: Vec<Range<usize>> = Vec::new();
    for (name, value) in fields(event, at_stream_start) {
        match name {
            b"event" => event_type = &event[value],
            b"data" => data_values.push(value),
            _ => {}
        }
    }
    // Clients dispatch only events with at least one data line, and the last `event` field wins.
    if data_values.is_empty() {
        return EventKind::Ignored;
    }
    if event_type != b"endpoint" {
        return EventKind::Other;
    }
    match data_values.as_slice() {
        [value] if std::str::from_utf8(&event[value.clone()]).is_ok() => {
            EventKind::Endpoint(value.clone())
        }
        _ => EventKind::UnsupportedEndpoint,
    }
}

/// One event as a client dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    /// The event type: the last `event` field, `message` when there is none or it is empty.
    pub event_type: String,
    /// The last `id` field, if any (one containing NUL is ignored, as clients do).
    pub id: Option<String>,
    /// The `data` lines joined with LF (whatever line endings the stream used).
    pub data: String,
}

/// Decodes one complete event as produced by [`EventSplitter`] the way the HTML standard's
/// `EventSource` does (invalid UTF-8 becomes U+FFFD); `None` for a block a client does not
/// dispatch (comments only, no `data` line), whose `id` is then dropped as well. `retry` and
/// unknown fields are ignored. `at_stream_start` is as for [`classify`].
pub fn decode(event: &[u8], at_stream_start: bool) -> Option<DecodedEvent> {
    let mut event_type = None;
    let mut id = None;
    let mut data: Option<String> = None;
    for (name, value) in fields(event, at_stream_start) {
        let value = &event[value];
        match name {
            b"event" => event_type = Some(value),
            b"id" if !value.contains(&0) => id = Some(value),
            b"data" => {
                let value = String::from_utf8_lossy(value);
                match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => data = Some(value.into_owned()),
                }
            }
            _ => {}
        }
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Some(DecodedEvent {
        data: data?,
        event_type: event_type
            .filter(|t| !t.is_empty())
            .map_or_else(|| "message".to_owned(), text),
        id: id.map(text),
    })
}

/// The fields of `event` as (name, byte range of the value), in order: blank lines and comments
/// skipped, the one space after the colon dropped, a line without a colon a field with an empty
/// value.
fn fields(event: &[u8], at_stream_start: bool) -> impl Iterator<Item = (&[u8], Range<usize>)> {
    let skip = if at_stream_start && event.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    lines(event, skip).filter_map(|line| {
        let text = &event[line.clone()];
        // Blank lines: the event terminator, or the LF half of a CRLF that ended the previous event.
        // Comment lines start with ':'.
        if text.is_empty() || text[0] == b':' {
            return None;
        }
        Some(match text.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut value_start = line.start + colon + 1;
                if value_start < line.end && event[value_start] == b' ' {
                    value_start += 1;
                }
                (&text[..colon], value_start..line.end)
            }
            None => (text, line.end..line.end),
        })
    })
}

/// Byte ranges of the lines of `event` from `start`, without terminators (CRLF counts as one).
fn lines(event: &[u8], start: usize) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= event.len() {
            return None;
        }
        let line_start = pos;
        let rest = &event[pos..];
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(offset) => {
                let line_end = pos + offset;
                let crlf = rest[offset] == b'\r' && rest.get(offset + 1) == Some(&b'\n');
                pos = line_end + if crlf { 2 } else { 1 };
                Some(line_start..line_end)
            }
            None => {
                pos = event.len();
                Some(line_start..event.len())
            }
        }
    })
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
