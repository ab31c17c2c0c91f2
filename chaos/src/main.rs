//! The `mcp-chaos` binary: see [`mcp_chaos::cli`].

fn main() -> std::process::ExitCode {
    mcp_chaos::cli::main()
}
