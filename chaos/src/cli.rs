//! The command line. Exit codes: 0 all well; 1 the run could not be made; 2 bad usage.

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
    }
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
