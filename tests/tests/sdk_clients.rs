//! Real MCP software through the sidecar: the official TypeScript SDK client
//! (`StreamableHTTPClientTransport`, `SSEClientTransport`) and the official Python SDK client
//! (`mcp` 2.x, Streamable HTTP and legacy SSE) against real backends
//! (`@modelcontextprotocol/server-everything` in `streamableHttp` and `sse` modes, and the Python
//! SDK's `MCPServer` in SSE, JSON-response and stateless modes and as a legacy SSE server).
//!
//! Each test takes one client x backend pair and runs the same client script three times at
//! once: directly against the backend, through a sidecar with default settings, and through a
//! sidecar that serves TLS to the client (mounted on another path, so URLs are rewritten). The
//! scripts (`tests/sdk/ts_client.mjs`, `tests/sdk/py_client.py`) print what the client saw: every
//! result payload, JSON-RPC error and HTTP status goes into a `compare` section that must be
//! identical across the three runs; session ids, paths and timings go into `volatile` and are
//! checked here: the session id the client holds is the one the backend minted and ran the tools
//! in, progress arrived spread over the call (not all at its end), legacy POSTs went to the
//! rewritten endpoint, resumption used `Last-Event-ID`.
//!
//! Needs `scripts/test-deps.sh` (Node packages in `tests/sdk/node_modules`, Python SDK in
//! `.venv`); without them the tests fail with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mcp_e2e_tests::sdk::{Backend, assert_same_observations, node, python, run_client, sdk_dir};
use mcp_e2e_tests::{RunningSidecar, config, start, upstream};
use mcp_sidecar::config::TlsConfig;
use serde_json::Value;
use tokio::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// `@modelcontextprotocol/sdk` client.
    Ts,
    /// `mcp` client; `auto` probes `server/discover` first, `legacy` always initializes.
    Py(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Streamable,
    LegacySse,
}

/// A CA the clients trust and a sidecar certificate it signed (for 127.0.0.1 and localhost).
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-sidecar e2e CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", leaf.pem()),
        key: write("key.pem", leaf_key.serialize_pem()),
        _dir: dir,
    }
}

/// The client URL for one of the three runs, with the mount prefix the run's sidecar uses.
struct Run {
    label: &'static str,
    url: String,
    prefix: &'static str,
    ca: Option<PathBuf>,
}

/// A sidecar with default settings in front of `plain`, and one serving TLS on another path in
/// front of `tls`.
async fn sidecars(
    plain: &Backend,
    tls: &Backend,
    transport: Transport,
    pki: &Pki,
) -> [RunningSidecar; 2] {
    let (plain_up, tls_up) = match transport {
        // Same path as the backend, as `run --upstream` mounts it. (Remounting a Streamable HTTP
        // backend hits a sidecar bug, see `remounted_streamable_backend_delivers_resumed_events_promptly`.)
        Transport::Streamable => (
            upstream(plain.url("/mcp"), None),
            upstream(tls.url("/mcp"), None),
        ),
        // Legacy SSE always under another prefix: the `endpoint` event must be rewritten.
        Transport::LegacySse => (
            upstream(plain.url("/"), Some("/legacy")),
            upstream(tls.url("/"), Some("/secure/legacy")),
        ),
    };
    let plain = start(config(vec![plain_up])).await;
    let mut tls_config = config(vec![tls_up]);
    tls_config.listen.tls = Some(TlsConfig {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    });
    let tls = start(tls_config).await;
    [plain, tls]
}

fn runs(
    direct: &Backend,
    transport: Transport,
    sidecars: &[RunningSidecar; 2],
    pki: &Pki,
) -> [Run; 3] {
    let (path, plain_prefix, tls_prefix) = match transport {
        Transport::Streamable => ("/mcp", "", ""),
        Transport::LegacySse => ("/sse", "/legacy", "/secure/legacy"),
    };
    [
        Run {
            label: "direct",
            url: direct.url(path),
            prefix: "",
            ca: None,
        },
        Run {
            label: "through the sidecar",
            url: sidecars[0].url(&format!("{plain_prefix}{path}")),
            prefix: plain_prefix,
            ca: None,
        },
        Run {
            label: "through the sidecar over TLS",
            url: format!(
                "https://127.0.0.1:{}{tls_prefix}{path}",
                sidecars[1].addr.port()
            ),
            prefix: tls_prefix,
            ca: Some(pki.ca.clone()),
        },
    ]
}

