//! Upstreams: where each backend is mounted on the sidecar, how a client path maps to the
//! backend's path, and the pooled HTTP client that reaches it.

mod client;
mod route;

pub use client::{UpstreamClient, build_client};
pub use route::{Router, Upstream, has_dot_segment};
