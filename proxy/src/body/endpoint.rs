//! Rewriting the legacy HTTP+SSE `endpoint` event.
//!
//! In the 2024-11-05 transport the client opens `GET /sse` and the server's first event, `endpoint`,
//! tells it where to POST messages (`/messages?sessionId=...`). When the sidecar mounts a backend under
//! another path prefix, that URL must be mapped into the sidecar's URL space, or the client posts past
//! the sidecar (or to a path that does not exist).
//!
//! [`EndpointRewriteBody`] parses the stream only until the endpoint event has gone by; after that it
//! forwards frames untouched, so long-lived legacy streams pay nothing for the rewrite.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use url::Url;

use super::BoxError;
use crate::mcp::sse::{EventKind, EventSplitter, classify};

/// Most bytes of one incomplete event held back while looking for the endpoint event. A backend that
/// sends a larger event first is not a legacy MCP server behaving normally; stop interfering with it.
const MAX_HELD: usize = 64 * 1024;

/// Maps endpoint URLs sent by the backend into the sidecar's URL space.
#[derive(Debug, Clone)]
pub struct EndpointRewrite {
    request_url: Url,
    /// Normalised to `""` (the root) or `/seg/seg` without a trailing slash.
    upstream_prefix: String,
    /// Same normalisation as `upstream_prefix`.
    mount_prefix: String,
}

impl EndpointRewrite {
    /// `request_url`: the upstream URL the SSE GET was sent to (to resolve relative endpoint URLs).
    /// `upstream_prefix`: path prefix of the upstream mount (e.g. "/" or "/backend"); `mount_prefix`: the
    /// sidecar's mount path (e.g. "/legacy").
    pub fn new(request_url: Url, upstream_prefix: &str, mount_prefix: &str) -> Self {
        Self {
            request_url,
            upstream_prefix: normalize_prefix(upstream_prefix),
            mount_prefix: normalize_prefix(mount_prefix),
        }
    }

