//! The MCP model: what the bytes of the Model Context Protocol mean, shared by every crate that
//! speaks it in this workspace.
//!
//! - JSON-RPC classification ([`classify`]): whether a POSTed body is a request, notification or
//!   response (or a batch of them), with its method, id, tool name and progress token.
//! - Server-Sent Events ([`sse`]): scanning a stream into events and reading them, and writing
//!   them, so that what one side writes the other reads back.
//!
//! Who uses it: the sidecar (`mcp-sidecar`, as `mcp_sidecar::mcp`) classifies every POST body
//! and rewrites the legacy transport's `endpoint` event; the mock server (`mcp-fixtures`) writes
//! its SSE answers with [`sse::Event`]; the chaos proxy and the load generator read and write
//! the same messages. It depends on no other crate of the workspace, and only on what parsing
//! and writing need (serde, serde_json, bytes).

mod message;
pub mod sse;

pub use message::{Classified, ClassifyError, Kind, Message, SUBSCRIPTIONS_LISTEN, classify};
