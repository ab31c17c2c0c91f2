use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::*;
use crate::body::test_util::{channel_body, chunked_body, data};

fn limits(idle_secs: u64, min_rate: u64) -> BodyReadLimits {
    BodyReadLimits {
        idle: Duration::from_secs(idle_secs),
        min_rate,
    }
}

/// The error the body ended with, and when (since `from`).
async fn timed_out<B>(body: &mut B, from: Instant) -> (BodyReadTimeout, Duration)
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    loop {
        match body.frame().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return (
                    body_read_timeout(e.as_ref()).expect("a body read timeout"),
                    from.elapsed(),
                );
            }
            None => panic!("the body ended instead of timing out"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_arriving_times_out_after_the_idle_timeout() {
    let (tx, inner) = channel_body();
    let mut body = ReadTimeoutBody::new(inner, limits(30, 0));
    let from = Instant::now();
    tx.send(data("{\"jsonrpc\"")).unwrap();
    let (timeout, after) = timed_out(&mut body, from).await;
    assert_eq!(timeout.rule, BodyReadRule::Idle);
    assert_eq!(after, Duration::from_secs(30));
    assert!(
        timeout.to_string().contains("listen.body_read_timeout"),
        "{timeout}"
    );
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn each_arrival_restarts_the_idle_timeout() {
    let (tx, inner) = channel_body();
    let mut body = ReadTimeoutBody::new(inner, limits(30, 0));
    let feeder = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            tx.send(data("x")).unwrap();
        }
        // The sender is dropped: the body ends.
    });
    let (bytes, _) = crate::body::test_util::collect_all(&mut body).await;
    assert_eq!(bytes, b"xxxx", "80 s in all, never 30 s without bytes");
    feeder.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_trickle_inside_the_idle_timeout_is_cut_by_the_minimum_rate() {
    let (tx, inner) = channel_body();
    // 30 s of grace plus one second per 100 bytes.
    let mut body = ReadTimeoutBody::new(inner, limits(30, 100));
    let from = Instant::now();
    let _feeder = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if tx.send(data("0123456789")).is_err() {
                return;
            }
        }
    });
    let (timeout, after) = timed_out(&mut body, from).await;
    assert_eq!(timeout.rule, BodyReadRule::MinRate);
    // By t the body earned 30 s + received/100 s: 10 bytes every 10 s earn 0.1 s each, so the
    // allowance runs out just after 30 s, long before the idle timeout would ever fire.
    assert!(
        after > Duration::from_secs(30) && after < Duration::from_secs(31),
        "{after:?}"
    );
    assert!(
        timeout.to_string().contains("listen.body_min_rate"),
        "{timeout}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_arriving_at_the_minimum_rate_is_read_whole() {
    let (tx, inner) = channel_body();
    let mut body = ReadTimeoutBody::new(inner, limits(5, 100));
    tokio::spawn(async move {
        // 100 bytes a second for 60 s: exactly the rate, far past the grace period.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(Ok(Frame::data(Bytes::from(vec![b'a'; 100]))))
                .unwrap();
        }
    });
    let (bytes, _) = crate::body::test_util::collect_all(&mut body).await;
    assert_eq!(bytes.len(), 6000);
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_zero_turns_the_rate_rule_off() {
    let (tx, inner) = channel_body();
    let mut body = ReadTimeoutBody::new(inner, limits(30, 0));
    tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(29)).await;
            tx.send(data("x")).unwrap();
        }
    });
    let (bytes, _) = crate::body::test_util::collect_all(&mut body).await;
    assert_eq!(bytes, b"xxxxxxxxxx");
}

#[tokio::test(start_paused = true)]
async fn a_body_already_read_never_starts_the_clock() {
    let mut body = ReadTimeoutBody::new(chunked_body(["{}", "[]"]), limits(1, 1));
    let (bytes, _) = crate::body::test_util::collect_all(&mut body).await;
    assert_eq!(bytes, b"{}[]");
    assert!(body.clock.is_none(), "no clock read, no timer");
}

#[tokio::test(start_paused = true)]
async fn after_a_timeout_the_body_stays_failed() {
    let (_tx, inner) = channel_body();
    let mut body = ReadTimeoutBody::new(inner, limits(1, 0));
    let _ = timed_out(&mut body, Instant::now()).await;
    assert!(!body.is_end_stream());
    let again = body.frame().await.unwrap().unwrap_err();
    assert!(body_read_timeout(again.as_ref()).is_some());
}
