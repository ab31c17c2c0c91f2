//! mcp-sidecar: a reverse proxy deployed beside an MCP server that adds what quickly written
//! servers lack (authentication, rate limits, circuit breakers, clean SSE passthrough, metrics,
//! health, graceful shutdown) without touching the server; and the library its companion tools
//! (`chaos/`, `loadtest/`) build on.
//!
//! The modules form layers; each imports only its own layer and those below
//! (`proxy/tests/layers.rs` checks it; docs/ARCHITECTURE.md draws it), bottom first:
//! - **config and plain types**: [`config`] (the TOML file, defaults, validation), [`cidr`],
//!   [`glob`] (the `*` / `?` matcher of every allow-list), [`principal`], [`metrics`] and
//!   [`rpc_metrics`] (per JSON-RPC method and tool, bounded labels),
//!   [`local_resources`] and [`fd_budget`] (running out of descriptors is not a backend outage),
//!   [`lazy_timer`], [`tcp_keepalive`], [`log_writer`] and [`access_line`] (batched log output,
//!   the access-log line), [`rate_limited_log`];
//! - **codec and model**: [`codec`] (the HTTP/1.1 codec both legs share), [`mcp`] (the `mcp-model`
//!   crate: JSON-RPC classification, SSE scanning and encoding), [`headers`] (header hygiene);
//! - **legs and bodies**: [`downstream`] (the HTTP/1 server leg, generic over a
//!   [`downstream::Handler`]), [`upstream`] (routing, the pooled HTTP/1.1 client leg), [`tls`],
//!   [`body`] (streaming wrappers, SSE), [`conn_info`], [`observe`], [`replay_io`],
//!   [`accept_errors`];
//! - **request model**: [`error`] (the one error type and its mapping to responses),
//!   [`exchange`] (the seam: what a phase sees and returns);
//! - **policies**: [`auth`], [`limits`], [`resilience`], [`cors`], [`flood_logs`], [`jobs`],
//!   [`redis_conn`] (the one Redis connection of the features shared between replicas);
//! - **request path**: [`forward`] (the phase order, written once; the detachable tail);
//! - **server**: [`server`] (listeners, TLS, lifecycle, graceful shutdown), [`admin`],
//!   [`health`]; then [`cli`] and the binary.

/// Awaits a future where it is built, without a second copy of it in the caller's state.
///
/// `fut.await` keeps the future twice in the enclosing `async fn`'s state machine (the temporary
/// and the awaited value are both live across the suspension; rust-lang/rust#62958), so on the
/// request path each level of `async fn` nesting doubled the size of everything below it: the
/// future hyper stores and moves for every request had grown large, and copying it was a visible
/// share of the sidecar's instructions per request (BENCHMARKS.md, "Figures behind code
/// decisions"). Pinning the future in place stores it once; the block ends its lifetime at once, so
/// it does not stay live (and keep its space) across the later awaits of the caller.
macro_rules! await_in_place {
    ($fut:expr) => {{
        let out = ::std::pin::pin!($fut).await;
        out
    }};
}

pub mod accept_errors;
pub mod access_line;
pub mod admin;
pub mod auth;
pub mod body;
pub mod build_info;
pub mod cidr;
pub mod cli;
pub mod codec;
pub mod config;
pub mod conn_info;
pub mod cors;
#[cfg(feature = "demo")]
pub mod demo;
pub mod downstream;
pub mod error;
pub mod exchange;
pub mod fd_budget;
pub mod flood_logs;
pub mod forward;
pub mod glob;
pub mod headers;
pub mod health;
pub mod job_api;
pub mod jobs;
pub mod lazy_timer;
pub mod limits;
pub mod local_resources;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod principal;
pub mod rate_limited_log;
pub mod redis_conn;
pub mod reload;
pub mod replay_io;
pub mod resilience;
pub mod rpc_metrics;
pub mod server;
pub mod tasks;
pub mod tcp_keepalive;
pub mod tls;
pub mod trace;
pub mod upstream;

/// The MCP model (JSON-RPC classification, SSE scanning and encoding): the `mcp-model` crate,
/// shared with the mock server, the chaos proxy and the load generator.
pub use mcp_model as mcp;

pub use config::Config;
pub use error::StartError;
pub use server::Sidecar;
