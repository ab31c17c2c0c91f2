//! The attack table of issue 14 (`mcp_e2e_tests::attack`) against the real sidecar: every row
//! sends its raw bytes on a new connection to a sidecar in front of a byte-capturing backend,
//! and both the client's answer and the exact bytes the backend received must be what the row
//! says.
//!
//! Rows run on [`LANES`] sidecars at once (each with its own backend, its rows one after
//! another) and every socket read is bounded, so the whole table takes a few seconds.
//! `ATTACK_ROW=substring` runs the matching rows only. A failure names each failing row with
//! what was expected and what happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mcp_e2e_tests::attack::{Lane, Row, rows};

/// Sidecars the rows are spread over.
const LANES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_gets_the_expected_answer_and_the_backend_only_the_expected_bytes() {
    let filter = std::env::var("ATTACK_ROW").unwrap_or_default();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| r.name.contains(&filter))
        .collect();
    assert!(!rows.is_empty(), "no row matches ATTACK_ROW={filter:?}");
    let mut lanes = Vec::new();
    for _ in 0..LANES.min(rows.len()) {
        lanes.push(Arc::new(Lane::start().await));
    }
    let tasks: Vec<_> = lanes
        .iter()
        .enumerate()
        .map(|(i, lane)| {
            let lane = lane.clone();
            let mine: Vec<Row> = rows.iter().skip(i).step_by(LANES).cloned().collect();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for row in mine {
                    let problems = lane.run(&row).await;
                    results.push((row, problems));
                }
                results
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let (_, problems) = results.iter().find(|(r, _)| r.name == row.name)?;
            if problems.is_empty() {
                return None;
            }
            let finding = row
                .finding
                .map(|n| format!(" (issue 14 finding {n})"))
                .unwrap_or_default();
            Some(format!(
                "row `{}`{finding}: expected {}\n  {}",
                row.name,
                row.expected_summary(),
                problems.join("\n  ")
            ))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}
