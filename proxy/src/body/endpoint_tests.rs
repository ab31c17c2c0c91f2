//! Unit and property tests for [`EndpointRewrite`](super::EndpointRewrite) and
//! [`EndpointRewriteBody`](super::EndpointRewriteBody).

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use proptest::prelude::*;
use url::Url;

use super::{EndpointRewrite, EndpointRewriteBody, MAX_HELD};
use crate::body::test_util::{channel_body, chunked_body, collect_all, data, next_data};

fn rewrite(request_url: &str, upstream_prefix: &str, mount: &str) -> EndpointRewrite {
    EndpointRewrite::new(Url::parse(request_url).unwrap(), upstream_prefix, mount)
}

fn legacy() -> EndpointRewrite {
    rewrite("http://127.0.0.1:8000/sse", "/", "/legacy")
}

#[test]
fn absolute_path_endpoint_is_moved_under_the_mount() {
    let mapped = legacy().rewrite("/messages?sessionId=abc");
    assert_eq!(mapped.as_deref(), Some("/legacy/messages?sessionId=abc"));
}

#[test]
fn relative_endpoint_is_resolved_against_the_request_url() {
    assert_eq!(
        legacy().rewrite("messages?x=1").as_deref(),
        Some("/legacy/messages?x=1")
    );
    let nested = rewrite("http://h:1/backend/sse", "/backend", "/x");
    assert_eq!(
        nested.rewrite("messages?x=1").as_deref(),
        Some("/x/messages?x=1")
    );
}

#[test]
fn absolute_same_origin_endpoint_loses_scheme_and_host() {
    let mapped = legacy().rewrite("http://127.0.0.1:8000/messages?sessionId=1");
    assert_eq!(mapped.as_deref(), Some("/legacy/messages?sessionId=1"));
}

#[test]
fn upstream_prefix_is_replaced_by_the_mount() {
    let rw = rewrite("http://10.0.0.2:9000/backend/sse", "/backend", "/x");
    assert_eq!(
        rw.rewrite("/backend/messages?a=1").as_deref(),
        Some("/x/messages?a=1")
    );
    assert_eq!(rw.rewrite("/backend").as_deref(), Some("/x"));
    assert_eq!(rw.rewrite("/backend/").as_deref(), Some("/x/"));
}

#[test]
fn prefixes_are_normalised_and_joined_with_one_slash() {
    let rw = rewrite("http://h/backend/sse", "backend/", "/x/");
    assert_eq!(
        rw.rewrite("/backend/messages").as_deref(),
        Some("/x/messages")
    );
    let root_mount = rewrite("http://h/sse", "/", "/");
    assert_eq!(
        root_mount.rewrite("/messages?s=1").as_deref(),
        Some("/messages?s=1")
    );
    let to_root = rewrite("http://h/backend/sse", "/backend", "");
    assert_eq!(to_root.rewrite("/backend").as_deref(), Some("/"));
}

#[test]
fn trailing_slash_and_query_are_kept_for_python_style_endpoints() {
    let mapped = legacy().rewrite("/messages/?session_id=5f2c");
    assert_eq!(mapped.as_deref(), Some("/legacy/messages/?session_id=5f2c"));
}

#[test]
fn paths_outside_the_upstream_prefix_are_not_mapped() {
    let rw = rewrite("http://h/backend/sse", "/backend", "/x");
    assert_eq!(
        rw.rewrite("/backend2/messages"),
        None,
        "prefix must match whole segments"
    );
    assert_eq!(rw.rewrite("/other/messages"), None);
}

#[test]
fn cross_origin_endpoints_are_not_mapped() {
    let rw = legacy();
    assert_eq!(
        rw.rewrite("http://127.0.0.1:8001/messages"),
        None,
        "other port"
    );
    assert_eq!(
        rw.rewrite("http://localhost:8000/messages"),
        None,
        "other host"
    );
    assert_eq!(
        rw.rewrite("https://127.0.0.1:8000/messages"),
        None,
        "other scheme"
    );
    assert_eq!(
        rw.rewrite("//evil.example/messages"),
        None,
        "scheme-relative"
    );
}

async fn run(rewrite: EndpointRewrite, chunks: Vec<Bytes>) -> String {
    let (bytes, _) = collect_all(EndpointRewriteBody::new(chunked_body(chunks), rewrite)).await;
    String::from_utf8(bytes).unwrap()
}

fn one_chunk(stream: &str) -> Vec<Bytes> {
    vec![Bytes::from(stream.to_owned())]
}

