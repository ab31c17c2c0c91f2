//! `mcp-load`: an MCP-aware load generator. It speaks MCP (sessions, JSON and SSE answers,
//! JSON-RPC errors and tool errors counted as failures), measures without coordinated omission
//! (open-loop latency from each request's intended start), keeps HdrHistograms per interval,
//! writes a JSON report that merges exactly across machines, and gates CI with thresholds.
//!
//! It reuses the sidecar library (`mcp-sidecar`) for everything HTTP and MCP: the pooled HTTP/1.1
//! client leg with its TLS setup, and the SSE event scanner.
//!
//! Layers (imports point down): `cli` → `engine` → `offload`, `streams`, `legacy` → `client` →
//! `stateless`, `leg` (HTTP/1.1 or HTTP/2), and `workload` → `report` (with `report::streams`, the streams' part), `html`, `threshold`.

pub mod cli;
pub mod client;
pub mod engine;
pub mod html;
pub mod leg;
pub mod legacy;
pub mod offload;
pub mod report;
pub mod stateless;
pub mod streams;
pub mod threshold;
pub mod workload;