fn client_command(client: Client, transport: Transport, backend: &str, run: &Run) -> Command {
    let transport = match transport {
        Transport::Streamable => "streamable",
        Transport::LegacySse => "sse",
    };
    let mut cmd = match client {
        Client::Ts => {
            let mut cmd = Command::new(node());
            cmd.arg(sdk_dir().join("ts_client.mjs"));
            cmd.args([transport, backend, &run.url]);
            if let Some(ca) = &run.ca {
                cmd.env("NODE_EXTRA_CA_CERTS", ca);
            }
            cmd
        }
        Client::Py(mode) => {
            let mut cmd = Command::new(python());
            cmd.arg(sdk_dir().join("py_client.py"));
            cmd.args([transport, backend, &run.url, "--mode", mode]);
            if let Some(ca) = &run.ca {
                cmd.env("SSL_CERT_FILE", ca);
            }
            cmd
        }
    };
    cmd.env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env("NO_PROXY", "*");
    cmd
}

fn ms(report: &Value, key: &str) -> Vec<i64> {
    report["volatile"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect()
}

fn http_log(report: &Value) -> Vec<Value> {
    report["volatile"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Progress notifications reached the client while the call was running: the backends send one
/// every 500 ms over 2 s, so the first must arrive at least a second before the result and the
/// ones seen must be spread over at least 1.5 intervals (not delivered in one burst at the end).
fn assert_progress_spread(report: &Value, label: &str) {
    let at = ms(report, "progress_ms");
    if at.len() < 3 {
        return; // none sent by this backend mode (the direct run saw the same, compared above)
    }
    let total = report["volatile"]["long_running_ms"].as_i64().unwrap();
    let (first, last) = (at[0], at[at.len() - 1]);
    assert!(
        total - first >= 1000 && last - first >= 750,
        "{label}: progress was not spread over the call (arrived at {at:?} ms, result at {total} ms)"
    );
}

/// The session id the client holds was minted by the backend, and the backend ran the tools,
/// the sampling and the elicitation in that same session.
fn assert_session_is_the_backends(report: &Value, backend: &Backend, label: &str) {
    let v = &report["volatile"];
    let session = v["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{label}: the client never received a session id: {v}"));
    for key in [
        "backend_saw_session",
        "sampling_session",
        "elicitation_session",
    ] {
        if let Some(seen) = v.get(key).filter(|s| !s.is_null()) {
            assert_eq!(seen, session, "{label}: {key}");
        }
    }
    // server-everything logs every session it mints.
    if v.get("backend_saw_session").is_none() {
        let output = backend.output();
        assert!(
            output.contains(session),
            "{label}: session {session} is not one the backend minted:\n{output}"
        );
    }
    let again = v["reinitialized_session_id"].as_str();
    assert!(
        again.is_some_and(|again| again != session),
        "{label}: re-initializing after the session ended gave no new session: {v}"
    );
    let ended = report["compare"]["ended_session"]["status"].as_u64();
    assert!(
        matches!(ended, Some(400 | 404)),
        "{label}: the ended session was not refused with the backend's 4xx: {}",
        report["compare"]["ended_session"]
    );
}

/// Every legacy POST went to the endpoint the backend announced, rewritten into the run's prefix.
fn assert_legacy_endpoint_rewritten(report: &Value, prefix: &str, label: &str) {
    let posts: Vec<String> = http_log(report)
        .iter()
        .filter(|e| e["method"] == "POST")
        .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!posts.is_empty(), "{label}: no POSTs recorded");
    for path in &posts {
        let rest = path.strip_prefix(prefix).unwrap_or_else(|| {
            panic!("{label}: POST to {path}, outside the sidecar mount {prefix:?}")
        });
        assert!(
            rest == "/message" || rest == "/messages/",
            "{label}: POST to {path}"
        );
    }
}

/// The client resumed the stream the backend closed with GET + Last-Event-ID, and the rest of
/// the call arrived at once (the backend replays it 0.4 s after the stream closed).
fn assert_resumed_with_last_event_id(report: &Value, label: &str) {
    let took = report["volatile"]["resumable_ms"]
        .as_i64()
        .unwrap_or(i64::MAX);
    assert!(
        took < 5000,
        "{label}: the resumed call took {took} ms (the backend's next ping comes after 15 s)"
    );
    let resumed = http_log(report)
        .iter()
        .any(|e| e["method"] == "GET" && e["status"] == 200 && e["last_event_id"].is_string());
    assert!(
        resumed,
        "{label}: no successful GET with Last-Event-ID: {:?}",
        http_log(report)
    );
}

/// Newer-protocol probes never got a 5xx (clients fall back only on 4xx).
fn assert_no_server_error(report: &Value, label: &str) {
    for entry in http_log(report) {
        let status = entry["status"].as_u64().unwrap_or(0);
        assert!(status < 500, "{label}: {entry}");
    }
}

/// Runs `client` against `backend` directly, through a plain sidecar and through a TLS sidecar,
/// all three at once, and checks the sidecar changed nothing the client can see. For the Python
/// backend with an event store, each run gets its own backend process (same arguments) so runs cannot see each other's state
/// (the Python backend's event store is shared by all sessions of a process and keys streams by
/// JSON-RPC request id, which every client numbers alike).
async fn same_through_the_sidecar<F, Fut>(
    client: Client,
    transport: Transport,
    backend_name: &str,
    backend: F,
) -> [Value; 3]
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Backend>,
{
    let pki = pki();
    let isolate = backend_name == "python" && transport == Transport::Streamable;
    let backends = if isolate {
        let (b0, b1, b2) = tokio::join!(backend(), backend(), backend());
        vec![b0, b1, b2]
    } else {
        vec![backend().await]
    };
    let backend_of = |run: usize| &backends[run % backends.len()];
    let sidecars = sidecars(backend_of(1), backend_of(2), transport, &pki).await;
    let runs = runs(backend_of(0), transport, &sidecars, &pki);
    let [direct, plain, tls] = runs.each_ref().map(|run| {
        run_client(
            client_command(client, transport, backend_name, run),
            run.label,
        )
    });
    let reports = tokio::join!(direct, plain, tls);
    let reports = [reports.0, reports.1, reports.2];
    keep_reports(client, transport, backend_name, &reports);

    for (index, (report, run)) in reports.iter().zip(&runs).enumerate() {
        let backend = backend_of(index);
        assert_no_server_error(report, run.label);
        if run.label != "direct" {
            assert_same_observations(&reports[0], report, run.label);
            assert_progress_spread(report, run.label);
        }
        match transport {
            Transport::LegacySse => assert_legacy_endpoint_rewritten(report, run.prefix, run.label),
            Transport::Streamable => {
                let stateful = backend_name != "python-stateless"
                    && report["compare"]["protocol_version"] != "2026-07-28";
                if stateful {
                    assert_session_is_the_backends(report, backend, run.label);
                }
                if let Some(version) = report["compare"]["backend_saw_protocol_version"].as_str() {
                    assert_eq!(
                        report["compare"]["protocol_version"], version,
                        "{}: MCP-Protocol-Version reached the backend unchanged",
                        run.label
                    );
                }
            }
        }
        if report["compare"].get("resumable").is_some() {
            assert_resumed_with_last_event_id(report, run.label);
        }
    }
    for sidecar in sidecars {
        sidecar.stop().await;
    }
    reports
}

/// Writes the three reports to `target/sdk-reports/` so a failure can be looked at whole.
fn keep_reports(client: Client, transport: Transport, backend: &str, reports: &[Value; 3]) {
    let dir = sdk_dir().join("../../target/sdk-reports");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let name = format!("{client:?}-{transport:?}-{backend}")
        .replace(['(', ')', '"'], "")
        .to_lowercase();
    for (report, run) in reports.iter().zip(["direct", "sidecar", "sidecar-tls"]) {
        let _ = std::fs::write(dir.join(format!("{name}-{run}.json")), report.to_string());
    }
}

fn assert_ok(report: &Value, key: &str) {
    let outcome = &report["compare"][key];
    assert!(
        outcome["result"].is_object() && outcome["result"]["isError"] != true,
        "`{key}` did not succeed: {outcome}"
    );
}

// ---- TypeScript SDK client ----

#[tokio::test]
async fn ts_streamable_client_sees_server_everything_the_same_through_the_sidecar() {
    let backend = || Backend::everything("streamableHttp");
    let [direct, ..] =
        same_through_the_sidecar(Client::Ts, Transport::Streamable, "everything", backend).await;
    for key in [
        "echo",
        "sum",
        "long_running",
        "sampling",
        "elicitation",
        "roots",
        "after_reinitialize",
    ] {
        assert_ok(&direct, key);
    }
    assert_eq!(direct["compare"]["roots_asked_on_get_stream"], true);
    assert_eq!(
        direct["volatile"]["progress"].as_array().map(Vec::len),
        Some(4)
    );
}

#[tokio::test]
async fn ts_streamable_client_sees_python_sse_mode_the_same_and_resumes_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--event-store"]);
    let [direct, ..] =
        same_through_the_sidecar(Client::Ts, Transport::Streamable, "python", backend).await;
    for key in [
        "echo",
        "sum",
        "long_running",
        "sampling",
        "elicitation",
        "resumable",
    ] {
        assert_ok(&direct, key);
    }
    assert_eq!(
        direct["compare"]["resumable_progress"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(direct["compare"]["ended_session"]["status"], 404);
}

#[tokio::test]
async fn ts_streamable_client_sees_python_json_mode_the_same_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--json-response"]);
    let [direct, ..] =
        same_through_the_sidecar(Client::Ts, Transport::Streamable, "python-json", backend).await;
    assert_ok(&direct, "long_running");
    assert_eq!(direct["compare"]["ended_session"]["status"], 404);
}

#[tokio::test]
async fn ts_streamable_client_sees_stateless_python_the_same_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--stateless"]);
    let [direct, ..] = same_through_the_sidecar(
        Client::Ts,
        Transport::Streamable,
        "python-stateless",
        backend,
    )
    .await;
    assert_ok(&direct, "long_running");
    assert!(direct["volatile"]["session_id"].is_null());
}

