//! The `mcp-sidecar` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;
use mcp_sidecar::Sidecar;
use mcp_sidecar::cli::{Cli, Command, Signals, init_logging};
use mcp_sidecar::config::Config;

mod probe;

/// mimalloc instead of glibc's malloc: the request path allocates a dozen small blocks per
/// request (header maps, the classified message, buffers), and glibc's malloc and free were a
/// visible share of the instructions per request (BENCHMARKS.md, "Figures behind code
/// decisions"). mimalloc's per-thread free lists make each allocation much cheaper; it is what
/// many Rust proxies ship with for the same reason.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `demo` says in a build without it (the default: the demo links the mock MCP server,
/// which has no place in the proxy that is deployed).
#[cfg(not(feature = "demo"))]
const NO_DEMO: &str = "this build has no demo (the `demo` feature is off, as it is by default); \
    build it in: cargo run --release -p mcp-sidecar --features demo -- demo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Check { config } = &cli.command {
        return match Config::load(config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} upstream(s))",
                    config.display(),
                    c.upstream.len()
                );
                ExitCode::SUCCESS
            }
            // A placed error names the file in its `-->` line already.
            Err(e) if e.location().is_some() => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        };
    }
    // Before logging: a health check prints only its outcome.
    if let Command::Probe(args) = &cli.command {
        return probe::run(args);
    }
    // A usage error, as clap's own (exit code 2): the command exists, this build lacks it.
    #[cfg(not(feature = "demo"))]
    if let Command::Demo(_) = &cli.command {
        eprintln!("mcp-sidecar: {NO_DEMO}");
        return ExitCode::from(2);
    }
    let log = init_logging(cli.log_format, cli.log_flush_interval);
    let worker_threads = match &cli.command {
        Command::Run(args) => args.worker_threads,
        _ => None,
    };
    // One worker asked for: a current-thread runtime, where every task (accept loop, client
    // connections, upstream connections) runs on one thread with no cross-thread hand-off: the
    // same shape as a single-threaded event loop (HAProxy `nbthread 1`, nginx one worker), and
    // cheaper per wake-up than a multi-thread scheduler with one worker, which still parks and
    // unparks through a condvar and keeps the main thread apart from the worker.
    let mut runtime = match worker_threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            log.flush();
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                // First: from here on SIGHUP is logged, not fatal, and a SIGTERM during start-up
                // is kept for when serving begins.
                let mut signals = Signals::install();
                let config = args.config()?;
                // Before binding: the listeners and pools live under the raised limit.
                mcp_sidecar::fd_budget::apply(&config);
                let sidecar = Sidecar::bind_with(config, args.source()).await?;
                signals.reload_with(sidecar.reloader());
                tracing::info!(
                    listen = %sidecar.local_addr()?,
                    admin = %sidecar.admin_addr()?,
                    "mcp-sidecar listening"
                );
                // Whoever waits for this line (a supervisor, a test) gets it now, not a flush
                // interval later.
                log.flush();
                let (shutdown, hurry) = signals.into_futures();
                sidecar.serve_with(shutdown, hurry).await;
                Ok(())
            }
            #[cfg(feature = "demo")]
            Command::Demo(args) => {
                mcp_sidecar::demo::run(args, mcp_sidecar::cli::shutdown_signal()).await
            }
            #[cfg(not(feature = "demo"))]
            Command::Demo(_) => Err(anyhow::anyhow!(NO_DEMO)),
            Command::Check { .. } | Command::Probe(_) => Ok(()),
        }
    });
    // Background tasks may still log while the runtime winds down; stop it first, then write
    // out the last batch of lines.
    drop(runtime);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mcp-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    };
    log.flush();
    code
}
