use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn admin(token: Option<&str>) -> Admin {
    Admin {
        metrics: Metrics::new().unwrap(),
        readiness: Readiness::new(&[]),
        jobs: None,
        view: Arc::new(ArcSwap::from_pointee(AdminView {
            resilience: None,
            token: token.map(AdminToken::new),
            config: Arc::new(
                crate::config::Config::quick_start("http://127.0.0.1:9/mcp")
                    .unwrap()
                    .view()
                    .unwrap(),
            ),
        })),
        reloader: None,
    }
}

fn get(path: &str, authorization: &[&str]) -> Request<()> {
    let mut req = Request::builder().uri(path);
    for value in authorization {
        req = req.header(header::AUTHORIZATION, *value);
    }
    req.body(()).unwrap()
}

fn challenge(resp: &Response<ProxyBody>) -> &str {
    resp.headers()
        .get(header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn without_a_token_configured_every_endpoint_is_open() {
    let admin = admin(None);
    assert_eq!(admin.respond(&get("/metrics", &[])).await.status(), 200);
}

#[tokio::test]
async fn a_request_without_the_token_is_401_with_a_bearer_challenge() {
    let admin = admin(Some(TOKEN));
    for path in ["/metrics", "/breakers", "/jobs", "/config", "/nope"] {
        let resp = admin.respond(&get(path, &[])).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            challenge(&resp),
            "Bearer realm=\"mcp-sidecar-admin\"",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_wrong_token_is_401_invalid_token() {
    let admin = admin(Some(TOKEN));
    for value in [
        "Bearer 0123456789abcdef0123456789abcdeX",
        "Bearer 0123456789abcdef",
        "Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "Bearer",
    ] {
        let resp = admin.respond(&get("/metrics", &[value])).await;
        assert_eq!(resp.status(), 401, "{value}");
        let wrong = value.starts_with("Bearer ");
        assert_eq!(
            challenge(&resp).contains("error=\"invalid_token\""),
            wrong,
            "{value}: {}",
            challenge(&resp)
        );
    }
}

#[tokio::test]
async fn the_token_opens_every_endpoint_whatever_the_scheme_case() {
    let admin = admin(Some(TOKEN));
    for value in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
        let resp = admin.respond(&get("/metrics", &[&value])).await;
        assert_eq!(resp.status(), 200, "{value}");
    }
}

#[tokio::test]
async fn two_authorization_fields_are_refused_even_if_one_is_right() {
    let admin = admin(Some(TOKEN));
    let right = format!("Bearer {TOKEN}");
    let resp = admin
        .respond(&get("/metrics", &[&right, "Bearer other"]))
        .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn probes_need_no_token() {
    let admin = admin(Some(TOKEN));
    assert_eq!(admin.respond(&get("/healthz", &[])).await.status(), 200);
    // Ready or not, never 401: no upstream here, so ready.
    assert_eq!(admin.respond(&get("/readyz", &[])).await.status(), 200);
}

#[tokio::test]
async fn config_answers_the_redacted_config_with_its_hash_as_etag() {
    use http_body_util::BodyExt;
    let admin = admin(None);
    let resp = admin.respond(&get("/config", &[])).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()[header::ETAG].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(etag, format!("\"{}\"", doc["hash"].as_str().unwrap()));
    assert_eq!(doc["hash"], admin.view.load().config.hash);
    assert_eq!(
        doc["config"]["upstream"][0]["url"],
        "http://127.0.0.1:9/mcp"
    );
}

#[tokio::test]
async fn config_reload_takes_only_post_and_the_token() {
    let admin = admin(Some(TOKEN));
    let post = |authorization: &[&str]| {
        let mut req = get("/config/reload", authorization);
        *req.method_mut() = Method::POST;
        req
    };
    assert_eq!(admin.respond(&post(&[])).await.status(), 401);
    let bearer = format!("Bearer {TOKEN}");
    let resp = admin
        .respond(&get("/config/reload", &[bearer.as_str()]))
        .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()[header::ALLOW], "POST");
    // Without a file to read again (no reloader): 409, saying so.
    let resp = admin.respond(&post(&[bearer.as_str()])).await;
    assert_eq!(resp.status(), 409);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["result"], "error");
    assert!(
        doc["error"].as_str().unwrap().contains("without --config"),
        "{doc}"
    );
}
