//! The `mcp-load` binary: see [`mcp_loadtest::cli`].

fn main() -> std::process::ExitCode {
    mcp_loadtest::cli::main()
}
