//! Reading a sidecar's HTTP/1 answers off a raw socket, for the tests that speak bytes (framing,
//! `100 Continue`, closes) where an HTTP client library would hide what matters.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// An answer: status, fields (names lower-cased) in order, and the body by its
/// `content-length`.
pub type Answer = (u16, Vec<(String, String)>, String);

/// One answer read off `stream`, with `buf` holding what was read beyond it (the next pipelined
/// answer). `None` if the connection closes before a complete head.
pub async fn read_answer_buffered(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<Answer> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let fields: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    let length: usize = field(&fields, "content-length").map_or(0, |v| v.parse().unwrap());
    while buf.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(buf.drain(..length).collect()).unwrap();
    Some((status, fields, body))
}

/// One answer read off `stream` (what follows it is dropped).
pub async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> Option<Answer> {
    read_answer_buffered(stream, &mut Vec::new()).await
}

/// The value of the first field called `name` (lower case).
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// True once the peer has closed (reads end of stream) within `within`.
pub async fn closes_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut rest = [0u8; 1024];
    matches!(
        tokio::time::timeout(within, async {
            while stream.read(&mut rest).await.unwrap_or(0) > 0 {}
        })
        .await,
        Ok(())
    )
}
