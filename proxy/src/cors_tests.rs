use std::time::Duration;

use super::*;

const ORIGIN: &str = "http://localhost:6274";

fn policy(adjust: impl FnOnce(&mut CorsConfig)) -> Cors {
    let mut config = CorsConfig::default();
    adjust(&mut config);
    Cors::new(&config, None).unwrap().unwrap()
}

fn preflight_headers(method: &str, requested: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ORIGIN, HeaderValue::from_static(ORIGIN));
    h.insert(
        header::ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_str(method).unwrap(),
    );
    for r in requested {
        h.append(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(r).unwrap(),
        );
    }
    h
}

fn answer(cors: &Cors, headers: &HeaderMap) -> Response<ProxyBody> {
    match cors.on_request(&Method::OPTIONS, headers, &HeaderValue::from_static(ORIGIN)) {
        Phase::Preflight(r) => r,
        Phase::Actual(g) => panic!("not answered as a preflight: {g:?}"),
    }
}

fn granted(r: &Response<ProxyBody>) -> bool {
    r.headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
}

#[test]
fn allowed_preflight_gets_every_grant_and_varies_on_its_request_headers() {
    let cors = policy(|_| {});
    let r = answer(
        &cors,
        &preflight_headers("POST", &["content-type,authorization", "mcp-session-id"]),
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_METHODS],
        "POST, GET, DELETE, OPTIONS"
    );
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(allowed.contains("mcp-protocol-version") && allowed.contains("x-api-key"));
    assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "7200");
    assert_eq!(h[header::VARY], PREFLIGHT_VARY);
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
}

#[test]
fn requested_header_names_are_compared_case_insensitively() {
    let cors = policy(|_| {});
    let r = answer(
        &cors,
        &preflight_headers("POST", &[" Content-Type ,\tMCP-Session-Id,, X-API-KEY"]),
    );
    assert!(granted(&r));
    let cors = policy(|c| c.allowed_headers = vec!["X-Custom".into()]);
    assert!(granted(&answer(
        &cors,
        &preflight_headers("GET", &["x-custom"])
    )));
}

#[test]
fn preflight_asking_for_an_unlisted_header_gets_no_grants() {
    let cors = policy(|_| {});
    for requested in [
        &["x-evil"][..],
        &["content-type", "x-evil"],
        &["content-type, x-evil"],
    ] {
        let r = answer(&cors, &preflight_headers("POST", requested));
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert!(!granted(&r), "{requested:?}");
        assert!(
            !r.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS)
        );
        assert_eq!(r.headers()[header::VARY], PREFLIGHT_VARY);
    }
}

#[test]
fn preflight_for_an_unlisted_method_gets_no_grants() {
    let cors = policy(|_| {});
    assert!(!granted(&answer(&cors, &preflight_headers("PUT", &[]))));
    // Fetch compares methods byte for byte; browsers upper-case only the standard ones.
    assert!(!granted(&answer(&cors, &preflight_headers("post", &[]))));
    let cors = policy(|c| c.allowed_methods = vec!["POST".into()]);
    assert!(!granted(&answer(&cors, &preflight_headers("DELETE", &[]))));
    assert!(granted(&answer(&cors, &preflight_headers("POST", &[]))));
}

#[test]
fn origins_default_to_the_origin_check_and_a_list_narrows_them() {
    let cors = policy(|_| {});
    assert!(granted(&answer(&cors, &preflight_headers("POST", &[]))));
    let cors = policy(|c| c.allowed_origins = Some(vec!["https://*.example.com/".into()]));
    let r = answer(&cors, &preflight_headers("POST", &[]));
    assert!(!granted(&r));
    assert_eq!(r.headers()[header::VARY], PREFLIGHT_VARY);
    let origin = HeaderValue::from_static("https://App.Example.com");
    assert_eq!(
        cors.grant(&origin),
        Grant::Allowed(origin.clone()),
        "compared lower-cased, echoed as sent"
    );
    assert_eq!(
        cors.grant(&HeaderValue::from_static("https://example.com")),
        Grant::Refused
    );
}

#[test]
fn max_age_is_whole_seconds_of_the_setting() {
    let cors = policy(|c| c.max_age = Duration::from_millis(90_500));
    let r = answer(&cors, &preflight_headers("POST", &[]));
    assert_eq!(r.headers()[header::ACCESS_CONTROL_MAX_AGE], "90");
}

#[test]
fn options_without_a_request_method_is_not_a_preflight() {
    let cors = policy(|_| {});
    let mut h = HeaderMap::new();
    h.insert(header::ORIGIN, HeaderValue::from_static(ORIGIN));
    let origin = HeaderValue::from_static(ORIGIN);
    assert!(matches!(
        cors.on_request(&Method::OPTIONS, &h, &origin),
        Phase::Actual(Grant::Allowed(_))
    ));
    let h = preflight_headers("POST", &[]);
    assert!(matches!(
        cors.on_request(&Method::POST, &h, &origin),
        Phase::Actual(_)
    ));
}

#[test]
fn allowed_answer_echoes_the_origin_exposes_headers_and_replaces_the_backends() {
    let cors = policy(|_| {});
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    cors.apply(Grant::Allowed(HeaderValue::from_static(ORIGIN)), &mut h);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
    for name in [
        "mcp-session-id",
        "www-authenticate",
        "ratelimit",
        "retry-after",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["accept-encoding", "origin"]);
}

#[test]
fn refused_answer_loses_the_backends_cors_headers() {
    let cors = policy(|_| {});
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("mcp-session-id"),
    );
    cors.apply(Grant::Refused, &mut h);
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    assert_eq!(h[header::VARY], "origin");
}

#[test]
fn disabled_policy_is_none_and_preflights_are_counted_by_outcome() {
    let off = CorsConfig {
        enabled: false,
        ..CorsConfig::default()
    };
    assert!(Cors::new(&off, None).unwrap().is_none());
    let registry = Registry::new();
    let cors = Cors::new(&CorsConfig::default(), Some(&registry))
        .unwrap()
        .unwrap();
    answer(&cors, &preflight_headers("POST", &[]));
    answer(&cors, &preflight_headers("PUT", &[]));
    answer(&cors, &preflight_headers("POST", &["x-evil"]));
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for (label, n) in [
        ("allowed", 1),
        ("method_not_allowed", 1),
        ("headers_not_allowed", 1),
        ("origin_not_allowed", 0),
    ] {
        let line = format!("mcp_sidecar_cors_preflights_total{{outcome=\"{label}\"}} {n}\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
}
