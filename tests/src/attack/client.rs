//! The attacker's side of a row: write raw bytes (in the row's segments) to a proxy and read
//! back every answer, bounded in time, noting whether the proxy closed the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Pause between two segments of a row, long enough for the proxy to read them apart.
pub const SEGMENT_PAUSE: Duration = Duration::from_millis(60);

/// Longest a row waits for the answers it expects (and for a close it expects).
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// How long a row keeps listening after its expected answers for anything more (a smuggled
/// request's answer, a close).
pub const QUIET: Duration = Duration::from_millis(300);

/// One HTTP/1 answer read off the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The head's text (status line and fields), without the blank line.
    pub head: String,
}

impl Answer {
    /// The value of field `name` (case-insensitive), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the client saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every complete answer, in order.
    pub answers: Vec<Answer>,
    /// The proxy closed (or reset) the connection before the row stopped listening.
    pub closed: bool,
    /// The proxy answered with an HTTP/2 SETTINGS frame.
    pub http2: bool,
    /// Bytes after the last complete answer (a cut or unparsable answer).
    pub leftover: Vec<u8>,
    /// The connection could not be made or written.
    pub error: Option<String>,
}

impl Outcome {
    /// A one-line description: `401 200 closed`, `h2`, `(no answer) open`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.answers.iter().map(|a| a.status.to_string()).collect();
        if self.http2 {
            parts.push("h2".into());
        }
        if parts.is_empty() {
            parts.push("(no answer)".into());
        }
        if !self.leftover.is_empty() {
            parts.push(format!("+{}B", self.leftover.len()));
        }
        parts.push(if self.closed { "closed" } else { "open" }.into());
        if let Some(e) = &self.error {
            parts.push(format!("error: {e}"));
        }
        parts.join(" ")
    }
}

/// Sends `segments` to `addr` and reads answers until `expected` of them came and then
/// [`QUIET`] passed (or, with `wait_close`, until the close), the connection closed, or
/// [`READ_DEADLINE`] passed.
pub async fn exchange(
    addr: SocketAddr,
    segments: &[Vec<u8>],
    expected: usize,
    wait_close: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    let deadline = Instant::now() + READ_DEADLINE;
    let mut stream = match tokio::time::timeout(READ_DEADLINE, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            outcome.error = Some(format!("connect: {e}"));
            return outcome;
        }
        Err(_) => {
            outcome.error = Some("connect timed out".into());
            return outcome;
        }
    };
    let _ = stream.set_nodelay(true);
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(SEGMENT_PAUSE).await;
        }
        // A proxy may refuse and close before everything is written: what it answered counts.
        if stream.write_all(segment).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        outcome.http2 = outcome.http2 || is_http2_settings(&buf);
        if !outcome.http2 {
            while let Some((answer, used)) = parse_answer(&buf) {
                buf.drain(..used);
                outcome.answers.push(answer);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let done = outcome.http2 || outcome.answers.len() >= expected;
        let wait = if done && !wait_close {
            QUIET.min(deadline - now)
        } else {
            deadline - now
        };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => {
                outcome.closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if done => break,
            Err(_) => {}
        }
    }
    if !outcome.http2 {
        // An answer framed by the close.
        if outcome.closed
            && let Some(answer) = parse_head(&buf).map(|(a, _)| a)
        {
            outcome.answers.push(answer);
            buf.clear();
        }
        outcome.leftover = buf;
    }
    outcome
}

/// An HTTP/2 frame header of type SETTINGS (4) on stream 0 at the front.
fn is_http2_settings(buf: &[u8]) -> bool {
    buf.len() >= 9 && !buf.starts_with(b"HTTP/") && buf[3] == 4 && buf[5..9] == [0, 0, 0, 0]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A response head at the front: the answer and where its body starts.
fn parse_head(buf: &[u8]) -> Option<(Answer, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|s| s.parse().ok())?;
    Some((Answer { status, head }, end + 4))
}

/// One complete answer (head and body) at the front, and its length.
fn parse_answer(buf: &[u8]) -> Option<(Answer, usize)> {
    let (answer, body_at) = parse_head(buf)?;
    if answer.status < 200 || answer.status == 204 || answer.status == 304 {
        return Some((answer, body_at));
    }
    let chunked = answer
        .field("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let len = chunked_len(&buf[body_at..])?;
        return Some((answer, body_at + len));
    }
    // Without a length the body runs to the close: complete only then (see `exchange`).
    let length: usize = answer.field("content-length")?.parse().ok()?;
    (buf.len() >= body_at + length).then_some((answer, body_at + length))
}

/// The length of a complete chunked body at the front of `body`.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = find(&body[at..], b"\r\n")?;
        let text = String::from_utf8_lossy(&body[at..at + eol]);
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        at += eol + 2;
        if size == 0 {
            loop {
                let eol = find(&body[at..], b"\r\n")?;
                at += eol + 2;
                if eol == 0 {
                    return Some(at);
                }
            }
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if body.len() < at {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_framed_by_length_or_chunks() {
        let first: &[u8] = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}";
        let second: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let two = [first, second].concat();
        let (a, used) = parse_answer(&two).unwrap();
        assert_eq!((a.status, used), (401, first.len()));
        let (b, used2) = parse_answer(&two[used..]).unwrap();
        assert_eq!((b.status, used + used2), (200, two.len()));
        assert!(parse_answer(&two[used..two.len() - 1]).is_none());
        assert_eq!(
            parse_answer(b"HTTP/1.1 100 Continue\r\n\r\n")
                .unwrap()
                .0
                .status,
            100
        );
    }
}
