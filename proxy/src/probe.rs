//! `mcp-sidecar probe URL`: one plain-HTTP GET that exits 0 on a 2xx answer and 1 on anything
//! else, for container health checks (`HEALTHCHECK`, an exec probe) in images that have no curl
//! or shell, such as the distroless image of deploy/Dockerfile.
//!
//! Every failure exits 1, a bad URL included: Docker reserves a health check's exit code 2, and
//! any other non-zero code is as unhealthy as 1. The answer's status line (and, on failure, the
//! start of its body: `/readyz` names the upstream that is not ready) is printed, since Docker
//! keeps a health check's output for `docker inspect`.

use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mcp_sidecar::cli::ProbeArgs;
use tokio::net::TcpStream;

/// How much of a failed answer's body is shown: enough for `/readyz`'s report of a few
/// upstreams, little enough for a health-check log that keeps every run's output.
const MAX_SHOWN_BODY: usize = 1024;

/// Runs the probe and prints its outcome (stdout on success, stderr on failure).
pub(crate) fn run(args: &ProbeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-sidecar probe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The timer is made inside the runtime: tokio's timers need its context.
    let outcome =
        runtime.block_on(async { tokio::time::timeout(args.timeout, get(&args.url)).await });
    match outcome {
        Ok(Ok((status, _))) if status.is_success() => {
            println!("{}: {status}", args.url);
            ExitCode::SUCCESS
        }
        Ok(Ok((status, body))) => {
            eprintln!("mcp-sidecar probe: {}: {status}", args.url);
            let body = body.trim_end();
            if !body.is_empty() {
                eprintln!("{body}");
            }
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("mcp-sidecar probe: {}: {e}", args.url);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "mcp-sidecar probe: {}: no answer within {} (--timeout)",
                args.url,
                humantime::format_duration(args.timeout)
            );
            ExitCode::FAILURE
        }
    }
}

/// GETs `url` (http:// only) and returns the answer's status and the start of its body.
async fn get(url: &str) -> Result<(StatusCode, String), String> {
    let url = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "only http:// URLs can be probed (the admin listener is plain HTTP), not {}://",
            url.scheme()
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = match url.host() {
        Some(url::Host::Ipv4(ip)) => TcpStream::connect(SocketAddr::from((ip, port))).await,
        Some(url::Host::Ipv6(ip)) => TcpStream::connect(SocketAddr::from((ip, port))).await,
        Some(url::Host::Domain(name)) => TcpStream::connect((name, port)).await,
        None => return Err("the URL has no host".to_owned()),
    }
    .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot start HTTP/1.1: {e}"))?;
    // Driven beside the request on this runtime; it ends when the answer has been read or the
    // probe is dropped at its timeout.
    tokio::spawn(conn);
    let request = Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
        .header(
            header::HOST,
            &url[url::Position::BeforeHost..url::Position::AfterPort],
        )
        .header(header::USER_AGENT, "mcp-sidecar-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no valid answer: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok((status, String::new()));
    }
    // Only shown: read up to the limit, as far as it can be read.
    let mut body = response.into_body();
    let mut shown = Vec::new();
    while shown.len() < MAX_SHOWN_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_SHOWN_BODY - shown.len();
                    shown.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    let body = String::from_utf8_lossy(&shown).into_owned();
    Ok((status, body))
}