#[tokio::test]
async fn ts_sse_client_sees_legacy_server_everything_the_same_through_a_remounted_sidecar() {
    let backend = || Backend::everything("sse");
    let [direct, ..] =
        same_through_the_sidecar(Client::Ts, Transport::LegacySse, "everything", backend).await;
    for key in ["echo", "long_running", "sampling", "elicitation", "roots"] {
        assert_ok(&direct, key);
    }
}

#[tokio::test]
async fn ts_sse_client_sees_legacy_python_the_same_through_a_remounted_sidecar() {
    let backend = || Backend::python(&["sse"]);
    let [direct, ..] =
        same_through_the_sidecar(Client::Ts, Transport::LegacySse, "python", backend).await;
    for key in ["echo", "long_running", "sampling", "elicitation"] {
        assert_ok(&direct, key);
    }
}

// ---- Python SDK client ----

#[tokio::test]
async fn py_client_probes_discover_then_falls_back_on_server_everything_through_the_sidecar() {
    let backend = || Backend::everything("streamableHttp");
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("auto"),
        Transport::Streamable,
        "everything",
        backend,
    )
    .await;
    let http: Vec<&str> = direct["compare"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        http.iter().any(|e| e.starts_with("POST server/discover 4")),
        "the discover probe got a 4xx: {http:?}"
    );
    assert_eq!(direct["compare"]["protocol_version"], "2025-11-25");
    for key in [
        "echo",
        "sum",
        "long_running",
        "sampling",
        "elicitation",
        "roots",
    ] {
        assert_ok(&direct, key);
    }
}

