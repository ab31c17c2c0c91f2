//! `tools/list` filtering: a principal only sees the tools its rules let it call.
//!
//! - JSON answers to a POST that carried `tools/list` are read whole (bounded by
//!   [`MAX_FILTERED_BYTES`]) and rewritten when a tool was removed; batches element by element,
//!   matched by the requests' ids.
//! - SSE answers are rewritten event by event: an event is held only until its blank line (a
//!   client cannot act on half an event anyway), and only events that may be a JSON-RPC response
//!   are parsed. Once every `tools/list` id was answered the rest of the stream passes frame by
//!   frame untouched.
//! - GET streams (the legacy transport's answers, resumed streams) carry no request ids, so any
//!   response whose `result.tools` is an array is filtered there.
//!
//! Nothing is rewritten when nothing was removed: the bytes pass unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use super::authz::Rules;
use super::principal::Principal;
use crate::body::{BoxError, ProxyBody};
use crate::mcp::sse::EventSplitter;

/// Largest `tools/list` answer (JSON) or single SSE event held for filtering. Tool lists are tens
/// of KiB; an answer beyond this is cut with an error rather than passed unfiltered.
pub const MAX_FILTERED_BYTES: usize = 16 * 1024 * 1024;

/// Which responses to filter.
#[derive(Debug, Clone)]
pub enum Target {
    /// Responses with these JSON-RPC ids (the `tools/list` requests of the POST).
    Ids(Vec<Value>),
    /// Any response whose `result.tools` is an array (GET streams).
    Shape,
}

/// Who is looking: decides which tools are visible.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The upstream's rules.
    pub rules: Arc<Rules>,
    /// The principal.
    pub principal: Arc<Principal>,
}

impl Viewer {
    fn visible(&self, tool: &Value) -> bool {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| self.rules.tool_allowed(&self.principal, name))
    }
}

/// Filters one JSON-RPC message in place; returns (it was a targeted response, it changed).
fn filter_message(msg: &mut Value, target: &Target, viewer: &Viewer) -> (bool, bool) {
    let targeted = match target {
        Target::Ids(ids) => msg.get("id").is_some_and(|id| ids.contains(id)),
        Target::Shape => msg.get("id").is_some(),
    };
    if !targeted || msg.get("method").is_some() {
        return (false, false);
    }
    let Some(tools) = msg
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return (matches!(target, Target::Ids(_)), false);
    };
    let before = tools.len();
    tools.retain(|t| viewer.visible(t));
    (true, tools.len() != before)
}

/// Filters a whole JSON document (one message or a batch); `Some` with new bytes when changed.
pub fn filter_json(bytes: &[u8], target: &Target, viewer: &Viewer) -> Option<Bytes> {
    let mut doc: Value = serde_json::from_slice(bytes).ok()?;
    let changed = match &mut doc {
        Value::Array(items) => {
            let mut changed = false;
            for m in items.iter_mut() {
                changed |= filter_message(m, target, viewer).1;
            }
            changed
        }
        msg => filter_message(msg, target, viewer).1,
    };
    changed.then(|| Bytes::from(doc.to_string()))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Filters one complete SSE event. Returns how many targeted responses it answered and the new
/// event bytes when it changed.
fn filter_event(event: &[u8], target: &Target, viewer: &Viewer) -> (usize, Option<Bytes>) {
    let worth_parsing = match target {
        Target::Ids(_) => contains(event, b"\"result\"") || contains(event, b"\"error\""),
        Target::Shape => contains(event, b"\"tools\"") && contains(event, b"\"result\""),
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
            let (a, ch) = filter_message(m, target, viewer);
            (n + usize::from(a), c || ch)
        }),
        msg => {
            let (a, ch) = filter_message(msg, target, viewer);
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

/// A JSON answer, read whole and filtered at its end.
pub struct JsonFilterBody {
    inner: ProxyBody,
    buf: BytesMut,
    target: Target,
    viewer: Viewer,
    finished: bool,
}

impl std::fmt::Debug for JsonFilterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonFilterBody")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl JsonFilterBody {
    /// Wraps `inner`.
    pub fn new(inner: ProxyBody, target: Target, viewer: Viewer) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            target,
            viewer,
            finished: false,
        }
    }
}

impl Body for JsonFilterBody {
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
                        if this.buf.len() + data.len() > MAX_FILTERED_BYTES {
                            this.finished = true;
                            return Poll::Ready(Some(Err(
                                "tools/list answer too large to filter".into()
                            )));
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
                        filter_json(&original, &this.target, &this.viewer).unwrap_or(original);
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

/// An SSE answer, filtered event by event.
pub struct SseFilterBody {
    inner: ProxyBody,
    splitter: EventSplitter,
    /// Bytes of the current, incomplete event.
    pending: BytesMut,
    target: Target,
    viewer: Viewer,
    /// `tools/list` answers still expected (`Target::Ids`).
    outstanding: usize,
    /// Every targeted answer has passed: forward the rest untouched.
    passthrough: bool,
}

impl std::fmt::Debug for SseFilterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseFilterBody")
            .field("pending", &self.pending.len())
            .field("passthrough", &self.passthrough)
            .finish_non_exhaustive()
    }
}

