//! `mcp-chaos proxy`: the TCP fault proxy alone, with its control API, until Ctrl-C.

use std::process::ExitCode;

use clap::Args;

use super::api::Registry;

/// `mcp-chaos proxy --listen-api ADDR [--proxy NAME=LISTEN=UPSTREAM]... [--seed N]`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where the Toxiproxy-shaped control API listens (Toxiproxy's default port).
    #[arg(long, default_value = "127.0.0.1:8474")]
    listen_api: String,
    /// A proxy to create at start: NAME=LISTEN=UPSTREAM (e.g. backend=127.0.0.1:9001=127.0.0.1:9000).
    #[arg(long = "proxy", value_name = "NAME=LISTEN=UPSTREAM", value_parser = parse_proxy)]
    proxies: Vec<(String, String, String)>,
    /// Seed of the toxicity draws and jitter (printed at start; default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_proxy(s: &str) -> Result<(String, String, String), String> {
    let mut parts = s.splitn(3, '=');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(l), Some(u)) if !n.is_empty() && !l.is_empty() && !u.is_empty() => {
            Ok((n.to_owned(), l.to_owned(), u.to_owned()))
        }
        _ => Err(format!("`{s}`: expected NAME=LISTEN=UPSTREAM")),
    }
}

/// Runs the proxy; exit code 1 when it cannot start.
pub fn run(args: ProxyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-chaos proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-chaos proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ProxyArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(crate::rng::clock_seed);
    let registry = Registry::new(seed);
    for (name, listen, upstream) in &args.proxies {
        let p = registry
            .create(name, listen, upstream, true)
            .await
            .map_err(|e| anyhow::anyhow!("--proxy {name}: {e}"))?;
        println!("proxy {name}: {} -> {upstream}", p.local_addr().await);
    }
    let api = tokio::net::TcpListener::bind(&args.listen_api)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-api {}: {e}", args.listen_api))?;
    println!(
        "mcp-chaos proxy: control API on http://{}, seed {seed}",
        api.local_addr()?
    );
    tokio::select! {
        () = registry.serve(api) => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
