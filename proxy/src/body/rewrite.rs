//! Rewriting the JSON-RPC responses in an answer, as it passes: the `tools/list` filter of the
//! authorization rules and the Tasks facade's capability and `taskSupport` additions are
//! [`MessageRewrite`]s applied by these bodies (so is the metrics' tool-name learner, which only
//! reads).
//!
//! - JSON answers to a POST are read whole (bounded by [`MAX_REWRITE_BYTES`]) and rewritten
//!   when a targeted response changed; batches element by element, matched by the requests' ids.
//! - SSE answers are rewritten event by event: an event is held only until its blank line (a
//!   client cannot act on half an event anyway), and only events that may be a JSON-RPC response
//!   are parsed. Once every targeted id was answered the rest of the stream passes frame by frame
//!   untouched.
//! - GET streams (the legacy transport's answers, resumed streams) carry no request ids, so any
//!   response the rewrite recognises by its shape is rewritten there.
//!
//! Nothing is rewritten when nothing changed: the bytes pass unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use super::{BoxError, ProxyBody};
use crate::mcp::sse::EventSplitter;

/// A change to JSON-RPC responses as they pass.
pub trait MessageRewrite: Send + Sync + 'static {
    /// Rewrites one targeted JSON-RPC response in place; `true` when it changed.
    fn rewrite(&self, message: &mut Value) -> bool;

    /// For GET streams (no ids to target): whether an SSE event holding a JSON-RPC result may
    /// be one this rewrite changes, judged from its bytes before anything is parsed.
    fn worth_parsing(&self, event: &[u8]) -> bool {
        let _ = event;
        true
    }
}

/// Wraps the body of `response` (an event stream when `sse`) so `rewrite` changes the responses
/// `target` names. A JSON answer is rewritten only for [`Target::Ids`]; other bodies pass as they
/// are. A rewritten answer changes length, so it is re-framed (chunked).
pub fn apply<R: MessageRewrite + Unpin>(
    response: http::Response<ProxyBody>,
    sse: bool,
    target: Target,
    rewrite: R,
) -> http::Response<ProxyBody> {
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    let body = if sse {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        SseRewriteBody::new(body, target, rewrite).boxed_unsync()
    } else if is_json(&parts.headers) && matches!(target, Target::Ids(_)) {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        JsonRewriteBody::new(body, target, rewrite).boxed_unsync()
    } else {
        body
    };
    http::Response::from_parts(parts, body)
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Several rewrites, applied in order.
#[derive(Clone, Default)]
pub struct Rewrites(pub Vec<Arc<dyn MessageRewrite>>);

impl std::fmt::Debug for Rewrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rewrites({})", self.0.len())
    }
}

impl MessageRewrite for Rewrites {
    fn rewrite(&self, message: &mut Value) -> bool {
        self.0
            .iter()
            .fold(false, |changed, r| r.rewrite(message) | changed)
    }

    fn worth_parsing(&self, event: &[u8]) -> bool {
        self.0.iter().any(|r| r.worth_parsing(event))
    }
}

/// Largest answer (JSON) or single SSE event held for rewriting. Tool lists are tens of KiB; an
/// answer beyond this is cut with an error rather than passed unrewritten.
pub const MAX_REWRITE_BYTES: usize = 16 * 1024 * 1024;

/// Which responses to rewrite.
#[derive(Debug, Clone)]
pub enum Target {
    /// Responses with these JSON-RPC ids (the POST's requests whose answers are rewritten).
    Ids(Vec<Value>),
    /// Any response the rewrite recognises by its shape (GET streams, which carry no request
    /// ids).
    Shape,
}

/// Rewrites one JSON-RPC message in place; returns (it was a targeted response, it changed).
fn rewrite_message<R: MessageRewrite + ?Sized>(
    msg: &mut Value,
    target: &Target,
    rewrite: &R,
) -> (bool, bool) {
    let targeted = match target {
        Target::Ids(ids) => msg.get("id").is_some_and(|id| ids.contains(id)),
        Target::Shape => msg.get("id").is_some(),
    };
    if !targeted || msg.get("method").is_some() {
        return (false, false);
    }
    (true, rewrite.rewrite(msg))
}

