//! Route parsing and the small parsers of the job API (the HTTP flow is tested end to end
//! through the binary in `proxy/tests/jobs_e2e.rs`).

use super::*;
use crate::jobs::{MemoryStore, Settings};

fn api() -> JobApi {
    let jobs = Jobs::new(
        Arc::new(MemoryStore::new()),
        Settings {
            max_running: 1,
            max_running_per_upstream: 1,
            max_queued: 1,
            max_result_bytes: 1,
            result_ttl: Duration::from_secs(1),
            upstreams: vec![],
        },
        &prometheus::Registry::new(),
    )
    .unwrap();
    JobApi::new(jobs, "/jobs", Router::new(vec![]), None)
}

#[test]
fn routes_under_the_prefix_and_nothing_else() {
    let api = api();
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(api.route(&Method::GET, "/jobs"), Some(Route::List));
    assert_eq!(
        api.route(&Method::GET, &format!("/jobs/{id}")),
        Some(Route::Status(id.into()))
    );
    assert_eq!(
        api.route(&Method::GET, &format!("/jobs/{id}/result")),
        Some(Route::Result(id.into()))
    );
    assert_eq!(
        api.route(&Method::GET, &format!("/jobs/{id}/events")),
        Some(Route::Events(id.into()))
    );
    assert_eq!(
        api.route(&Method::DELETE, &format!("/jobs/{id}")),
        Some(Route::Cancel(id.into()))
    );
    assert_eq!(
        api.route(&Method::POST, "/jobs/mcp"),
        Some(Route::Submit("/mcp".into()))
    );
    assert_eq!(
        api.route(&Method::POST, "/jobs/a/b"),
        Some(Route::Submit("/a/b".into()))
    );
    assert_eq!(
        api.route(&Method::POST, "/jobs"),
        Some(Route::Method("POST".into()))
    );
    assert_eq!(
        api.route(&Method::PUT, &format!("/jobs/{id}")),
        Some(Route::Method("PUT".into()))
    );
    assert_eq!(
        api.route(&Method::GET, &format!("/jobs/{id}/other")),
        Some(Route::Method("GET".into()))
    );
    // Not the prefix: an ordinary request, routed to an upstream.
    assert_eq!(api.route(&Method::GET, "/jobsx"), None);
    assert_eq!(api.route(&Method::POST, "/mcp"), None);
}

#[test]
fn the_owner_is_the_principal_or_the_client_address() {
    let head = http::Request::new(()).into_parts().0;
    let conn = crate::conn_info::ConnInfo::new(([10, 0, 0, 7], 5000).into(), false);
    let mut ex = Exchange::new(head, conn);
    let api = api();
    assert_eq!(api.owner_of(&ex).as_str(), "ip:10.0.0.7");
    let principal = |source| crate::principal::Principal {
        subject: "alice".into(),
        source,
        scopes: vec![],
        audiences: vec![],
        audience_accepted_everywhere: false,
        claim_headers: vec![],
    };
    ex.principal = Some(Arc::new(principal(Source::ApiKey("k1".into()))));
    assert_eq!(api.owner_of(&ex).as_str(), "api_key:k1");
    ex.principal = Some(Arc::new(principal(Source::Jwt("iss1".into()))));
    assert_eq!(api.owner_of(&ex).as_str(), "jwt:iss1:alice");
}

#[test]
fn an_unreachable_job_store_is_a_503_job_store_unavailable_with_retry_after() {
    let err = job_error(
        JobError::Store(crate::jobs::StoreError::Unavailable {
            op: "create",
            message: "redis is unavailable".into(),
        }),
        "",
    );
    assert_eq!(err.reason(), "job_store_unavailable");
    let response = err.to_response(None, "req-1");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");
    // Any other store failure stays the engine's own.
    let err = job_error(
        JobError::Store(crate::jobs::StoreError::Backend {
            op: "get",
            message: "a record does not decode".into(),
        }),
        "",
    );
    assert_eq!(err.reason(), "jobs_unavailable");
}
