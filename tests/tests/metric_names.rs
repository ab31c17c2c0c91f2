//! The metrics the shipped alert rules (deploy/prometheus/*.yml) and dashboard
//! (deploy/grafana/*.json) query exist: a sidecar with every feature on (auth, rate limits,
//! caps, breakers, retries, jobs, per-tool labels) serves traffic that exercises them, and every
//! `mcp_sidecar_*` and `process_*` name those files use must be in its `/metrics` (the config
//! reload and Redis series included). A renamed or dropped metric fails here, not silently in a
//! dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_e2e_tests::{
    ACCEPT_BOTH, RunningSidecar, call, client, eventually, metric_value, rpc, start,
};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_sidecar::config::Config;
use serde_json::{Value, json};

const API_KEY: &str = "metric-names-test-key-0123456789";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every metric name in the files of `dir` ending in `ext`: identifiers starting with
/// `mcp_sidecar_` or `process_` (PromQL, and the names prose mentions).
fn names_in(dir: &Path, ext: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        if ext == "json" {
            let doc: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            assert!(doc["panels"].is_array(), "{}: no panels", path.display());
        }
        names.extend(metric_names(&text));
    }
    assert!(files > 0, "no .{ext} files in {}", dir.display());
    names
}

fn metric_names(text: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| ident(c)) {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        // A recording rule's name may hold `:`; prose may end a name with one.
        let word = tail[..end].trim_end_matches(':');
        if word.starts_with("mcp_sidecar_") || word.starts_with("process_") {
            out.push(word.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Whether the exposition has a sample of `name` (a series, or a histogram's `_bucket`,
/// `_sum`, `_count` line) or declares the family.
fn exported(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            || line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with(' '))
    })
}

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// Every feature on: a public upstream `u` with per-tool settings, retries, a concurrency cap
/// and rate limits; a protected upstream `p` (API key, a JWT issuer from a JWKS file); an
/// upstream `dead` nobody listens on; jobs.
async fn sidecar(backend: &FixtureServer, jwks_file: &Path) -> RunningSidecar {
    let text = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[limits]
max_in_flight = 64

# Registers the Redis connection's series (nothing uses it here: no command is sent, so no
# server is needed for its breaker gauge to be exported).
[redis]
url = "redis://127.0.0.1:1"

[[rate_limit]]
name = "add-per-ip"
key = ["client_ip"]
rate = 1
per = "60s"
burst = 1
tools = ["add"]

[auth]
public_url = "https://mcp.example.test"

[[auth.api_keys]]
id = "ci"
key = "${{API_KEY}}"
scopes = ["tools:read"]

[[auth.jwt]]
id = "idp"
issuer = "https://idp.test"
algorithms = ["ES256"]
jwks_file = "{jwks}"

[[upstream]]
name = "u"
url = "{url}"
path = "/mcp"
max_in_flight = 1

[upstream.auth]
public = true

[[upstream.tool]]
name = "fail"
idempotent = true

[[upstream.tool]]
name = "slee*"
timeout = "60s"

[upstream.retry]
max_retries = 1
backoff = "1ms"
statuses = [503]

[[upstream]]
name = "p"
url = "{url}"
path = "/p"

# The key's principal sees and may call `echo` only.
[[upstream.auth.rules]]
scopes = ["tools:read"]
methods = ["tools/list"]
tools = ["echo"]

[[upstream]]
name = "dead"
url = "http://127.0.0.1:1/mcp"
path = "/dead"

[upstream.auth]
public = true
"#,
        url = backend.mcp_url(),
        jwks = jwks_file.display(),
    );
    let env = |name: &str| (name == "API_KEY").then(|| API_KEY.to_owned());
    start(Config::from_toml_with_env(&text, &env).unwrap()).await
}

async fn post(sidecar: &RunningSidecar, path: &str, body: String) -> reqwest::Response {
    client()
        .post(sidecar.url(path))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn submit_job(sidecar: &RunningSidecar, body: String) -> String {
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "a job");
    let doc: Value = resp.json().await.unwrap();
    doc["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job id in {doc}"))
        .to_owned()
}

