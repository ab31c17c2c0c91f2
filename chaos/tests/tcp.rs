//! The TCP fault proxy: each toxic does what Toxiproxy's does, over loopback against a tiny echo
//! server. Real sockets need real time here (tokio's paused clock would jump over the socket
//! waits), so every wait is bounded and derived from the toxic's own attribute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcp_chaos::tcp::api::Registry;
use mcp_chaos::tcp::{Stream, TcpProxy, Toxic, ToxicKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(2);

/// An echo server: writes back what it reads, closes when the client does.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn proxy(seed: u64) -> TcpProxy {
    let up = echo().await;
    TcpProxy::start("p", "127.0.0.1:0", &up.to_string(), seed)
        .await
        .unwrap()
}

async fn connect(p: &TcpProxy) -> TcpStream {
    TcpStream::connect(p.local_addr().await).await.unwrap()
}

/// Sends `data` and reads as many bytes back; the time it took.
async fn round_trip(s: &mut TcpStream, data: &[u8]) -> Duration {
    let start = Instant::now();
    s.write_all(data).await.unwrap();
    let mut back = vec![0; data.len()];
    timeout(BOUND, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, data);
    start.elapsed()
}

/// Sends `data`, closes the write side and reads until EOF (or an error: then what came first).
async fn send_and_drain(p: &TcpProxy, data: &[u8]) -> Vec<u8> {
    let mut s = connect(p).await;
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match timeout(BOUND, s.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => return back,
            Ok(n) => back.extend_from_slice(&buf[..n]),
        }
    }
}

fn down(kind: ToxicKind) -> Toxic {
    Toxic::new(kind, Stream::Downstream)
}

#[tokio::test]
async fn latency_delays_new_data_on_a_live_connection_by_the_configured_amount() {
    let p = proxy(1).await;
    let mut s = connect(&p).await;
    let direct = round_trip(&mut s, b"ping").await;
    p.add_toxic(down(ToxicKind::Latency {
        latency: 150,
        jitter: 20,
    }))
    .unwrap();
    let slowed = round_trip(&mut s, b"ping").await;
    assert!(slowed >= Duration::from_millis(130), "{slowed:?}");
    assert!(
        slowed < direct + Duration::from_millis(150 + 20 + 200),
        "{slowed:?} vs {direct:?}"
    );
    p.remove_toxic("latency_downstream").unwrap();
    let after = round_trip(&mut s, b"ping").await;
    assert!(after < Duration::from_millis(100), "{after:?}");
}

#[tokio::test]
async fn bandwidth_caps_the_throughput_at_the_rate() {
    let p = proxy(1).await;
    // 100 KB/s: 30 KB take 300 ms.
    p.add_toxic(down(ToxicKind::Bandwidth { rate: 100 }))
        .unwrap();
    let mut s = connect(&p).await;
    let took = round_trip(&mut s, &[7; 30_000]).await;
    assert!(took >= Duration::from_millis(280), "{took:?}");
    assert!(took < Duration::from_millis(1_000), "{took:?}");
}

#[tokio::test]
async fn timeout_zero_blackholes_data_until_the_toxic_is_removed() {
    let p = proxy(1).await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"before").await;
    p.add_toxic(down(ToxicKind::Timeout { timeout: 0 }))
        .unwrap();
    s.write_all(b"lost").await.unwrap();
    let mut buf = [0; 16];
    assert!(
        timeout(Duration::from_millis(300), s.read(&mut buf))
            .await
            .is_err(),
        "data got through a blackhole"
    );
    p.remove_toxic("timeout_downstream").unwrap();
    // The connection was kept; the blackholed bytes are gone, new ones flow.
    round_trip(&mut s, b"after").await;
}

#[tokio::test]
async fn timeout_closes_the_connection_after_the_timeout() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::Timeout { timeout: 200 }))
        .unwrap();
    let mut s = connect(&p).await;
    let start = Instant::now();
    s.write_all(b"dropped").await.unwrap();
    let mut buf = [0; 16];
    let n = timeout(BOUND, s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0, "data passed a timeout toxic");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(700), "{took:?}");
}

#[tokio::test]
async fn reset_peer_resets_the_connection_after_the_timeout() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::ResetPeer { timeout: 100 }))
        .unwrap();
    let mut s = connect(&p).await;
    // Data passes until the reset.
    round_trip(&mut s, b"hello").await;
    let mut buf = [0; 16];
    let err = timeout(BOUND, s.read(&mut buf)).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn limit_data_closes_after_exactly_the_limit() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::LimitData { bytes: 1_000 }))
        .unwrap();
    let back = send_and_drain(&p, &[1; 5_000]).await;
    assert_eq!(back.len(), 1_000);
}

#[tokio::test]
async fn slicer_delivers_every_byte_in_several_reads() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::Slicer {
        average_size: 100,
        size_variation: 20,
        delay: 2_000,
    }))
    .unwrap();
    let mut s = connect(&p).await;
    let data: Vec<u8> = (0..2_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&data).await.unwrap();
    let (mut back, mut reads) = (Vec::new(), 0);
    let mut buf = [0; 4096];
    while back.len() < data.len() {
        let n = timeout(BOUND, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0 && n <= 120 * 2, "slice of {n} bytes");
        back.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(back, data);
    assert!(reads >= 5, "{reads} reads");
}

#[tokio::test]
async fn slow_close_delays_the_close() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::SlowClose { delay: 300 }))
        .unwrap();
    let start = Instant::now();
    let back = send_and_drain(&p, b"bye").await;
    let took = start.elapsed();
    assert_eq!(back, b"bye");
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
}