#[tokio::test]
async fn endpoint_data_is_rewritten_and_every_other_line_kept() {
    let input = ": hello\nid: 7\nevent: endpoint\nretry: 3000\ndata: /messages?sessionId=abc\n\n\
                 event: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n";
    let expected = ": hello\nid: 7\nevent: endpoint\nretry: 3000\ndata: /legacy/messages?sessionId=abc\n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n";
    assert_eq!(run(legacy(), one_chunk(input)).await, expected);
}

#[tokio::test]
async fn data_without_space_and_crlf_or_cr_endings_are_preserved() {
    let cases = [
        (
            "event:endpoint\r\ndata:/m?s=1\r\n\r\n",
            "event:endpoint\r\ndata:/legacy/m?s=1\r\n\r\n",
        ),
        (
            "event: endpoint\rdata: /m\r\r",
            "event: endpoint\rdata: /legacy/m\r\r",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(run(legacy(), one_chunk(input)).await, expected);
    }
}

#[tokio::test]
async fn events_before_the_endpoint_are_forwarded_untouched_and_without_waiting() {
    let (tx, inner) = channel_body();
    let mut body = EndpointRewriteBody::new(inner, legacy());
    tx.send(data("retry: 3000\n\n: ping\n\nevent: endp"))
        .unwrap();
    let first = body
        .frame()
        .now_or_never()
        .expect("complete events must not wait");
    let first = first.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(b"retry: 3000\n\n: ping\n\n"));

    tx.send(data("oint\ndata: /messages?s=1\n")).unwrap();
    assert!(
        body.frame().now_or_never().is_none(),
        "incomplete endpoint event is held"
    );
    tx.send(data("\nevent: message\n")).unwrap();
    let out = next_data(&mut body).await;
    assert_eq!(
        out,
        Bytes::from_static(b"event: endpoint\ndata: /legacy/messages?s=1\n\nevent: message\n")
    );
}

#[tokio::test]
async fn only_the_first_endpoint_event_is_rewritten_then_frames_pass_zero_copy() {
    let (tx, inner) = channel_body();
    let mut body = EndpointRewriteBody::new(inner, legacy());
    tx.send(data("event: endpoint\ndata: /messages\n\n"))
        .unwrap();
    assert_eq!(
        next_data(&mut body).await,
        Bytes::from_static(b"event: endpoint\ndata: /legacy/messages\n\n")
    );

    let later = Bytes::from_static(b"event: endpoint\ndata: /messages\n\n");
    tx.send(Ok(Frame::data(later.clone()))).unwrap();
    let forwarded = next_data(&mut body).await;
    assert_eq!(
        forwarded.as_ptr(),
        later.as_ptr(),
        "passthrough must not copy"
    );
    assert_eq!(body.size_hint().exact(), None);
}

#[tokio::test]
async fn cross_origin_endpoint_event_is_forwarded_unchanged() {
    let input = "event: endpoint\ndata: http://other.example/messages?s=1\n\n";
    assert_eq!(run(legacy(), one_chunk(input)).await, input);
}

#[tokio::test]
async fn gives_up_after_64_kib_without_an_endpoint_event() {
    // A block that grows past the limit before its blank line arrives, then an endpoint event that
    // must stay untouched because scanning has stopped.
    let big = format!(": {}\n: end\n\n", "x".repeat(MAX_HELD + 8192));
    let input = format!("{big}event: endpoint\ndata: /messages\n\n");
    let chunks: Vec<Bytes> = input
        .as_bytes()
        .chunks(4096)
        .map(Bytes::copy_from_slice)
        .collect();
    let output = run(legacy(), chunks).await;
    // Compare without printing 70 KiB on failure.
    assert!(
        output == input,
        "stream was modified; tail: {:?}",
        &output[output.len() - 60..]
    );

    // Just under the limit the endpoint event is still found and rewritten.
    let small = format!(": {}\n\n", "x".repeat(MAX_HELD - 100));
    let input = format!("{small}event: endpoint\ndata: /messages\n\n");
    let chunks: Vec<Bytes> = input
        .as_bytes()
        .chunks(4096)
        .map(Bytes::copy_from_slice)
        .collect();
    let output = run(legacy(), chunks).await;
    assert!(output.ends_with("\n\nevent: endpoint\ndata: /legacy/messages\n\n"));
}

