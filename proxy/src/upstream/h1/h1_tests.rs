//! [`Conn`] against raw TCP backends that write exactly the bytes a test needs.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::body::Decoder;
use super::*;
use crate::body::full;
use crate::codec::decode::{self, Head};

/// A backend that accepts one connection and hands it to `script`.
async fn backend<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    addr
}

async fn conn(addr: std::net::SocketAddr) -> Conn {
    let tcp = TcpStream::connect(addr).await.unwrap();
    Conn::new(tcp.into())
}

/// Reads one request head (and `body_len` more bytes) off `stream`.
async fn read_request(stream: &mut TcpStream, body_len: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "client closed early: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() >= end + 4 + body_len
        {
            return String::from_utf8(got).unwrap();
        }
    }
}

fn post() -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = "http://backend/mcp".parse().unwrap();
    req.headers_mut()
        .insert(http::header::HOST, "backend".parse().unwrap());
    req.into_parts().0
}

fn host() -> HeaderValue {
    HeaderValue::from_static("backend")
}

async fn collect(conn: &mut Conn, decoder: &mut Decoder) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| decoder.poll_frame(conn, cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Sends an empty POST to a backend that answers every request with `answer` and closes; the
/// head and a decoder for its body.
async fn exchange(answer: &'static [u8]) -> (Conn, Head, Decoder) {
    let addr = backend(move |mut s| async move {
        read_request(&mut s, 0).await;
        s.write_all(answer).await.unwrap();
    })
    .await;
    let mut c = conn(addr).await;
    c.write_request(&post(), full(Bytes::new()), &host())
        .await
        .unwrap();
    let head = c.read_head(&Method::POST).await.unwrap();
    let decoder = Decoder::new(head.framing);
    (c, head, decoder)
}

#[tokio::test]
async fn a_post_goes_out_as_one_head_and_body_and_the_answer_comes_back() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let addr = backend(|mut s| async move {
        let req = read_request(&mut s, 7).await;
        let _ = seen_tx.send(req);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            .await
            .unwrap();
    })
    .await;
    let mut c = conn(addr).await;
    c.write_request(&post(), full(Bytes::from_static(b"{\"a\":1}")), &host())
        .await
        .unwrap();
    let head = c.read_head(&Method::POST).await.unwrap();
    assert_eq!(head.parts.status, 200);
    assert!(head.keep_alive);
    let mut decoder = Decoder::new(head.framing);
    assert_eq!(collect(&mut c, &mut decoder).await.unwrap(), b"hello");
    assert_eq!(
        seen_rx.await.unwrap(),
        "POST /mcp HTTP/1.1\r\nhost: backend\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
    );
}

#[tokio::test]
async fn a_streamed_request_body_is_sent_chunked_as_it_comes() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let addr = backend(|mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let _ = seen_tx.send(String::from_utf8(got).unwrap());
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(2);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
    let mut parts = post();
    parts.method = Method::DELETE;
    let mut c = conn(addr).await;
    let writer = tokio::spawn(async move {
        c.write_request(&parts, body, &host()).await.unwrap();
        c
    });
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"abc"))))
        .await
        .unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"defg"))))
        .await
        .unwrap();
    drop(tx);
    let mut c = writer.await.unwrap();
    let head = c.read_head(&Method::DELETE).await.unwrap();
    assert_eq!(head.parts.status, 204);
    assert_eq!(
        seen_rx.await.unwrap(),
        "DELETE /mcp HTTP/1.1\r\nhost: backend\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    );
}

fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn chunked_data_arrives_before_the_backend_finishes_the_body() {
    let (more_tx, more_rx) = oneshot::channel::<()>();
    let addr = backend(|mut s| async move {
        read_request(&mut s, 0).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n13\r\ndata: first event\n\n\r\n")
            .await
            .unwrap();
        // The rest only once the client has the first event.
        more_rx.await.unwrap();
        s.write_all(b"e\r\ndata: second\n\n\r\n0\r\n\r\n").await.unwrap();
    })
    .await;
    let mut c = conn(addr).await;
    c.write_request(&post(), full(Bytes::new()), &host())
        .await
        .unwrap();
    let head = c.read_head(&Method::POST).await.unwrap();
    let mut decoder = Decoder::new(head.framing);
    let first = std::future::poll_fn(|cx| decoder.poll_frame(&mut c, cx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: first event\n\n");
    more_tx.send(()).unwrap();
    assert_eq!(
        collect(&mut c, &mut decoder).await.unwrap(),
        b"data: second\n\n"
    );
    assert!(decoder.is_done());
}

#[tokio::test]
async fn a_body_without_length_runs_to_the_close() {
    let (mut c, head, mut decoder) = exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
    assert!(!head.keep_alive);
    assert_eq!(
        collect(&mut c, &mut decoder).await.unwrap(),
        b"until the end"
    );
}

#[tokio::test]
async fn a_backend_that_closes_early_is_an_error_not_a_short_body() {
    let (mut c, _, mut decoder) =
        exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this").await;
    assert!(matches!(
        collect(&mut c, &mut decoder).await,
        Err(ClientError::Incomplete)
    ));
}

#[tokio::test]
async fn a_backend_that_closes_without_answering_says_so() {
    let addr = backend(|mut s| async move {
        read_request(&mut s, 0).await;
    })
    .await;
    let mut c = conn(addr).await;
    c.write_request(&post(), full(Bytes::new()), &host())
        .await
        .unwrap();
    assert!(matches!(
        c.read_head(&Method::POST).await,
        Err(ClientError::ClosedBeforeResponse)
    ));
}

#[tokio::test]
async fn an_idle_connection_is_reusable_until_the_backend_closes_or_writes() {
    let (close_tx, close_rx) = oneshot::channel::<&'static [u8]>();
    let addr = backend(|mut s| async move {
        let last = close_rx.await.unwrap();
        s.write_all(last).await.unwrap();
    })
    .await;
    let mut c = conn(addr).await;
    assert!(c.is_reusable(), "open and quiet");
    close_tx
        .send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        .unwrap();
    // Let the backend write and the runtime see the bytes arrive (each yield polls the driver).
    for _ in 0..10_000 {
        if !c.is_reusable() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("unasked bytes did not make the connection unusable");
}

#[tokio::test]
async fn large_body_frames_go_out_whole_in_both_framings() {
    let big = Bytes::from(vec![b'z'; INLINE_BODY_BYTES * 3]);
    for chunked in [false, true] {
        let (seen_tx, seen_rx) = oneshot::channel::<Vec<u8>>();
        let expect_len = big.len();
        let addr = backend(move |mut s| async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
                let done = if chunked {
                    got.ends_with(b"0\r\n\r\n")
                } else {
                    got.len() >= expect_len
                        && got
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .is_some_and(|end| got.len() - end - 4 >= expect_len)
                };
                if done {
                    break;
                }
            }
            let _ = seen_tx.send(got);
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let body = if chunked {
            // Unknown length: two frames from a stream, the first larger than the inline limit.
            let frames = vec![
                Ok::<_, BoxError>(http_body::Frame::data(big.clone())),
                Ok(http_body::Frame::data(Bytes::from_static(b"tail"))),
            ];
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
        } else {
            full(big.clone())
        };
        let mut c = conn(addr).await;
        c.write_request(&post(), body, &host()).await.unwrap();
        assert_eq!(c.read_head(&Method::POST).await.unwrap().parts.status, 204);
        let raw = seen_rx.await.unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut rest = bytes::BytesMut::from(&raw[end..]);
        let sent = if chunked {
            let mut decoder = decode::Chunked::Size;
            let mut out = Vec::new();
            while let decode::Decoded::Data(d) = decoder.decode(&mut rest).unwrap() {
                out.extend_from_slice(&d);
            }
            let mut want = big.to_vec();
            want.extend_from_slice(b"tail");
            assert_eq!(out, want);
            out.len()
        } else {
            assert_eq!(&rest[..], &big[..]);
            rest.len()
        };
        assert!(sent >= big.len(), "chunked={chunked}");
    }
}
