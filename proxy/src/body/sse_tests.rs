//! Unit tests for [`SseBody`](super::SseBody) and its keepalive placement rules.
//!
//! The crate's tokio dependency has no `test-util` feature, so time cannot be paused; the timed tests use
//! short real durations and only assert orderings and outcomes (never exact instants), with generous outer
//! timeouts, so a slow machine makes them slower but not flaky.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::{Instant, timeout};

use super::{KEEPALIVE_EVENT, KEEPALIVE_LINE, SseBody, Tail};
use crate::body::StreamIdleTimeout;
use crate::body::test_util::{channel_body, data, next_data};

const TICK: Duration = Duration::from_millis(20);
const HOUR: Duration = Duration::from_secs(3600);
/// Upper bound for anything a test waits on; reaching it means the behaviour under test is broken.
const GUARD: Duration = Duration::from_secs(10);

fn keepalive_after(bytes: &[&[u8]]) -> Option<&'static [u8]> {
    let mut tail = Tail::default();
    for chunk in bytes {
        tail.push(chunk);
    }
    tail.keepalive()
}

#[test]
fn keepalive_placement_follows_sse_line_grammar() {
    let event: Option<&[u8]> = Some(KEEPALIVE_EVENT);
    let line: Option<&[u8]> = Some(KEEPALIVE_LINE);
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"", event),
        (b"data: a\n\n", event),
        (b"data: a\r\n\r\n", event),
        (b"data: a\r\r", event),
        (b"data: a\r\n\n", event),
        (b"\n", event),
        (b"\r\n", event),
        (b"data: a\n", line),
        (b"data: a\r\n", line),
        (b"id: 1\ndata: a\n", line),
        (b"data: a", None),
        (b"data: a\r", None),
        (b"data: a\r\n\r", None),
        (b": comment", None),
    ];
    for (forwarded, expected) in cases {
        assert_eq!(
            keepalive_after(&[forwarded]),
            *expected,
            "after {:?}",
            String::from_utf8_lossy(forwarded)
        );
    }
}

#[test]
fn keepalive_placement_sees_boundaries_split_across_frames() {
    assert_eq!(
        keepalive_after(&[b"data: a\r", b"\n", b"\r", b"\n"]),
        Some(KEEPALIVE_EVENT)
    );
    assert_eq!(
        keepalive_after(&[b"data: a\r", b"\n"]),
        Some(KEEPALIVE_LINE)
    );
    assert_eq!(
        keepalive_after(&[b"data: a\n", b"", b"\n"]),
        Some(KEEPALIVE_EVENT)
    );
    assert_eq!(keepalive_after(&[b"data: a\n", b"x"]), None);
}

#[tokio::test]
async fn data_frame_is_returned_on_the_poll_it_arrives() {
    let (tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(inner, Some(HOUR), Some(HOUR)));
    assert!(body.frame().now_or_never().is_none(), "nothing sent yet");

    tx.send(data("data: partial")).unwrap();
    let frame = body
        .frame()
        .now_or_never()
        .expect("frame must be ready at once");
    let bytes = frame.unwrap().unwrap().into_data().unwrap();
    assert_eq!(bytes, Bytes::from_static(b"data: partial"));

    tx.send(data("\n\n")).unwrap();
    let frame = body
        .frame()
        .now_or_never()
        .expect("frame must be ready at once");
    assert_eq!(
        frame.unwrap().unwrap().into_data().unwrap(),
        Bytes::from_static(b"\n\n")
    );
}

#[tokio::test]
async fn keepalive_at_start_of_stream_is_a_full_comment_event() {
    let (_tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(inner, Some(TICK), None));
    let bytes = timeout(GUARD, next_data(&mut body)).await.unwrap();
    assert_eq!(bytes, Bytes::from_static(KEEPALIVE_EVENT));
}

#[tokio::test]
async fn keepalive_at_event_boundary_is_a_full_comment_event() {
    for event in ["data: a\n\n", "data: a\r\n\r\n", "data: a\r\r"] {
        let (tx, inner) = channel_body();
        let mut body = Box::pin(SseBody::new(inner, Some(TICK), None));
        tx.send(Ok(Frame::data(Bytes::from(event)))).unwrap();
        assert_eq!(next_data(&mut body).await, Bytes::from(event));
        let bytes = timeout(GUARD, next_data(&mut body)).await.unwrap();
        assert_eq!(
            bytes,
            Bytes::from_static(KEEPALIVE_EVENT),
            "after {event:?}"
        );
    }
}

#[tokio::test]
async fn keepalive_inside_an_event_is_a_comment_line_that_does_not_dispatch() {
    for partial in ["event: message\ndata: a\n", "data: a\r\n"] {
        let (tx, inner) = channel_body();
        let mut body = Box::pin(SseBody::new(inner, Some(TICK), None));
        tx.send(Ok(Frame::data(Bytes::from(partial)))).unwrap();
        assert_eq!(next_data(&mut body).await, Bytes::from(partial));
        let bytes = timeout(GUARD, next_data(&mut body)).await.unwrap();
        assert_eq!(
            bytes,
            Bytes::from_static(KEEPALIVE_LINE),
            "after {partial:?}"
        );
    }
}

