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
    }
}
