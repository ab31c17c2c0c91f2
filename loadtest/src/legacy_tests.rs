#![allow(clippy::unwrap_used)]

use super::*;

fn base() -> http::Uri {
    "http://127.0.0.1:8000/legacy/sse".parse().unwrap()
}

#[test]
fn an_absolute_path_endpoint_resolves_on_the_streams_origin() {
    let uri = resolve(&base(), "/legacy/messages?sessionId=abc").unwrap();
    assert_eq!(
        uri.to_string(),
        "http://127.0.0.1:8000/legacy/messages?sessionId=abc"
    );
}

#[test]
fn a_relative_endpoint_resolves_against_the_stream_url() {
    let uri = resolve(&base(), "messages?sessionId=abc").unwrap();
    assert_eq!(
        uri.to_string(),
        "http://127.0.0.1:8000/legacy/messages?sessionId=abc"
    );
    let uri = resolve(&base(), "http://127.0.0.1:8000/m?s=1").unwrap();
    assert_eq!(uri.to_string(), "http://127.0.0.1:8000/m?s=1");
}

#[test]
fn an_endpoint_on_another_origin_is_refused() {
    let err = resolve(&base(), "http://evil.example/messages").unwrap_err();
    assert!(err.starts_with("bad_endpoint"), "{err}");
    assert!(resolve(&base(), "http://127.0.0.1:9999/messages").is_err());
}