#[tokio::test]
async fn no_keepalive_mid_line_or_after_lone_cr_until_the_line_ends() {
    for (partial, rest) in [("data: a", "bc\n\n"), ("data: a\r", "\n\r\n")] {
        let (tx, inner) = channel_body();
        let mut body = Box::pin(SseBody::new(inner, Some(TICK), None));
        tx.send(Ok(Frame::data(Bytes::from(partial)))).unwrap();
        assert_eq!(next_data(&mut body).await, Bytes::from(partial));

        // Many keepalive periods pass while the body is being polled: every tick must be skipped.
        let waited = timeout(TICK * 8, body.frame()).await;
        assert!(
            waited.is_err(),
            "no frame may be emitted mid-line, got {waited:?}"
        );

        tx.send(Ok(Frame::data(Bytes::from(rest)))).unwrap();
        assert_eq!(next_data(&mut body).await, Bytes::from(rest));
        let bytes = timeout(GUARD, next_data(&mut body)).await.unwrap();
        assert_eq!(bytes, Bytes::from_static(KEEPALIVE_EVENT));
    }
}

fn is_idle_timeout(err: &crate::body::BoxError, expected: Duration) -> bool {
    err.downcast_ref::<StreamIdleTimeout>()
        .is_some_and(|StreamIdleTimeout(d)| *d == expected)
}

#[tokio::test]
async fn idle_timeout_yields_error_then_ends() {
    let idle = Duration::from_millis(50);
    let (tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(inner, None, Some(idle)));
    tx.send(data("data: a\n\n")).unwrap();
    assert_eq!(
        next_data(&mut body).await,
        Bytes::from_static(b"data: a\n\n")
    );

    let started = Instant::now();
    let err = timeout(GUARD, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(is_idle_timeout(&err, idle), "unexpected error {err}");
    assert!(started.elapsed() >= idle);
    assert!(body.is_end_stream());
    assert!(
        body.frame().await.is_none(),
        "body must end after the timeout"
    );
    drop(tx);
}

#[tokio::test]
async fn keepalives_do_not_reset_the_idle_timer() {
    let idle = Duration::from_millis(200);
    let (_tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(
        inner,
        Some(Duration::from_millis(10)),
        Some(idle),
    ));
    let started = Instant::now();
    let mut keepalives = 0;
    let outcome = timeout(GUARD, async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    assert_eq!(
                        frame.into_data().unwrap(),
                        Bytes::from_static(KEEPALIVE_EVENT)
                    );
                    keepalives += 1;
                }
                Some(Err(err)) => return err,
                None => panic!("stream ended without an idle timeout"),
            }
        }
    })
    .await
    .expect("keepalives kept the stream alive past its idle timeout");
    assert!(
        is_idle_timeout(&outcome, idle),
        "unexpected error {outcome}"
    );
    assert!(
        keepalives >= 1,
        "keepalives should have been sent while idle"
    );
    assert!(started.elapsed() >= idle);
}

#[tokio::test]
async fn a_stream_that_keeps_sending_never_times_out() {
    let idle = Duration::from_millis(400);
    let (tx, inner) = channel_body();
    let body = SseBody::new(inner, Some(Duration::from_millis(300)), Some(idle));
    let sender = tokio::spawn(async move {
        // 40 frames at 20 ms span twice the idle timeout.
        for _ in 0..40 {
            tx.send(data("data: tick\n\n")).unwrap();
            tokio::time::sleep(TICK).await;
        }
    });
    let collected = timeout(GUARD, Box::pin(body).collect()).await.unwrap();
    let bytes = collected.expect("no idle timeout expected").to_bytes();
    assert_eq!(bytes, Bytes::from("data: tick\n\n".repeat(40)));
    sender.await.unwrap();
}

#[tokio::test]
async fn trailers_and_upstream_errors_pass_through() {
    let (tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(inner, Some(HOUR), Some(HOUR)));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    tx.send(Ok(Frame::trailers(trailers.clone()))).unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_trailers().unwrap(), trailers);

    tx.send(Err("connection reset".into())).unwrap();
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn size_hint_is_inner_hint_only_without_keepalives() {
    let inner = http_body_util::Full::new(Bytes::from_static(b"data: a\n\n"));
    let plain = SseBody::new(inner.clone(), None, Some(HOUR));
    assert_eq!(plain.size_hint().exact(), Some(9));
    let with_keepalive = SseBody::new(inner, Some(HOUR), None);
    assert_eq!(with_keepalive.size_hint().lower(), 9);
    assert_eq!(with_keepalive.size_hint().upper(), None);
}

#[tokio::test]
async fn zero_keepalive_period_disables_keepalives() {
    let (tx, inner) = channel_body();
    let mut body = Box::pin(SseBody::new(inner, Some(Duration::ZERO), None));
    tx.send(data("data: a")).unwrap();
    assert_eq!(next_data(&mut body).await, Bytes::from_static(b"data: a"));
    let waited = timeout(TICK * 3, body.frame()).await;
    assert!(waited.is_err(), "no keepalive expected, got {waited:?}");
}
