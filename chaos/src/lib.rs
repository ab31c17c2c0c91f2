//! `mcp-chaos`: breaks things between the sidecar and its backends on purpose and checks the
//! sidecar's promises (a failing backend gives fast, clear errors; traffic recovers by itself; no
//! accepted job is lost), in this project's CI and in users' CI against their own configs.
//!
//! - [`rng`]: seeded fault decisions (the same seed replays the same decisions).
//! - `tcp`: the TCP fault proxy, with Toxiproxy's toxics and names.
//! - `http`: per-request HTTP/MCP faults.
//! - `control`: what the two proxies' control APIs share (server loop, bounded body, errors).
//! - `scenario`: scenario files (system, traffic, steady state, fault timeline, assertions).
//! - `run`: the scenario runner (`mcp-chaos run`): the system under test, traffic, the fault
//!   timeline, the verdicts and the reports (summary, JSON, JUnit).
//!
//! Layers (imports point down): `cli` → `run` → `scenario` → `http`, `tcp` → `control`, `rng`.

pub mod cli;
mod control;
pub mod http;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod tcp;
