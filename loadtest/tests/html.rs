//! The HTML report as a browser shows it: a page from a real short run against the fixture,
//! opened in headless Chromium (Debian's `chromium`, or `$CHROMIUM`). The page is served on
//! loopback under a Content Security Policy that allows nothing but inline styles, with a
//! report URI: any fetch the page would make (an image, a stylesheet, a font) or any script it
//! would run is refused by the browser, logged on its console and reported here, so the page
//! must be self-contained to pass. The DOM the browser built must hold the three charts as SVG
//! with drawn lines, and the error table; a screenshot is kept beside the page for a human.
//!
//! Without Chromium the test fails when `CI` is set (CI installs it: scripts/test-deps.sh) and
//! is skipped, saying why, otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{plan, run};
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{Load, Stop};
use mcp_loadtest::workload::Workload;
use tokio::net::TcpListener;

/// What the page may use: its own inline styles, nothing else (no script, no fetch).
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; report-uri /csp";
/// How long one Chromium run may take before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// Chromium: `$CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        [
            "chromium",
            "chromium-browser",
            "google-chrome-stable",
            "google-chrome",
        ]
        .iter()
        .map(|name| dir.join(name))
        .find(|candidate| candidate.is_file())
    })
}

/// Serves `page` at `/report.html` with [`POLICY`]; records every request (method and path).
async fn serve(page: String) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let page = Bytes::from(page);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (page, log) = (page.clone(), log.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (page, log) = (page.clone(), log.clone());
                    async move {
                        log.lock()
                            .unwrap()
                            .push(format!("{} {}", req.method(), req.uri().path()));
                        let response = if req.uri().path() == "/report.html" {
                            Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .header("content-security-policy", POLICY)
                                .body(Full::new(page))
                        } else {
                            Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new()))
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Runs Chromium headless with `args` on `url`, bounded; its stdout and stderr.
fn browse(chromium: &Path, profile: &Path, args: &[&str], url: &str) -> (String, String) {
    let (out, err) = (profile.join("stdout"), profile.join("stderr"));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            // Tests often run as root (containers), where Chromium refuses its sandbox; the
            // page is our own.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            // Console messages (errors, refused fetches) on stderr.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("data").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} exited with {status}");
            break;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {BROWSER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

/// The `<svg>…</svg>` elements of `dom`.
fn svgs(dom: &str) -> Vec<&str> {
    dom.match_indices("<svg")
        .map(|(start, _)| {
            let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
            &dom[start..end]
        })
        .collect()
}

/// Whether an SVG draws a line through at least two points.
fn draws_a_line(svg: &str) -> bool {
    svg.match_indices("<polyline").any(|(at, _)| {
        let rest = &svg[at..];
        let element = &rest[..rest.find('>').unwrap_or(rest.len())];
        element
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .is_some_and(|points| points.split_whitespace().count() >= 2)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_a_browser_self_contained_with_its_charts_and_errors() {
    let Some(chromium) = chromium() else {
        let why = "no chromium on PATH (apt-get install chromium, or set CHROMIUM)";
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the HTML report: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    };
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let scenario = r#"
[[request]]
weight = 8
call = "echo"
arguments = { text = "n{{seq}}" }

[[request]]
call = "fail"
arguments = { mode = "jsonrpc_error", code = -32099 }

[[request]]
call = "fail"
arguments = { mode = "tool_error" }
"#;
    let report = run(
        &fx.mcp_url(),
        "2025-11-25",
        Workload::scenario(scenario, "mix.toml").unwrap(),
        plan(
            Load::Rate {
                rate: 200.0,
                poisson: false,
            },
            Stop::Duration(Duration::from_millis(1500)),
        ),
    )
    .await;
    assert!(report.errors > 0 && report.errors < report.requests);
    let page = mcp_loadtest::html::page(&report);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.html"), &page).unwrap();
    let (addr, seen) = serve(page).await;
    let url = format!("http://{addr}/report.html");
    let shot = dir.join("report.png");
    let (dom, console, shot_log) = {
        let (dir, shot) = (dir.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            let (dom, console) = browse(&chromium, &dir, &["--dump-dom"], &url);
            let screenshot = format!("--screenshot={}", shot.display());
            let (_, shot_log) = browse(
                &chromium,
                &dir,
                &[screenshot.as_str(), "--window-size=1000,2400"],
                &url,
            );
            (dom, console, shot_log)
        })
        .await
        .unwrap()
    };
    eprintln!("the page: {}", dir.join("report.html").display());
    eprintln!("its screenshot: {}", shot.display());

    // Self-contained: nothing refused, nothing on the console, nothing fetched but the page.
    for log in [&console, &shot_log] {
        let messages: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(messages.is_empty(), "console: {messages:#?}");
    }
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|r| r == "GET /report.html" || r == "GET /favicon.ico"),
        "the page fetched or reported more than itself: {requests:?}"
    );

    // The DOM the browser built: three charts, each drawing its lines, and the errors.
    let charts = svgs(&dom);
    assert_eq!(charts.len(), 3, "three charts in the DOM");
    for (i, svg) in charts.iter().enumerate() {
        assert!(draws_a_line(svg), "chart {i} draws no line: {svg:.300}");
        assert!(svg.contains("<text"), "chart {i} has no axis labels");
    }
    for heading in [
        "Latency over time",
        "Throughput and errors over time",
        "Latency distribution",
        "Errors",
    ] {
        assert!(dom.contains(&format!("<h2>{heading}</h2>")), "{heading}");
    }
    for class in ["jsonrpc_-32099", "tool_error"] {
        assert!(
            dom.contains(&format!("<td><code>{class}</code></td>")),
            "the error table lists {class}"
        );
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
