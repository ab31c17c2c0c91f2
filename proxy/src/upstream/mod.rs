//! Upstreams: where each backend is mounted on the sidecar, how a client path maps to the
//! backend's path, and the pooled HTTP client that reaches it.

mod client;
pub mod h1;
pub mod path;
mod pool;
mod route;

pub use client::{UpstreamClient, build_client, tls_config};
pub use path::{PathRefusal, check_path};
pub use pool::{Pool, PoolError, PooledBody, Unsent};
pub use route::{Router, Upstream};

/// A map keyed by upstream name, looked up several times on every request (auth, limits,
/// breakers). Names come from config, not from clients, so a fast hasher is safe here; SipHash
/// across those lookups was a visible share of the instructions per request (BENCHMARKS.md,
/// "Figures behind code decisions").
pub type ByName<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
