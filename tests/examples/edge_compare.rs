//! Replays the attack table (`mcp_e2e_tests::attack`) through the sidecar and, when given,
//! HAProxy and nginx, each in front of its own byte-capturing backend, and prints one line per
//! row: what the table expects of the sidecar, and what each proxy answered and let through.
//! `scripts/edge-compare.sh` starts HAProxy and nginx and runs this; it is not part of CI.
//!
//! ```text
//! EDGE_HAPROXY=127.0.0.1:18081 EDGE_HAPROXY_BACKEND=127.0.0.1:18091 \
//! EDGE_NGINX=127.0.0.1:18082 EDGE_NGINX_BACKEND=127.0.0.1:18092 \
//!     cargo run -p mcp-e2e-tests --example edge_compare [-- ROW_SUBSTRING]
//! ```
//!
//! A cell reads `401 open -`: the answers' statuses, whether the connection was closed, and
//! what the backend got: `-` nothing, `B1` one request (`B2` two: a smuggled one went
//! through), `B?` bytes it could not frame as a request. The sidecar's cell ends in `ok` or
//! `FAIL` against the table's expectation. Both other proxies are configured like the sidecar
//! (see the script): `/mcp` needs `Authorization: Bearer <key>` (401 otherwise), `/public` does
//! not, bodies are limited to 4 MiB. `EDGE_SHOW_BYTES=1` also prints, under each row, the bytes
//! every backend received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use anyhow::{Context, Result};
use mcp_e2e_tests::attack::{Lane, Row, escape, rows};
use mcp_fixtures::RawBackend;

/// A proxy to compare: where it listens and the backend it forwards to.
struct Other {
    name: &'static str,
    proxy: SocketAddr,
    backend: RawBackend,
}

fn addr(var: &str) -> Result<Option<SocketAddr>> {
    std::env::var(var)
        .ok()
        .map(|v| v.parse().with_context(|| format!("{var}={v}")))
        .transpose()
}

async fn other(name: &'static str, proxy_var: &str, backend_var: &str) -> Result<Option<Other>> {
    let (Some(proxy), Some(backend)) = (addr(proxy_var)?, addr(backend_var)?) else {
        return Ok(None);
    };
    let backend = RawBackend::bind(backend)
        .await
        .with_context(|| format!("{name}'s backend on {backend}"))?;
    Ok(Some(Other {
        name,
        proxy,
        backend,
    }))
}

/// One cell: the client's view and the backend's, whether the row's expectation (the
/// sidecar's) holds, and the bytes the backend received.
async fn cell(row: &Row, proxy: SocketAddr, backend: &RawBackend) -> (String, bool, Vec<u8>) {
    backend.reset();
    if let Some(answer) = row.backend_answer {
        backend.set_answer(answer);
    }
    let outcome = row.send_to(proxy).await;
    // An intermediary that forwards after answering (or buffers the body first) gets a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let received = backend.received();
    let seen = match (received.is_empty(), backend.requests().len()) {
        (true, _) => "-".to_owned(),
        (false, 0) => "B?".to_owned(),
        (false, n) => format!("B{n}"),
    };
    let mut statuses: Vec<String> = outcome
        .answers
        .iter()
        .map(|a| a.status.to_string())
        .collect();
    if outcome.http2 {
        statuses.push("h2".into());
    }
    if statuses.is_empty() {
        statuses.push("none".into());
    }
    let close = if outcome.closed { "closed" } else { "open" };
    let holds = row.check(&outcome, &received, backend.addr()).is_empty();
    (
        format!("{} {close} {seen}", statuses.join(",")),
        holds,
        received,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let show_bytes = std::env::var_os("EDGE_SHOW_BYTES").is_some();
    let others: Vec<Other> = [
        other("haproxy", "EDGE_HAPROXY", "EDGE_HAPROXY_BACKEND").await?,
        other("nginx", "EDGE_NGINX", "EDGE_NGINX_BACKEND").await?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let lane = Lane::start().await;
    let mut header = format!("| {:<72} | {:<18} | {:<22}", "row", "expected", "sidecar");
    let mut rule = format!("|{}|{}|{}", "-".repeat(74), "-".repeat(20), "-".repeat(24));
    for o in &others {
        header.push_str(&format!(" | {:<18}", o.name));
        rule.push_str(&format!("|{}", "-".repeat(20)));
    }
    println!("{header} |\n{rule}|");
    let (mut passed, mut total) = (0, 0);
    for row in rows().into_iter().filter(|r| r.name.contains(&filter)) {
        total += 1;
        let sidecar = cell(&row, lane.sidecar.addr, &lane.backend);
        let cells =
            futures_util::future::join_all(others.iter().map(|o| cell(&row, o.proxy, &o.backend)));
        let ((sidecar, ok, sidecar_bytes), cells) = tokio::join!(sidecar, cells);
        if ok {
            passed += 1;
        }
        let name = match row.finding {
            Some(n) => format!("{} [F{n}]", row.name),
            None => row.name.to_owned(),
        };
        let mut line = format!(
            "| {:<72} | {:<18} | {:<22}",
            name,
            row.expected_summary(),
            format!("{sidecar} {}", if ok { "ok" } else { "FAIL" })
        );
        for (text, _, _) in &cells {
            line.push_str(&format!(" | {text:<18}"));
        }
        println!("{line} |");
        if show_bytes {
            let all = std::iter::once(("sidecar", &sidecar_bytes))
                .chain(others.iter().zip(&cells).map(|(o, (_, _, b))| (o.name, b)));
            for (name, bytes) in all.filter(|(_, b)| !b.is_empty()) {
                println!("    {name:<8} backend got: {}", escape(bytes));
            }
        }
    }
    println!("\nsidecar: {passed} of {total} rows as the table expects");
    Ok(())
}
