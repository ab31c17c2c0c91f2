//! The library without the sidecar's policies: a service of its own served by the HTTP/1 server
//! leg (as the chaos proxy will), reached through the pooled client leg (as the load generator
//! will). Nothing here touches auth, limits, breakers or the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use mcp_sidecar::body::{BoxError, ProxyBody, full};
use mcp_sidecar::codec::request::HeadError;
use mcp_sidecar::config::Config;
use mcp_sidecar::conn_info::ConnInfo;
use mcp_sidecar::downstream::drain::Drain;
use mcp_sidecar::downstream::{self, Handler};
use mcp_sidecar::upstream::build_client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers `<method> <path> <body length> from <client ip>`; refuses a bad head with 400 and
/// the codec's reason.
#[derive(Debug)]
struct Echo;

impl Handler for Echo {
    async fn call<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let len = match body.collect().await {
            Ok(bytes) => bytes.to_bytes().len(),
            Err(_) => return text(StatusCode::BAD_REQUEST, "body failed".into()),
        };
        text(
            StatusCode::OK,
            format!(
                "{} {} {len} from {}",
                parts.method,
                parts.uri.path(),
                conn.remote.ip()
            ),
        )
    }

    fn refuse(&self, err: HeadError) -> Response<ProxyBody> {
        text(StatusCode::BAD_REQUEST, format!("refused: {err}"))
    }

    fn max_body_bytes(&self) -> u64 {
        1024
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}

/// Serves `Echo` on a loopback port with the HTTP/1 server leg.
async fn serve_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(Echo);
    tokio::spawn(async move {
        // Never drained: the connections end with the test's runtime.
        let drain = Drain::new();
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                return;
            };
            let conn = ConnInfo::new(remote, false);
            tokio::spawn(downstream::serve(
                stream,
                BytesMut::new(),
                handler.clone(),
                conn,
                Duration::from_secs(5),
                drain.watch(),
            ));
        }
    });
    addr
}

#[tokio::test]
async fn the_server_leg_serves_a_handler_of_its_own_to_the_pooled_client_leg() {
    let addr = serve_echo().await;
    let toml = format!("[[upstream]]\nname = \"echo\"\nurl = \"http://{addr}/\"\n");
    let config = Config::from_toml_with_env(&toml, &|_| None).unwrap();
    let target: http::Uri = format!("http://{addr}").parse().unwrap();
    let pool = build_client(&config.upstream[0], target).unwrap();
    for (i, body) in ["", "{\"jsonrpc\":\"2.0\"}"].iter().enumerate() {
        let mut req = Request::new(full(Bytes::from_static(body.as_bytes())));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = format!("http://{addr}/call/{i}").parse().unwrap();
        let response = pool.request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            text,
            format!("POST /call/{i} {} from 127.0.0.1", body.len()).as_bytes()
        );
    }
    // Both requests went over one kept-alive connection, back in the pool now.
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn a_head_the_codec_refuses_is_answered_by_the_handler() {
    let addr = serve_echo().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection closes after the refusal")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.ends_with("refused: unsupported transfer coding `gzip`"),
        "{answer}"
    );
}
