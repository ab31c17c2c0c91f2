//! `mcp-load`: an MCP-aware load generator. It speaks MCP (sessions, JSON and SSE answers,
//! JSON-RPC errors and tool errors counted as failures), measures without coordinated omission
//! (open-loop latency from each request's intended start), keeps HdrHistograms per interval,
//! writes a JSON report that merges exactly across machines, and gates CI with thresholds.
//!
//! It reuses the sidecar library (`mcp-sidecar`) for everything HTTP and MCP: the pooled HTTP/1.1
//! client leg with its TLS setup, and the SSE event scanner.
//!
//! Layers (imports point down): `cli` → `engine` → `client`, `workload` → `report`, `threshold`.

pub mod cli;
pub mod client;
pub mod engine;
pub mod html;
pub mod legacy;
pub mod report;
pub mod streams;
pub mod threshold;
pub mod workload;
