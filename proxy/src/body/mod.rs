//! HTTP body types and wrappers used on the sidecar's streaming forward path.
//!
//! Everything the proxy returns is a [`ProxyBody`]: a boxed body of [`Bytes`] frames whose error type is
//! a boxed error, so wrappers with different error types (upstream I/O errors, idle timeouts) can be
//! stacked and still end up in one response type.
//!
//! - [`read_prefix`]: read a request body up to a limit (to classify the JSON-RPC message) without
//!   reading past the frame that crosses it.
//! - [`ReadTimeoutBody`]: the request body read timeout (idle and minimum rate), 408 on expiry.
//! - [`rewrite`]: JSON-RPC responses rewritten as they pass (the `tools/list` filter, the Tasks
//!   facade's additions).
//! - [`SseBody`]: passthrough for `text/event-stream` responses with keepalive comments and an idle timeout.
//! - [`EndpointRewrite`] / [`EndpointRewriteBody`]: rewrite the legacy HTTP+SSE `endpoint` event so the
//!   client posts to the sidecar's mount path instead of the backend's.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

mod endpoint;
mod prefixed;
mod read_timeout;
pub mod rewrite;
mod sse;
#[cfg(test)]
mod test_util;

pub use endpoint::{EndpointRewrite, EndpointRewriteBody};
pub use prefixed::read_prefix;
pub use read_timeout::{
    BodyReadLimits, BodyReadRule, BodyReadTimeout, ReadTimeoutBody, body_read_timeout,
};
pub use sse::SseBody;

/// Error type of every body the proxy hands to hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy returns everywhere.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in a single frame; for small fixed bodies (errors, metadata documents).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    // `Full` cannot fail; the map only changes the (uninhabited) error type to the common one.
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no data (202 Accepted, 204, HEAD responses).
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Error yielded when a streaming body saw no upstream frame for `idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream stream idle for {0:?}")]
pub struct StreamIdleTimeout(pub Duration);

/// A request body announced as larger than the limit (`listen.max_body_bytes`): a server leg
/// refuses a chunk size past it before its data arrives. Found by [`body_too_large`] wherever it
/// sits in a body error's chain, so the request path answers 413 without knowing the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body exceeds the {limit}-byte limit (listen.max_body_bytes)")]
pub struct BodyTooLarge {
    /// The limit.
    pub limit: u64,
}

/// The [`BodyTooLarge`] in `err` or its sources, if a body read failed by one.
pub fn body_too_large(err: &(dyn std::error::Error + 'static)) -> Option<BodyTooLarge> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref().copied())
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[tokio::test]
    async fn full_yields_its_bytes_and_reports_exact_size() {
        let body = full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, Bytes::from_static(b"hello"));
    }

    #[tokio::test]
    async fn empty_is_end_stream_and_yields_nothing() {
        let body = empty();
        assert!(body.is_end_stream());
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }

    #[test]
    fn idle_timeout_message_names_the_duration() {
        let err = StreamIdleTimeout(Duration::from_secs(3));
        assert_eq!(err.to_string(), "upstream stream idle for 3s");
    }
}