#[tokio::test]
async fn py_client_sees_python_sse_mode_the_same_and_resumes_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--event-store"]);
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("legacy"),
        Transport::Streamable,
        "python",
        backend,
    )
    .await;
    for key in [
        "echo",
        "sum",
        "long_running",
        "sampling",
        "elicitation",
        "resumable",
    ] {
        assert_ok(&direct, key);
    }
    assert_eq!(direct["compare"]["ended_session"]["status"], 404);
}

#[tokio::test]
async fn py_client_speaks_the_2026_stateless_protocol_to_python_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--event-store"]);
    let [direct, ..] =
        same_through_the_sidecar(Client::Py("auto"), Transport::Streamable, "python", backend)
            .await;
    assert_eq!(direct["compare"]["protocol_version"], "2026-07-28");
    assert_eq!(direct["compare"]["backend_saw_mcp_method"], "tools/call");
    for key in ["echo", "sum", "long_running"] {
        assert_ok(&direct, key);
    }
}

#[tokio::test]
async fn py_client_sees_python_json_mode_the_same_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--json-response"]);
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("legacy"),
        Transport::Streamable,
        "python-json",
        backend,
    )
    .await;
    assert_ok(&direct, "long_running");
}

#[tokio::test]
async fn py_client_sees_stateless_python_the_same_through_the_sidecar() {
    let backend = || Backend::python(&["streamable", "--stateless"]);
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("legacy"),
        Transport::Streamable,
        "python-stateless",
        backend,
    )
    .await;
    assert_ok(&direct, "long_running");
    assert_eq!(
        direct["compare"]["progress"].as_array().map(Vec::len),
        Some(4)
    );
}

