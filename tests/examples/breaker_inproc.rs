//! The sidecar's own processing time for an open-circuit answer, without sockets: `Proxy::serve`
//! called directly, back to back, on one thread. It complements `breaker_load` (what a client sees
//! on loopback, wake-ups and network stack included) by showing how much of that is the sidecar's
//! work. No tracing subscriber is installed, so the access-log line is not formatted.
//!
//! ```text
//! breaker_inproc        BENCH_ITERATIONS=200000 per case
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::conn_info::ConnInfo;
use mcp_sidecar::forward::Proxy;
use mcp_sidecar::metrics::Metrics;
use mcp_sidecar::resilience::Resilience;
use mcp_sidecar::upstream::{Router, Upstream};

const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

fn main() -> Result<()> {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("BENCH_ITERATIONS")?
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let metrics = Metrics::new()?;
        // Never contacted: its circuit is held open.
        let config = UpstreamConfig::new("open", "http://127.0.0.1:9/mcp", None);
        let upstreams = vec![Arc::new(Upstream::from_config(&config, &metrics)?)];
        let resilience = Arc::new(Resilience::new(&upstreams, &metrics)?);
        resilience
            .force("open", true)
            .context("breaker `open` exists")?;
        let proxy = Proxy::new(Router::new(upstreams), metrics, 4 << 20).with_resilience(resilience);
        let conn = ConnInfo::new(SocketAddr::from(([127, 0, 0, 1], 40000)), false);
        println!(
            "in-process Proxy::serve, {iterations} calls per case, one thread, no sockets, no log output (µs)"
        );
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "case", "p50", "p90", "p99", "p99.9", "mean"
        );
        for (name, path, status) in [
            ("baseline: 404 no route", "/nope", 404),
            ("open circuit: 503", "/mcp", 503),
        ] {
            let mut latencies = Vec::with_capacity(iterations);
            for i in 0..iterations + iterations / 10 {
                let req = http::Request::post(path)
                    .header(http::header::HOST, "127.0.0.1:8080")
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::ACCEPT, "application/json, text/event-stream")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
                let started = Instant::now();
                let resp = proxy.serve(req, conn.clone()).await;
                let got = resp.status().as_u16();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let took = started.elapsed();
                anyhow::ensure!(got == status, "{name}: status {got}, expected {status}");
                // The first tenth warms caches and allocators up.
                if i >= iterations / 10 {
                    latencies.push(took);
                }
            }
            latencies.sort_unstable();
            let p = |q: f64| {
                let rank = ((q / 100.0) * latencies.len() as f64).ceil() as usize;
                micros(latencies[rank.clamp(1, latencies.len()) - 1])
            };
            let mean = micros(latencies.iter().sum::<Duration>()) / latencies.len() as f64;
            println!(
                "{:<28} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                name,
                p(50.0),
                p(90.0),
                p(99.0),
                p(99.9),
                mean
            );
        }
        Ok(())
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
