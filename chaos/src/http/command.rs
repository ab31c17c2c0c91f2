//! `mcp-chaos http-proxy`: the HTTP/MCP fault proxy alone, with the faults of a file and (with
//! `--listen-api`) its control API, until Ctrl-C; then each fault's decisions (matched, fired)
//! and the seed that replays them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::HttpFaultProxy;
use super::spec::FaultFile;

/// Arguments of `mcp-chaos http-proxy`.
#[derive(Debug, clap::Args)]
pub struct HttpProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// The backend (or sidecar) to forward to: http://host:port.
    #[arg(long)]
    upstream: String,
    /// Seed of the fault decisions (random when not given; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// TOML file of `[[fault]]`s (see the README's "HTTP/MCP faults").
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Where the control API listens (GET/POST /faults, DELETE /faults/{name}, POST /reset; see
    /// the README's "HTTP control API"); none when not given.
    #[arg(long, value_name = "ADDR")]
    listen_api: Option<SocketAddr>,
}

/// Runs the proxy until Ctrl-C: 0 on a clean stop, 1 when it could not start.
pub fn run(args: HttpProxyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-chaos: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: HttpProxyArgs) -> anyhow::Result<()> {
    let faults = match &args.faults {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            FaultFile::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let seed = args.seed.unwrap_or_else(crate::rng::clock_seed);
    let proxy = Arc::new(HttpFaultProxy::start(args.listen, &args.upstream, seed).await?);
    for fault in faults {
        proxy.add_fault(fault)?;
    }
    let api = match args.listen_api {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--listen-api {addr}: {e}"))?,
        ),
        None => None,
    };
    println!(
        "mcp-chaos http-proxy: {} -> {} (seed {seed}, {} fault(s)); Ctrl-C stops",
        proxy.local_addr(),
        args.upstream,
        proxy.faults().len()
    );
    match api {
        Some(api) => {
            println!(
                "mcp-chaos http-proxy: control API on http://{}",
                api.local_addr()?
            );
            tokio::select! {
                () = super::api::serve(Arc::clone(&proxy), api) => {}
                r = tokio::signal::ctrl_c() => r?,
            }
        }
        None => tokio::signal::ctrl_c().await?,
    }
    for fault in proxy.faults() {
        let counts = proxy.counts(&fault.name).unwrap_or_default();
        println!(
            "fault {}: matched {}, fired {}",
            fault.name, counts.matched, counts.fired
        );
    }
    println!("seed {seed}");
    Ok(())
}
