//! Minimal incremental SSE parsing: finding event boundaries and reading an event's fields.
//!
//! Only what [`EndpointRewriteBody`](super::EndpointRewriteBody) needs: it must find where each event
//! ends in a stream that arrives in arbitrary pieces, and inspect one complete event. Line endings follow
//! the SSE grammar: CRLF, LF or CR, where a CR at the end of the available bytes may still turn out to be
//! the first half of a CRLF. Public for the fuzz targets (`proxy/fuzz`).

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
    let skip = if at_stream_start && event.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    let mut event_type: &[u8] = b"";
    let mut data_values: Vec<Range<usize>> = Vec::new();
    for line in lines(event, skip) {
        let text = &event[line.clone()];
        // Blank lines: the event terminator, or the LF half of a CRLF that ended the previous event.
        // Comment lines start with ':'.
        if text.is_empty() || text[0] == b':' {
            continue;
        }
        let (name, value) = match text.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut value_start = line.start + colon + 1;
                if value_start < line.end && event[value_start] == b' ' {
                    value_start += 1;
                }
                (&text[..colon], value_start..line.end)
            }
            None => (text, line.end..line.end),
        };
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
mod tests {
    use super::*;

    /// Event boundaries of `input` fed to one splitter in the given pieces, as stream offsets.
    fn boundaries(pieces: &[&[u8]]) -> Vec<usize> {
        let mut splitter = EventSplitter::default();
        let mut found = Vec::new();
        let mut base = 0;
        for piece in pieces {
            let mut pos = 0;
            while let Some(end) = splitter.find_event_end(&piece[pos..]) {
                pos += end;
                found.push(base + pos);
            }
            base += piece.len();
        }
        found
    }

    #[test]
    fn events_end_at_blank_lines_with_any_line_ending() {
        assert_eq!(boundaries(&[b"data: a\n\ndata: b\n\n"]), vec![9, 18]);
        // A CRLF blank line ends after its LF when the LF is already there.
        assert_eq!(boundaries(&[b"data: a\r\n\r\ndata: b"]), vec![11]);
        assert_eq!(boundaries(&[b"data: a\r\rdata: b\r\r"]), vec![9, 18]);
        assert_eq!(boundaries(&[b"data: a\r\n\n"]), vec![10]);
    }

    #[test]
    fn crlf_split_across_pieces_is_one_terminator() {
        assert_eq!(boundaries(&[b"data: a\r", b"\n", b"\r", b"\n"]), vec![10]);
        assert_eq!(
            boundaries(&[b"data: a\r", b"\ndata: b\r\n"]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn lf_completing_a_crlf_blank_line_is_not_another_event() {
        // "\r\r\n": CR ends the data line, CRLF ends the blank line; the LF belongs to the same terminator.
        assert_eq!(boundaries(&[b"data: a\r\r", b"\ndata: b\n\n"]), vec![9, 19]);
    }

    #[test]
    fn classifies_endpoint_events_with_and_without_space() {
        let event = b"event: endpoint\ndata: /messages?sessionId=1\n\n";
        let EventKind::Endpoint(range) = classify(event, true) else {
            panic!("not endpoint")
        };
        assert_eq!(&event[range], b"/messages?sessionId=1");

        let event = b"event:endpoint\r\ndata:/m\r\n\r\n";
        let EventKind::Endpoint(range) = classify(event, false) else {
            panic!("not endpoint")
        };
        assert_eq!(&event[range], b"/m");
    }

    #[test]
    fn leading_lf_of_previous_crlf_and_bom_are_ignored() {
        let event = b"\nevent: endpoint\r\ndata: /m\r\n\r\n";
        assert!(matches!(classify(event, false), EventKind::Endpoint(_)));
        let event = "\u{feff}event: endpoint\ndata: /m\n\n";
        assert!(matches!(
            classify(event.as_bytes(), true),
            EventKind::Endpoint(_)
        ));
        assert_eq!(classify(event.as_bytes(), false), EventKind::Other);
    }

    #[test]
    fn other_events_comments_and_dataless_endpoints_are_not_rewritten() {
        assert_eq!(
            classify(b"event: message\ndata: {}\n\n", false),
            EventKind::Other
        );
        assert_eq!(
            classify(b": event: endpoint\ndata: /m\n\n", false),
            EventKind::Other
        );
        assert_eq!(classify(b"event: endpoint\n\n", false), EventKind::Ignored);
        assert_eq!(classify(b": ping\n\n", false), EventKind::Ignored);
        assert_eq!(
            classify(b"event: endpoint\nevent: message\ndata: /m\n\n", false),
            EventKind::Other
        );
        assert_eq!(classify(b"data: /m\n\n", false), EventKind::Other);
        assert_eq!(
            classify(b"event: endpoint\ndata: /a\ndata: /b\n\n", false),
            EventKind::UnsupportedEndpoint
        );
    }
}