impl SseFilterBody {
    /// Wraps `inner`.
    pub fn new(inner: ProxyBody, target: Target, viewer: Viewer) -> Self {
        let outstanding = match &target {
            Target::Ids(ids) => ids.len(),
            Target::Shape => usize::MAX,
        };
        Self {
            inner,
            splitter: EventSplitter::default(),
            pending: BytesMut::new(),
            target,
            viewer,
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
            let (answered, rewritten) = filter_event(&event, &self.target, &self.viewer);
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
            if self.pending.len() + rest.len() > MAX_FILTERED_BYTES {
                return Err("SSE event too large to filter".into());
            }
            self.pending.extend_from_slice(rest);
        }
        Ok(out.freeze())
    }
}

impl Body for SseFilterBody {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::Source;
    use crate::config::RuleConfig;
    use http_body_util::{BodyExt, StreamBody};
    use serde_json::json;

    fn viewer() -> Viewer {
        Viewer {
            rules: Arc::new(
                Rules::new(&[RuleConfig {
                    scopes: vec!["s".into()],
                    methods: vec![],
                    tools: vec!["echo".into(), "crawl_*".into()],
                }])
                .unwrap(),
            ),
            principal: Arc::new(Principal {
                subject: "a".into(),
                source: Source::Jwt("i".into()),
                scopes: vec!["s".into()],
                audiences: vec![],
                audience_accepted_everywhere: true,
                claim_headers: vec![],
            }),
        }
    }

    fn list(id: Value) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
            {"name":"echo"},{"name":"add"},{"name":"crawl_web"},{"nameless":true}
        ],"nextCursor":"c"}})
    }

    fn names(v: &Value) -> Vec<&str> {
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect()
    }

    #[test]
    fn json_single_and_batch() {
        let t = Target::Ids(vec![json!(2)]);
        let out = filter_json(list(json!(2)).to_string().as_bytes(), &t, &viewer()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(names(&v), vec!["echo", "crawl_web"]);
        assert_eq!(v["result"]["nextCursor"], "c");
        assert!(filter_json(list(json!(3)).to_string().as_bytes(), &t, &viewer()).is_none());
        let batch = json!([list(json!(1)), list(json!(2))]).to_string();
        let v: Value =
            serde_json::from_slice(&filter_json(batch.as_bytes(), &t, &viewer()).unwrap()).unwrap();
        assert_eq!(
            v[0]["result"]["tools"].as_array().unwrap().len(),
            4,
            "other ids untouched"
        );
        assert_eq!(names(&v[1]), vec!["echo", "crawl_web"]);
        let all_visible = json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"}]}});
        assert!(filter_json(all_visible.to_string().as_bytes(), &t, &viewer()).is_none());
    }

    async fn run_sse(chunks: Vec<&'static str>, target: Target) -> (Vec<Bytes>, String) {
        let frames = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes())))),
        );
        let body: ProxyBody = StreamBody::new(frames).boxed_unsync();
        let mut b = SseFilterBody::new(body, target, viewer());
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            out.push(f.unwrap().into_data().unwrap());
        }
        let text = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        (out, text)
    }

    #[tokio::test]
    async fn sse_rewrites_only_the_tools_list_event() {
        let progress =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        let result = "id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"echo\"},\n";
        let result_end = "data: {\"name\":\"add\"}]}}\n\n";
        let after = ": keepalive\n\n";
        let (frames, text) = run_sse(
            vec![progress, result, result_end, after],
            Target::Ids(vec![json!(2)]),
        )
        .await;
        assert_eq!(frames[0], progress, "unrelated event passes as it came");
        assert!(text.contains("id: 7\nevent: message\ndata: {"), "{text}");
        assert!(!text.contains("\"add\""), "{text}");
        assert!(text.ends_with("]}}\n\n: keepalive\n\n"), "{text}");
        assert_eq!(
            frames.last().unwrap(),
            after,
            "passthrough after the answer"
        );
    }

    #[tokio::test]
    async fn sse_get_streams_filter_by_shape_and_pass_other_events() {
        let legacy = "event: endpoint\ndata: /messages?sessionId=1\n\n";
        let answer = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"add\"},{\"name\":\"crawl_x\"}]}}\r\n\r\n";
        let (frames, text) = run_sse(vec![legacy, answer], Target::Shape).await;
        assert_eq!(frames[0], legacy);
        assert!(
            text.contains("crawl_x") && !text.contains("\"add\""),
            "{text}"
        );
    }
}