/// Per connection: whether a `limit_data` of 1 byte applied (1 byte back instead of 2).
async fn decisions(p: &TcpProxy, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send_and_drain(p, b"ab").await.len() == 1);
    }
    out
}

#[tokio::test]
async fn toxicity_zero_never_applies_and_one_always_does() {
    let p = proxy(1).await;
    p.add_toxic(down(ToxicKind::LimitData { bytes: 1 }).with_toxicity(0.0))
        .unwrap();
    assert_eq!(decisions(&p, 10).await, vec![false; 10]);
    p.remove_toxic("limit_data_downstream").unwrap();
    p.add_toxic(down(ToxicKind::LimitData { bytes: 1 }))
        .unwrap();
    assert_eq!(decisions(&p, 10).await, vec![true; 10]);
}

#[tokio::test]
async fn the_same_seed_replays_the_same_per_connection_decisions() {
    let toxic = down(ToxicKind::LimitData { bytes: 1 }).with_toxicity(0.5);
    let (a, b) = (proxy(42).await, proxy(42).await);
    a.add_toxic(toxic.clone()).unwrap();
    b.add_toxic(toxic).unwrap();
    let (da, db) = (decisions(&a, 16).await, decisions(&b, 16).await);
    assert_eq!(da, db);
    assert!(da.contains(&true) && da.contains(&false), "{da:?}");
}

#[tokio::test]
async fn a_disabled_proxy_refuses_connections_and_cuts_existing_ones() {
    let p = proxy(1).await;
    let addr = p.local_addr().await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"up").await;
    p.set_enabled(false).await.unwrap();
    let mut buf = [0; 16];
    let cut = timeout(BOUND, s.read(&mut buf)).await.unwrap();
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    assert!(TcpStream::connect(addr).await.is_err());
    p.set_enabled(true).await.unwrap();
    assert_eq!(p.local_addr().await, addr);
    let mut s = connect(&p).await;
    round_trip(&mut s, b"back").await;
}

/// One HTTP/1.1 request to the control API: status and body.
async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut res = String::new();
    timeout(BOUND, s.read_to_string(&mut res))
        .await
        .unwrap()
        .unwrap();
    let status = res[9..12].parse().unwrap();
    let body = res.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn the_control_api_manages_proxies_and_toxics_as_toxiproxy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Registry::new(7).serve(listener));
    let up = echo().await;
    let create = format!(r#"{{"name":"echo","listen":"127.0.0.1:0","upstream":"{up}"}}"#);

    let (st, body) = api(addr, "POST", "/proxies", &create).await;
    assert_eq!(st, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listen: SocketAddr = created["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(created["enabled"], true);
    assert_eq!(api(addr, "POST", "/proxies", &create).await.0, 409);
    let (st, body) = api(addr, "GET", "/proxies", "").await;
    assert_eq!(st, 200);
    assert!(body.contains(r#""echo":{"#), "{body}");

    let toxics = "/proxies/echo/toxics";
    let (st, body) = api(
        addr,
        "POST",
        toxics,
        r#"{"type":"latency","attributes":{"latency":"x"}}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("attributes.latency"), "{body}");
    let (st, body) = api(addr, "POST", toxics, "{").await;
    assert_eq!(st, 400);
    assert!(body.contains("body: invalid JSON"), "{body}");
    let (st, body) = api(addr, "POST", toxics, r#"{"type":"latency","toxicity":2}"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("toxicity"), "{body}");
    let (st, body) = api(addr, "POST", toxics, r#"{"type":"nope"}"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("type: unknown toxic type"), "{body}");

    let latency =
        r#"{"type":"latency","stream":"downstream","attributes":{"latency":40,"jitter":0}}"#;
    let (st, body) = api(addr, "POST", toxics, latency).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""name":"latency_downstream""#), "{body}");
    assert_eq!(api(addr, "POST", toxics, latency).await.0, 409);
    let (st, body) = api(addr, "GET", toxics, "").await;
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let one = "/proxies/echo/toxics/latency_downstream";
    let (st, body) = api(addr, "POST", one, r#"{"attributes":{"latency":5}}"#).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""latency":5"#), "{body}");
    assert_eq!(api(addr, "DELETE", one, "").await.0, 204);
    assert_eq!(api(addr, "DELETE", one, "").await.0, 404);

    let (st, body) = api(addr, "POST", "/proxies/echo", r#"{"enabled":false}"#).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""enabled":false"#), "{body}");
    assert!(TcpStream::connect(listen).await.is_err());
    let (st, body) = api(addr, "POST", "/proxies/echo", r#"{"enabled":"no"}"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("enabled"), "{body}");
    assert_eq!(api(addr, "POST", "/reset", "").await.0, 204);
    assert!(TcpStream::connect(listen).await.is_ok());

    assert_eq!(api(addr, "GET", "/version", "").await.0, 200);
    let (st, body) = api(
        addr,
        "POST",
        "/proxies",
        r#"{"name":"x","listen":"127.0.0.1:0"}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("upstream: missing"), "{body}");
    assert_eq!(api(addr, "PUT", "/proxies", "").await.0, 405);
    assert_eq!(api(addr, "GET", "/nope", "").await.0, 404);
    assert_eq!(api(addr, "DELETE", "/proxies/echo", "").await.0, 204);
    assert_eq!(api(addr, "GET", "/proxies/echo", "").await.0, 404);
    assert!(TcpStream::connect(listen).await.is_err());
}
