//! mcp-sidecar: a reverse proxy deployed beside an MCP server that adds what quickly written
//! servers lack (clean SSE passthrough, metrics, health, graceful shutdown; later auth, limits
//! and breakers) without touching the server.
//!
//! Where things live:
//! - [`config`]: the TOML file, defaults and validation;
//! - [`server`]: listeners, TLS, connection lifecycle and graceful shutdown; [`downstream`]:
//!   the HTTP/1 server leg (HTTP/2 is hyper's); [`tcp_keepalive`]: dead-peer detection;
//! - [`forward`]: the request path, phase by phase;
//! - [`headers`], [`body`]: header hygiene and the streaming body wrappers (SSE);
//! - [`mcp`]: the MCP model (JSON-RPC classification, SSE scanning and encoding), the
//!   `mcp-model` crate;
//! - [`upstream`]: mount paths and pooled clients; [`health`]: readiness;
//! - [`resilience`]: circuit breakers, per-tool timeouts and retries around the upstream call;
//! - [`limits`]: rate limits (governor, keyed) and overload protection (in-flight caps);
//! - [`auth`]: authentication (API keys, JWT/JWKS), per-tool authorization, Host/Origin checks;
//! - [`cors`]: the CORS policy (preflights answered here, CORS headers on answers);
//! - [`error`]: the one error type and its mapping to responses;
//! - [`local_resources`], [`fd_budget`]: running out of descriptors is not a backend outage;
//!   the descriptor limit raised and checked against the caps at start;
//! - [`metrics`], [`observe`], [`admin`]: Prometheus, access logs, admin endpoints;
//! - [`log_writer`], [`access_line`]: batched log output to stderr, the access-log line;
//!   [`rate_limited_log`]: one line per interval for failures that come in floods.

/// Awaits a future where it is built, without a second copy of it in the caller's state.
///
/// `fut.await` keeps the future twice in the enclosing `async fn`'s state machine (the temporary
/// and the awaited value are both live across the suspension; rust-lang/rust#62958), so on the
/// request path each level of `async fn` nesting doubled the size of everything below it: the
/// future hyper stores and moves for every request had grown to 23 KiB, and copying it cost
/// about a tenth of the sidecar's user-space instructions per request. Pinning the future in
/// place stores it once; the block ends its lifetime at once, so it does not stay live (and keep
/// its space) across the later awaits of the caller.
macro_rules! await_in_place {
    ($fut:expr) => {{
        let out = ::std::pin::pin!($fut).await;
        out
    }};
}

pub mod access_line;
pub mod admin;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod cors;
#[cfg(feature = "demo")]
pub mod demo;
pub mod downstream;
pub mod error;
pub mod fd_budget;
pub mod flood_logs;
pub mod forward;
pub mod headers;
pub mod health;
pub mod lazy_timer;
pub mod limits;
pub mod local_resources;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod rate_limited_log;
pub mod replay_io;
pub mod resilience;
pub mod server;
pub mod tcp_keepalive;
pub mod tls;
pub mod upstream;

/// The MCP model (JSON-RPC classification, SSE scanning and encoding): the `mcp-model` crate,
/// shared with the mock server, the chaos proxy and the load generator.
pub use mcp_model as mcp;

pub use config::Config;
pub use server::{Sidecar, StartError};