    /// Maps an endpoint value as the backend sent it to the value the client must see, or `None` if it
    /// points outside the upstream mount (another origin, or a path outside `upstream_prefix`).
    ///
    /// The result is an absolute-path reference (no scheme or host) so the client resolves it against
    /// the sidecar. The query is kept; a fragment is dropped (it is never sent with a POST anyway).
    pub fn rewrite(&self, endpoint: &str) -> Option<String> {
        let resolved = self.request_url.join(endpoint).ok()?;
        if resolved.origin() != self.request_url.origin() {
            return None;
        }
        let path = resolved.path();
        let remainder = if self.upstream_prefix.is_empty() {
            path
        } else {
            let rest = path.strip_prefix(self.upstream_prefix.as_str())?;
            // Whole segments only: "/backend" must not match "/backend2/messages".
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        let query = resolved.query();
        let mut out = String::with_capacity(
            self.mount_prefix.len() + remainder.len() + query.map_or(0, |q| q.len() + 1) + 1,
        );
        out.push_str(&self.mount_prefix);
        match remainder.strip_prefix('/') {
            Some(rest) => {
                out.push('/');
                out.push_str(rest);
            }
            None if out.is_empty() => out.push('/'),
            None => {}
        }
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        Some(out)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

pin_project! {
    /// Rewrites the first `endpoint` event of a legacy SSE stream; everything else passes through.
    #[derive(Debug)]
    pub struct EndpointRewriteBody<B> {
        #[pin]
        inner: B,
        // `Some` while still looking for the endpoint event; dropped afterwards to free the buffer.
        scan: Option<Box<Scan>>,
        // Trailers that arrived while bytes were held: sent right after those bytes are flushed.
        stashed: Option<Frame<Bytes>>,
        inner_done: bool,
    }
}

impl<B> EndpointRewriteBody<B> {
    /// Wraps the body of a legacy SSE GET response.
    pub fn new(inner: B, rewrite: EndpointRewrite) -> Self {
        let scan = Scan {
            rewrite,
            splitter: EventSplitter::default(),
            held: BytesMut::new(),
            at_stream_start: true,
        };
        Self {
            inner,
            scan: Some(Box::new(scan)),
            stashed: None,
            inner_done: false,
        }
    }
}

impl<B> Body for EndpointRewriteBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(frame) = this.stashed.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if *this.inner_done {
                return Poll::Ready(None);
            }
            let Some(scan) = this.scan.as_mut() else {
                // Passthrough: frames are handed on as they are.
                let polled = ready!(this.inner.as_mut().poll_frame(cx));
                *this.inner_done = polled.is_none();
                return Poll::Ready(polled.map(|frame| frame.map_err(Into::into)));
            };
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let (out, finished) = scan.on_data(&data);
                        if finished {
                            *this.scan = None;
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        // Everything is held until the event completes: wait for more frames.
                    }
                    Err(trailers) => {
                        let held = scan.held.split().freeze();
                        *this.scan = None;
                        if held.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        *this.stashed = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                None => {
                    *this.inner_done = true;
                    let held = scan.held.split().freeze();
                    *this.scan = None;
                    if !held.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stashed.is_none()
            && self.scan.as_ref().is_none_or(|scan| scan.held.is_empty())
            && (self.inner_done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.inner_done {
            SizeHint::with_exact(0)
        } else if self.scan.is_some() {
            // The rewrite may change the length by an unknown amount.
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// State while looking for the endpoint event.
#[derive(Debug)]
struct Scan {
    rewrite: EndpointRewrite,
    splitter: EventSplitter,
    /// Bytes of the current incomplete event (everything before it has been forwarded).
    held: BytesMut,
    /// No event has been forwarded yet, so `held` starts at the first byte of the stream.
    at_stream_start: bool,
}

impl Scan {
    /// Takes the next data frame; returns the bytes to forward now and whether scanning is finished
    /// (endpoint event handled or given up), after which the caller passes frames through.
    fn on_data(&mut self, data: &[u8]) -> (Bytes, bool) {
        // Bytes already held were scanned on earlier calls; the splitter carries their state.
        let mut pos = self.held.len();
        self.held.extend_from_slice(data);
        let mut event_start = 0;
        while let Some(len) = self.splitter.find_event_end(&self.held[pos..]) {
            let end = pos + len;
            match classify(&self.held[event_start..end], self.at_stream_start) {
                EventKind::Ignored => {
                    self.at_stream_start = false;
                    event_start = end;
                    pos = end;
                }
                // A legacy server's first event is `endpoint`; a stream whose first real event is
                // something else is not legacy (e.g. a Streamable HTTP GET stream): stop scanning.
                EventKind::Other => return (self.held.split().freeze(), true),
                EventKind::Endpoint(value) => {
                    let value = event_start + value.start..event_start + value.end;
                    return (self.rewrite_value(value), true);
                }
                EventKind::UnsupportedEndpoint => {
                    tracing::warn!(
                        request_url = %self.rewrite.request_url,
                        "legacy SSE endpoint event has several data lines; forwarding it unchanged"
                    );
                    return (self.held.split().freeze(), true);
                }
            }
        }
        if self.held.len() - event_start > MAX_HELD {
            tracing::warn!(
                request_url = %self.rewrite.request_url,
                limit = MAX_HELD,
                "no legacy SSE endpoint event within the size limit; forwarding the stream unchanged"
            );
            return (self.held.split().freeze(), true);
        }
        // Complete events before the endpoint event go out as they are; only the incomplete one waits.
        (self.held.split_to(event_start).freeze(), false)
    }

    /// Forwards all held bytes with the endpoint value at `value` replaced by its rewritten form.
    fn rewrite_value(&mut self, value: std::ops::Range<usize>) -> Bytes {
        let held = self.held.split().freeze();
        // `classify` only reports UTF-8 values, so the fallback to "" is unreachable in practice.
        let original = std::str::from_utf8(&held[value.clone()]).unwrap_or_default();
        let Some(rewritten) = self.rewrite.rewrite(original) else {
            tracing::warn!(
                endpoint = original,
                request_url = %self.rewrite.request_url,
                "legacy SSE endpoint is outside the upstream mount; forwarding it unchanged"
            );
            return held;
        };
        tracing::debug!(from = original, to = %rewritten, "rewrote legacy SSE endpoint");
        let mut out = BytesMut::with_capacity(held.len() - value.len() + rewritten.len());
        out.extend_from_slice(&held[..value.start]);
        out.extend_from_slice(rewritten.as_bytes());
        out.extend_from_slice(&held[value.end..]);
        out.freeze()
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
