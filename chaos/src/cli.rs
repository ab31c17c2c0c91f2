//! The command line. Exit codes: 0 all well; 1 an assertion (or the steady state) failed, or a
//! run could not be made; 2 bad usage or a bad scenario file; 130 interrupted (Ctrl-C).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fault injection for MCP over HTTP, and checks of the sidecar's promises.
#[derive(Debug, Parser)]
#[command(name = "mcp-chaos", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit (more subcommands come with the fault proxy and the runner).
    Version,
    /// Run the TCP fault proxy with its Toxiproxy-shaped control API until Ctrl-C.
    Proxy(crate::tcp::cli::ProxyArgs),
    /// Run the HTTP/MCP fault proxy alone, with the faults of a file.
    HttpProxy(crate::http::command::HttpProxyArgs),
    /// Run scenarios: start (or target) the system, check the steady state, inject the faults on
    /// their timeline under traffic, and judge the assertions (exit 1 naming each that failed).
    Run(RunArgs),
    /// Parse scenario files and print a one-line summary of each (exit 2 naming a bad file's
    /// problem: its line and key).
    Check {
        /// The scenario files.
        #[arg(required = true)]
        scenarios: Vec<std::path::PathBuf>,
    },
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Version => {
            println!("mcp-chaos {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Proxy(args) => crate::tcp::cli::run(args),
        Command::HttpProxy(args) => crate::http::command::run(args),
        Command::Check { scenarios } => check(&scenarios),
        Command::Run(args) => run(args),
    }
}

/// `mcp-chaos run` arguments.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario files, run one after the other.
    #[arg(required = true)]
    scenarios: Vec<std::path::PathBuf>,
    /// Write JUnit XML here (a test suite per scenario, a test case per assertion).
    #[arg(long)]
    junit: Option<std::path::PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// The mcp-sidecar binary for managed scenarios (default: beside mcp-chaos, else on PATH).
    #[arg(long)]
    sidecar: Option<std::path::PathBuf>,
    /// Seed every fault decision with this, overriding the scenarios' seeds.
    #[arg(long)]
    seed: Option<u64>,
}

/// `mcp-chaos run`: every file is checked before anything runs.
fn run(args: RunArgs) -> ExitCode {
    let mut scenarios = Vec::new();
    for path in &args.scenarios {
        match crate::scenario::Scenario::from_file(path) {
            Ok(s) => scenarios.push((path.clone(), s)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let needs_sidecar = scenarios.iter().any(|(_, s)| s.system.is_managed());
    let sidecar_bin = if needs_sidecar {
        match crate::run::find_binary(args.sidecar.as_deref()) {
            Ok(bin) => bin,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        args.sidecar.clone().unwrap_or_default()
    };
    let options = crate::run::Options {
        sidecar_bin,
        seed: args.seed,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        let on_ctrl_c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: removing the faults and stopping the sidecar");
                on_ctrl_c.cancel();
            }
        });
        let mut reports = Vec::new();
        for (path, scenario) in &scenarios {
            if cancel.is_cancelled() {
                break;
            }
            eprintln!("running {}", scenario.summary());
            let report = crate::run::run(scenario, path, &options, &cancel).await;
            print!("{}", crate::run::report::summary(&report));
            reports.push(report);
        }
        let suite = crate::run::report::SuiteReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            passed: reports.iter().all(|r| r.passed) && reports.len() == scenarios.len(),
            scenarios: reports,
        };
        let mut code = if suite.passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
        if let Some(path) = &args.out {
            let written = serde_json::to_string_pretty(&suite)
                .map_err(|e| e.to_string())
                .and_then(|json| std::fs::write(path, json + "\n").map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!("error: --out {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
        if let Some(path) = &args.junit
            && let Err(e) = std::fs::write(path, crate::run::report::junit(&suite))
        {
            eprintln!("error: --junit {}: {e}", path.display());
            code = ExitCode::FAILURE;
        }
        let failed: Vec<&str> = suite
            .scenarios
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.name.as_str())
            .collect();
        if cancel.is_cancelled() {
            eprintln!("interrupted");
            return ExitCode::from(130);
        }
        if failed.is_empty() {
            eprintln!("all {} scenario(s) passed", suite.scenarios.len());
        } else {
            eprintln!("FAILED: {}", failed.join(", "));
        }
        code
    })
}

/// `mcp-chaos check`: every file is checked (all problems shown, not just the first file's).
fn check(paths: &[std::path::PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in paths {
        match crate::scenario::Scenario::from_file(path) {
            Ok(s) => println!("ok {}: {}", path.display(), s.summary()),
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