#[tokio::test]
async fn py_sse_client_sees_legacy_server_everything_the_same_through_a_remounted_sidecar() {
    let backend = || Backend::everything("sse");
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("legacy"),
        Transport::LegacySse,
        "everything",
        backend,
    )
    .await;
    for key in ["echo", "long_running", "sampling", "elicitation", "roots"] {
        assert_ok(&direct, key);
    }
}

#[tokio::test]
async fn py_sse_client_sees_legacy_python_the_same_through_a_remounted_sidecar() {
    let backend = || Backend::python(&["sse"]);
    let [direct, ..] = same_through_the_sidecar(
        Client::Py("legacy"),
        Transport::LegacySse,
        "python",
        backend,
    )
    .await;
    for key in ["echo", "long_running", "sampling", "elicitation"] {
        assert_ok(&direct, key);
    }
}

/// Sidecar bug: when a Streamable HTTP backend is mounted under another path, GET SSE streams go
/// through the legacy `endpoint` scanner, which releases each complete event without the `\n` of
/// its `\r\n\r\n` terminator (sse-starlette, i.e. every Python SDK server, ends lines with CRLF)
/// and holds that byte until the backend sends more. A call resumed with Last-Event-ID then only
/// completes at the backend's next `: ping`, 15 s later.
#[tokio::test]
async fn remounted_streamable_backend_delivers_resumed_events_promptly() {
    let backend = Backend::python(&["streamable", "--event-store"]).await;
    let sidecar = start(config(vec![upstream(
        backend.url("/mcp"),
        Some("/svc/mcp"),
    )]))
    .await;
    let run = Run {
        label: "through a sidecar mounted at /svc/mcp",
        url: sidecar.url("/svc/mcp"),
        prefix: "/svc",
        ca: None,
    };
    let report = run_client(
        client_command(Client::Py("legacy"), Transport::Streamable, "python", &run),
        run.label,
    )
    .await;
    assert_ok(&report, "resumable");
    assert_resumed_with_last_event_id(&report, run.label);
    sidecar.stop().await;
}

#[test]
fn sdk_scripts_exist() {
    for script in [
        "ts_client.mjs",
        "py_client.py",
        "everything.mjs",
        "py_server.py",
    ] {
        assert!(
            Path::new(&sdk_dir()).join(script).exists(),
            "tests/sdk/{script} missing"
        );
    }
}
