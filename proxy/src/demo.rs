//! `mcp-sidecar demo`: a fixture MCP server in-process with the sidecar in front of it.
//!
//! Two mounts show the two transports: `/mcp` (Streamable HTTP, same path as the backend) and
//! `/legacy` (the legacy HTTP+SSE transport under a different prefix, so the `endpoint` event is
//! rewritten).

use std::future::Future;

use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};

use crate::Sidecar;
use crate::cli::DemoArgs;
use crate::config::{AdminConfig, Config, ListenConfig, ShutdownConfig, UpstreamConfig};

/// Runs the demo until `shutdown` resolves.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let fixture = FixtureServer::start(FixtureConfig {
        response_mode: if args.sse {
            ResponseMode::Sse
        } else {
            ResponseMode::Json
        },
        ..FixtureConfig::default()
    })
    .await?;
    let backend = format!("http://{}", fixture.addr());
    let demo_auth = if args.auth {
        Some(crate::auth::demo::DemoAuth::new(&args.listen)?)
    } else {
        None
    };
    let listen_arg = args.listen.clone();
    let mut config = Config {
        listen: ListenConfig {
            addr: args.listen,
            ..ListenConfig::default()
        },
        admin: AdminConfig {
            addr: args.admin,
            ..AdminConfig::default()
        },
        // No drain delay: nothing balances load onto the demo; Ctrl-C ends it at once.
        shutdown: ShutdownConfig {
            drain_delay: std::time::Duration::ZERO,
            ..ShutdownConfig::default()
        },
        upstream: vec![
            UpstreamConfig::new("demo", fixture.mcp_url(), Some("/mcp".to_owned())),
            UpstreamConfig::new(
                "demo-legacy",
                format!("{backend}/"),
                Some("/legacy".to_owned()),
            ),
        ],
        limits: crate::config::LimitsConfig::default(),
        rate_limit: Vec::new(),
        auth: crate::config::AuthConfig::default(),
        cors: crate::config::CorsConfig::default(),
        // Durable, in the default data directory: the demo's jobs survive a restart too.
        jobs: crate::config::JobsConfig::default(),
        redis: None,
        tracing: crate::config::TracingConfig::default(),
    };
    if let Some(demo_auth) = &demo_auth {
        config.auth = demo_auth.config.clone();
        config.upstream[0].auth.rules = demo_auth.rules.clone();
        config.upstream[1].auth.public = true;
    }
    let sidecar = Sidecar::bind(config).await?;
    let listen = sidecar.local_addr()?;
    let admin = sidecar.admin_addr()?;
    println!(
        "{}",
        instructions(&backend, &listen.to_string(), &admin.to_string())
    );
    if let Some(demo_auth) = &demo_auth {
        println!("{}", demo_auth.instructions(&listen_arg));
    }
    sidecar.serve(shutdown).await;
    fixture.shutdown().await;
    Ok(())
}

fn instructions(backend: &str, listen: &str, admin: &str) -> String {
    let headers =
        "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'";
    format!(
        r#"
mcp-sidecar demo
  fixture MCP server   {backend}/mcp      (legacy SSE: {backend}/sse)
  sidecar              http://{listen}/mcp  (legacy SSE: http://{listen}/legacy/sse)
  metrics              http://{admin}/metrics   readiness: http://{admin}/readyz

Try (bash):
  # initialize; the backend mints a session id that the sidecar passes through
  SID=$(curl -s -D - -o /dev/null http://{listen}/mcp {headers} \
    -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}' \
    | awk 'tolower($1)=="mcp-session-id:" {{print $2}}' | tr -d '\r')
  # call a tool
  curl -s http://{listen}/mcp {headers} -H "mcp-session-id: $SID" \
    -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}}}}}}'
  # watch progress notifications stream through, unbuffered
  curl -sN http://{listen}/mcp {headers} -H "mcp-session-id: $SID" \
    -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"progress","arguments":{{"steps":5,"interval_ms":500}},"_meta":{{"progressToken":"p1"}}}}}}'
  # run it as a job instead: 202 at once, then follow its events and fetch the result
  JOB=$(curl -s http://{listen}/mcp {headers} -H "mcp-session-id: $SID" -H 'prefer: respond-async' \
    -d '{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"progress","arguments":{{"steps":5,"interval_ms":500}}}}}}' \
    | sed 's/.*"self":"\([^"]*\)".*/\1/')
  curl -sN http://{listen}$JOB/events; curl -s http://{listen}$JOB/result
  # legacy transport: the endpoint event points back through the sidecar
  curl -sN http://{listen}/legacy/sse
  # metrics
  curl -s http://{admin}/metrics | grep ^mcp_sidecar

Ctrl-C stops the demo.

Next: put it in front of your own server,
  mcp-sidecar run --upstream http://127.0.0.1:8000/mcp        (quick start, no file)
  mcp-sidecar check --config examples/sidecar.toml           (then run --config FILE)
and see the README's "Configuration reference" and docs/OPERATIONS.md for deploying it.
"#
    )
}
