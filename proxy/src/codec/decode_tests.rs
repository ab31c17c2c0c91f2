use bytes::{Bytes, BytesMut};
use http::{StatusCode, Version};
use proptest::prelude::*;

use super::*;

fn head(raw: &str) -> Result<Option<Head>, DecodeError> {
    parse_head(&mut BytesMut::from(raw), false)
}

fn framing_of(raw: &str) -> (Framing, bool) {
    let h = head(raw).unwrap().unwrap();
    (h.framing, h.keep_alive)
}

#[test]
fn a_content_length_response_is_length_framed_and_reusable() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\nok",
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(h.parts.status, StatusCode::OK);
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers["content-type"], "application/json");
    assert_eq!(h.framing, Framing::Length(2));
    assert!(h.keep_alive);
    assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
}

#[test]
fn an_incomplete_head_asks_for_more() {
    assert!(head("HTTP/1.1 200 OK\r\ncontent-len").unwrap().is_none());
}

#[test]
fn interim_responses_are_skipped() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(h.parts.status, StatusCode::CREATED);
    assert_eq!(h.framing, Framing::Empty);
    assert!(buf.is_empty());
}

#[test]
fn a_101_is_refused() {
    assert!(matches!(
        head("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn responses_without_a_body_are_empty_whatever_their_headers_say() {
    assert_eq!(
        framing_of("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n").0,
        Framing::Empty
    );
    assert_eq!(
        framing_of("HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n").0,
        Framing::Empty
    );
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(
        parse_head(&mut buf, true).unwrap().unwrap().framing,
        Framing::Empty
    );
}

#[test]
fn chunked_wins_over_content_length_and_the_connection_is_not_reused() {
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        (Framing::Chunked, true)
    );
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"),
        (Framing::Chunked, false)
    );
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
        (Framing::Chunked, true)
    );
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
        (Framing::Close, false),
        "not chunked last: read to the end"
    );
}

#[test]
fn an_http10_response_with_transfer_encoding_is_faulty_framing() {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; relayed
    // raw, its chunk lines would reach the client as body bytes (found by the differential test
    // against hyper's client, which refuses it too).
    for te in ["chunked", "gzip, chunked", "chunked, gzip"] {
        let raw =
            format!("HTTP/1.0 200 OK\r\ntransfer-encoding: {te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert!(matches!(head(&raw), Err(DecodeError::Malformed(_))), "{te}");
    }
    // Without a body there is nothing to frame: the field is passed on, as hyper does.
    assert_eq!(
        framing_of("HTTP/1.0 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n").0,
        Framing::Empty
    );
}

#[test]
fn an_overridden_content_length_is_not_passed_on() {
    let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert!(!h.parts.headers.contains_key("content-length"));
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        h.parts.headers["content-length"], "3",
        "a lone length stays"
    );
}

#[test]
fn without_length_the_body_runs_to_the_close() {
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"),
        (Framing::Close, false)
    );
}

#[test]
fn connection_tokens_decide_reuse() {
    assert!(!framing_of("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").1);
    assert!(
        !framing_of("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\ncontent-length: 0\r\n\r\n").1
    );
    assert!(!framing_of("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").1);
    assert!(framing_of("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n").1);
}

#[test]
fn bad_content_lengths_are_malformed() {
    for bad in ["-1", "1 2", "abc", "", "99999999999999999999", "+5"] {
        let raw = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
        assert!(
            matches!(head(&raw), Err(DecodeError::Malformed(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n"),
        Err(DecodeError::Malformed(_))
    ));
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n").0,
        Framing::Length(3),
        "identical repeats are one length"
    );
}

#[test]
fn garbage_and_oversized_heads_are_refused() {
    assert!(matches!(
        head("SSH-2.0-OpenSSH\r\n\r\n"),
        Err(DecodeError::Malformed(_))
    ));
    let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(matches!(head(&big), Err(DecodeError::HeadTooLarge)));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
    assert!(matches!(
        head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
        Err(DecodeError::Malformed(_))
    ));
}

/// Decodes all of `input` fed in pieces of `step` bytes; the data and the trailers.
fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
    let mut decoder = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => data.extend_from_slice(&d),
            Decoded::Trailers(t) => return Ok((data, Some(t))),
            Decoded::Done => return Ok((data, None)),
            Decoded::NeedMore => {
                assert!(fed < input.len(), "decoder wants more than the input has");
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    let (data, trailers) = dechunk(b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1000).unwrap();
    assert_eq!(data, b"hello world");
    assert!(trailers.is_none());
    let (data, trailers) = dechunk(b"2\r\nok\r\n0\r\nx-checksum: abc\r\n\r\n", 3).unwrap();
    assert_eq!(data, b"ok");
    assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    let (data, _) = dechunk(b"A\nabcdefghij\n0\n\n", 1).unwrap();
    assert_eq!(data, b"abcdefghij", "bare LF line ends are accepted");
}

#[test]
fn chunk_data_is_handed_on_before_the_chunk_is_complete() {
    let mut decoder = Chunked::Size;
    let mut buf = BytesMut::from("400\r\ndata: first event\n\n");
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Decoded::Data(Bytes::from_static(b"data: first event\n\n"))
    );
    assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::NeedMore);
}

#[test]
fn malformed_chunks_are_refused() {
    for bad in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"11111111111111111\r\n",
        b"2\r\nabc\r\n",
        b"2\r\nab\r\n0\r\nbad header\r\n\r\n",
    ] {
        assert!(
            matches!(dechunk(bad, 1000), Err(DecodeError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
    assert!(matches!(
        dechunk(long.as_bytes(), 100_000),
        Err(DecodeError::Malformed(_))
    ));
}

fn chunk(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn chunked_decoding_returns_the_data_however_it_is_split(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..300, 1..8),
        step in 1usize..64,
    ) {
        let (decoded, trailers) = dechunk(&chunk(&data, &sizes), step).unwrap();
        prop_assert_eq!(decoded, data);
        prop_assert!(trailers.is_none());
    }

    #[test]
    fn a_head_split_anywhere_parses_the_same(split in 0usize..90) {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nmcp-session-id: abc\r\ncontent-length: 7\r\n\r\n";
        let split = split.min(raw.len());
        let mut buf = BytesMut::from(&raw[..split]);
        let first = parse_head(&mut buf, false).unwrap();
        if split < raw.len() {
            prop_assert!(first.is_none());
            buf.extend_from_slice(&raw[split..]);
        }
        let head = match first { Some(h) => h, None => parse_head(&mut buf, false).unwrap().unwrap() };
        prop_assert_eq!(head.framing, Framing::Length(7));
        prop_assert_eq!(&head.parts.headers["mcp-session-id"], "abc");
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_head(&mut BytesMut::from(&bytes[..]), false);
        let mut decoder = Chunked::Size;
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..64 {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(_)) => {}
                _ => break,
            }
        }
    }
}

#[test]
fn an_http_1_0_response_with_transfer_encoding_is_malformed() {
    // RFC 9112 §6.1: faulty framing. It used to be relayed as a body read to the close.
    for raw in [
        "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.0 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
    ] {
        match head(raw) {
            Err(DecodeError::Malformed(why)) => assert!(why.contains("HTTP/1.0"), "{why}"),
            other => panic!("{raw:?}: {other:?}"),
        }
    }
    // The response side stays lenient where that is safe: HTTP/1.1 codings other than
    // chunked run to the close, and bare LF chunk lines are read (a trusted backend's bytes).
    assert_eq!(
        framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
        (Framing::Close, false)
    );
}