/// Rewrites a whole JSON document (one message or a batch); `Some` with new bytes when changed.
pub fn rewrite_json<R: MessageRewrite + ?Sized>(
    bytes: &[u8],
    target: &Target,
    rewrite: &R,
) -> Option<Bytes> {
    let mut doc: Value = serde_json::from_slice(bytes).ok()?;
    let changed = match &mut doc {
        Value::Array(items) => {
            let mut changed = false;
            for m in items.iter_mut() {
                changed |= rewrite_message(m, target, rewrite).1;
            }
            changed
        }
        msg => rewrite_message(msg, target, rewrite).1,
    };
    changed.then(|| Bytes::from(doc.to_string()))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Rewrites one complete SSE event. Returns how many targeted responses it answered and the
/// new event bytes when it changed.
fn rewrite_event<R: MessageRewrite + ?Sized>(
    event: &[u8],
    target: &Target,
    rewrite: &R,
) -> (usize, Option<Bytes>) {
    let worth_parsing = match target {
        Target::Ids(_) => contains(event, b"\"result\"") || contains(event, b"\"error\""),
        Target::Shape => contains(event, b"\"result\"") && rewrite.worth_parsing(event),
    };
    if !worth_parsing {
        return (0, None);
    }
    let Ok(text) = std::str::from_utf8(event) else {
        return (0, None);
    };
    let lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    let mut data: Vec<&str> = Vec::new();
    let mut event_type = "message";
    for line in &lines {
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (*line, ""),
        };
        match name {
            "data" => data.push(value),
            "event" => event_type = value,
            _ => {}
        }
    }
    if event_type != "message" || data.is_empty() {
        return (0, None);
    }
    let Ok(mut doc) = serde_json::from_str::<Value>(&data.join("\n")) else {
        return (0, None);
    };
    let (answered, changed) = match &mut doc {
        Value::Array(items) => items.iter_mut().fold((0, false), |(n, c), m| {
            let (a, ch) = rewrite_message(m, target, rewrite);
            (n + usize::from(a), c || ch)
        }),
        msg => {
            let (a, ch) = rewrite_message(msg, target, rewrite);
            (usize::from(a), ch)
        }
    };
    if !changed {
        return (answered, None);
    }
    // Same fields in the same order; the data lines become one line holding the new JSON.
    let mut out = String::with_capacity(event.len());
    let mut data_written = false;
    for line in lines.iter().filter(|l| !l.is_empty()) {
        if line.starts_with("data:") || *line == "data" {
            if !data_written {
                out.push_str("data: ");
                out.push_str(&doc.to_string());
                out.push('\n');
                data_written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    (answered, Some(Bytes::from(out)))
}

/// A JSON answer, read whole and rewritten at its end.
pub struct JsonRewriteBody<R> {
    inner: ProxyBody,
    buf: BytesMut,
    target: Target,
    rewrite: R,
    finished: bool,
}

impl<R> std::fmt::Debug for JsonRewriteBody<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonRewriteBody")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<R> JsonRewriteBody<R> {
    /// Wraps `inner`.
    pub fn new(inner: ProxyBody, target: Target, rewrite: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            target,
            rewrite,
            finished: false,
        }
    }
}

impl<R: MessageRewrite + Unpin> Body for JsonRewriteBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if this.buf.len() + data.len() > MAX_REWRITE_BYTES {
                            this.finished = true;
                            return Poll::Ready(Some(Err("answer too large to rewrite".into())));
                        }
                        this.buf.extend_from_slice(&data);
                    }
                    // Trailers of a JSON answer carry nothing to filter; they are dropped with
                    // the framing the rewritten body replaces.
                    Err(_trailers) => {}
                },
                Some(Err(e)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.finished = true;
                    let original = std::mem::take(&mut this.buf).freeze();
                    let out =
                        rewrite_json(&original, &this.target, &this.rewrite).unwrap_or(original);
                    return Poll::Ready(if out.is_empty() {
                        None
                    } else {
                        Some(Ok(Frame::data(out)))
                    });
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An SSE answer, rewritten event by event.
pub struct SseRewriteBody<R> {
    inner: ProxyBody,
    splitter: EventSplitter,
    /// Bytes of the current, incomplete event.
    pending: BytesMut,
    target: Target,
    rewrite: R,
    /// Targeted answers still expected (`Target::Ids`).
    outstanding: usize,
    /// Every targeted answer has passed: forward the rest untouched.
    passthrough: bool,
}

impl<R> std::fmt::Debug for SseRewriteBody<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseRewriteBody")
            .field("pending", &self.pending.len())
            .field("passthrough", &self.passthrough)
            .finish_non_exhaustive()
    }
}

impl<R: MessageRewrite> SseRewriteBody<R> {
    /// Wraps `inner`.
    pub fn new(inner: ProxyBody, target: Target, rewrite: R) -> Self {
        let outstanding = match &target {
            Target::Ids(ids) => ids.len(),
            Target::Shape => usize::MAX,
        };
        Self {
            inner,
            splitter: EventSplitter::default(),
            pending: BytesMut::new(),
            target,
            rewrite,
            outstanding,
            passthrough: outstanding == 0,
        }
    }

    fn process(&mut self, data: Bytes) -> Result<Bytes, BoxError> {
        if self.passthrough && self.pending.is_empty() {
            return Ok(data);
        }
        let mut out = BytesMut::new();
        let mut pos = 0;
        while !self.passthrough {
            let Some(end) = self.splitter.find_event_end(&data[pos..]) else {
                break;
            };
            let event = if self.pending.is_empty() {
                data.slice(pos..pos + end)
            } else {
                self.pending.extend_from_slice(&data[pos..pos + end]);
                self.pending.split().freeze()
            };
            pos += end;
            let (answered, rewritten) = rewrite_event(&event, &self.target, &self.rewrite);
            out.extend_from_slice(rewritten.as_ref().unwrap_or(&event));
            if let Target::Ids(_) = self.target {
                self.outstanding = self.outstanding.saturating_sub(answered);
                self.passthrough = self.outstanding == 0;
            }
        }
        let rest = &data[pos..];
        if self.passthrough {
            out.extend_from_slice(&self.pending.split());
            out.extend_from_slice(rest);
        } else {
            if self.pending.len() + rest.len() > MAX_REWRITE_BYTES {
                return Err("SSE event too large to rewrite".into());
            }
            self.pending.extend_from_slice(rest);
        }
        Ok(out.freeze())
    }
}

impl<R: MessageRewrite + Unpin> Body for SseRewriteBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.process(data)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None if !this.pending.is_empty() => {
                    // An unterminated last event: a client drops it, so pass it as it came.
                    return Poll::Ready(Some(Ok(Frame::data(this.pending.split().freeze()))));
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