async fn job_status(sidecar: &RunningSidecar, id: &str) -> String {
    let doc: Value = client()
        .get(sidecar.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["status"].as_str().unwrap_or_default().to_owned()
}

/// Traffic that makes every family of the sidecar show a sample.
async fn exercise(sidecar: &RunningSidecar, backend: &FixtureServer) {
    // Tool names are learned from the backend's tools/list answer, then calls count under them.
    assert_eq!(
        post(sidecar, "/mcp", rpc(1, "tools/list", json!({})))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(sidecar, "/mcp", call(2, "echo", json!({"text": "hi"})))
            .await
            .status(),
        200
    );
    // A status the retry policy retries, then a failure: retries, upstream failures.
    let resp = post(
        sidecar,
        "/mcp",
        call(3, "fail", json!({"mode": "http_status", "status": 503})),
    )
    .await;
    assert_eq!(resp.status(), 503);
    // The rate-limit rule admits one `add`, refuses the next.
    assert_eq!(
        post(sidecar, "/mcp", call(4, "add", json!({"a": 1, "b": 2})))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(sidecar, "/mcp", call(5, "add", json!({"a": 1, "b": 2})))
            .await
            .status(),
        429
    );
    // The upstream cap (1): a slow call holds it, the next is shed.
    let slow = {
        let url = sidecar.url("/mcp");
        tokio::spawn(
            client()
                .post(url)
                .header("accept", ACCEPT_BOTH)
                .header("content-type", "application/json")
                .body(call(6, "sleep", json!({"ms": 2_000})))
                .send(),
        )
    };
    eventually("the slow call at the backend", || {
        backend.stats().in_flight == 1
    })
    .await;
    assert_eq!(
        post(sidecar, "/mcp", call(7, "echo", json!({"text": "x"})))
            .await
            .status(),
        503
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    // Authentication: refused without a credential, admitted with the API key.
    assert_eq!(
        post(sidecar, "/p", rpc(8, "ping", json!({})))
            .await
            .status(),
        401
    );
    let resp = client()
        .post(sidecar.url("/p"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(rpc(9, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(
        listed["result"]["tools"].as_array().unwrap().len(),
        1,
        "the answer is filtered to what the principal may call"
    );
    let resp = client()
        .post(sidecar.url("/p"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(call(10, "add", json!({"a": 1, "b": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // An upstream nobody listens on.
    assert_eq!(
        post(sidecar, "/dead", rpc(10, "ping", json!({})))
            .await
            .status(),
        502
    );
    // Jobs: one completes, one fails.
    let ok = submit_job(sidecar, call(11, "echo", json!({"text": "job"}))).await;
    let failed = submit_job(
        sidecar,
        call(12, "fail", json!({"mode": "http_status", "status": 500})),
    )
    .await;
    for (id, want) in [(ok, "completed"), (failed, "failed")] {
        let mut status = String::new();
        for _ in 0..400 {
            status = job_status(sidecar, &id).await;
            if status == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(status, want, "job {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        mcp_fixtures::token::jwks(&[mcp_fixtures::token::EC_P256]).to_string(),
    )
    .unwrap();
    let backend = fixture().await;
    let sidecar = sidecar(&backend, &jwks).await;
    exercise(&sidecar, &backend).await;
    let text = sidecar.metrics().await;

    let mut used = names_in(&deploy_dir().join("prometheus"), "yml");
    let rules = used.len();
    used.extend(names_in(&deploy_dir().join("grafana"), "json"));
    assert!(
        rules >= 10 && used.len() >= 30,
        "the rules and the dashboard name metrics ({rules}, {})",
        used.len()
    );
    let missing: Vec<_> = used.iter().filter(|n| !exported(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "used by deploy/prometheus or deploy/grafana but not exported: {missing:?}\n\n{text}"
    );

    // The per-tool series carry the learned name, the glob and `other`, never a client's name.
    let calls = |tool: &str, outcome: &str| {
        metric_value(
            &text,
            &format!(
                "mcp_sidecar_rpc_requests_total{{outcome=\"{outcome}\",rpc_method=\"tools/call\",tool=\"{tool}\",upstream=\"u\"}}"
            ),
        )
    };
    // The live call and the job submission (its 202); the shed call is a server error.
    assert_eq!(calls("echo", "ok"), Some(2.0), "learned from tools/list");
    assert_eq!(calls("echo", "server_error"), Some(1.0));
    assert_eq!(calls("slee*", "ok"), Some(1.0), "the configured glob");
    assert_eq!(calls("add", "client_error"), Some(1.0), "the refused call");
    // The learner read the backend's whole list, before the principal's filter shrank it.
    assert_eq!(
        metric_value(
            &text,
            "mcp_sidecar_rpc_requests_total{outcome=\"client_error\",rpc_method=\"tools/call\",tool=\"add\",upstream=\"p\"}"
        ),
        Some(1.0)
    );
    sidecar.stop().await;
}

#[test]
fn names_are_read_from_promql_and_prose() {
    let names = metric_names(
        "sum by (le) (rate(mcp_sidecar_x_bucket{a=\"b\"}[5m])) / process_open_fds > 0.8 \
         (mcp_sidecar_y_total) not_mcp_sidecar_z; see mcp_sidecar_w:",
    );
    assert_eq!(
        names,
        [
            "mcp_sidecar_x_bucket",
            "process_open_fds",
            "mcp_sidecar_y_total",
            "mcp_sidecar_w"
        ]
    );
    let text =
        "# TYPE mcp_sidecar_h histogram\nmcp_sidecar_h_bucket{le=\"1\"} 0\nmcp_sidecar_g 1\n";
    assert!(exported(text, "mcp_sidecar_h"));
    assert!(exported(text, "mcp_sidecar_h_bucket"));
    assert!(exported(text, "mcp_sidecar_g"));
    assert!(!exported(text, "mcp_sidecar_h_sum"));
    assert!(!exported(text, "mcp_sidecar"));
}