#[tokio::test]
async fn stream_whose_first_event_is_not_endpoint_is_not_legacy_and_passes_unchanged() {
    // A Streamable HTTP GET stream (CRLF line endings, as the Python SDK writes them): once its first
    // real event is seen, scanning stops and nothing is held back, not even the LF of a CRLF.
    let (tx, inner) = channel_body();
    let mut body = EndpointRewriteBody::new(inner, legacy());
    tx.send(data("id: 1\r\nevent: message\r\ndata: {}\r\n\r\n"))
        .unwrap();
    let first = body
        .frame()
        .now_or_never()
        .expect("complete event must not wait");
    assert_eq!(
        first.unwrap().unwrap().into_data().unwrap(),
        Bytes::from_static(b"id: 1\r\nevent: message\r\ndata: {}\r\n\r\n")
    );
    tx.send(data("event: endpoint\ndata: /messages\n\n"))
        .unwrap();
    assert_eq!(
        next_data(&mut body).await,
        Bytes::from_static(b"event: endpoint\ndata: /messages\n\n")
    );
}

#[tokio::test]
async fn held_bytes_are_flushed_when_the_stream_ends_or_trailers_arrive() {
    assert_eq!(
        run(legacy(), one_chunk("event: endpoint\ndata: /m")).await,
        "event: endpoint\ndata: /m"
    );

    let (tx, inner) = channel_body();
    let mut body = EndpointRewriteBody::new(inner, legacy());
    tx.send(data("event: endpoint\n")).unwrap();
    tx.send(Ok(Frame::trailers(HeaderMap::new()))).unwrap();
    drop(tx);
    assert_eq!(
        next_data(&mut body).await,
        Bytes::from_static(b"event: endpoint\n")
    );
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
}

#[tokio::test]
async fn upstream_errors_are_passed_on() {
    let (tx, inner) = channel_body();
    let mut body = EndpointRewriteBody::new(inner, legacy());
    tx.send(Err("reset".into())).unwrap();
    assert_eq!(
        body.frame().await.unwrap().unwrap_err().to_string(),
        "reset"
    );
}

/// One SSE event built from `lines`, each ended with `eol`, plus the blank line.
fn event(lines: &[String], eol: &str) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push_str(eol);
    }
    out.push_str(eol);
    out
}

fn other_event() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        Just(vec![": ping".to_owned()]),
        Just(vec!["retry: 1000".to_owned()]),
        Just(vec![
            "event: message".to_owned(),
            "data: {\"id\":1,\"result\":{}}".to_owned()
        ]),
        Just(vec![
            "id: 42".to_owned(),
            "data: /messages?sessionId=nope".to_owned()
        ]),
    ]
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Blocks a client does not dispatch, which may precede the endpoint event.
fn undispatched_block() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        Just(vec![": ping".to_owned()]),
        Just(vec!["retry: 1000".to_owned()]),
        Just(vec!["id: 7".to_owned(), ": comment".to_owned()]),
    ]
}

/// (input stream, expected output): comments, then the endpoint event, then any events.
fn stream() -> impl Strategy<Value = (String, String)> {
    let before = prop::collection::vec((undispatched_block(), eol()), 0..3);
    let after = prop::collection::vec((other_event(), eol()), 0..3);
    let endpoint = (any::<bool>(), any::<bool>(), eol(), "[a-z0-9]{1,12}");
    (before, endpoint, after).prop_map(|(before, (space, with_id, eol, session), after)| {
        let mut input = String::new();
        let mut expected = String::new();
        for (lines, eol) in &before {
            input.push_str(&event(lines, eol));
            expected.push_str(&event(lines, eol));
        }
        let sep = if space { ": " } else { ":" };
        let id = with_id.then(|| "id: 0".to_owned());
        let lines = |value: &str| -> Vec<String> {
            let mut lines = vec![format!("event{sep}endpoint")];
            lines.extend(id.clone());
            lines.push(format!("data{sep}{value}"));
            lines
        };
        input.push_str(&event(
            &lines(&format!("/messages?sessionId={session}")),
            eol,
        ));
        expected.push_str(&event(
            &lines(&format!("/legacy/messages?sessionId={session}")),
            eol,
        ));
        for (lines, eol) in &after {
            input.push_str(&event(lines, eol));
            expected.push_str(&event(lines, eol));
        }
        (input, expected)
    })
}

proptest! {
    #[test]
    fn output_is_the_rewritten_stream_however_input_is_split(
        (input, expected) in stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        cuts.dedup();
        let chunks: Vec<Bytes> = cuts
            .windows(2)
            .map(|w| Bytes::copy_from_slice(&input.as_bytes()[w[0]..w[1]]))
            .collect();
        // The test body never waits, so the future completes on its first poll.
        let output = run(legacy(), chunks).now_or_never().expect("test body never pends");
        prop_assert_eq!(output, expected);
    }
}
