use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::*;

const LIMIT: u64 = 1024;

/// Decodes all of `input` fed in pieces of `step` bytes; the data and the trailers.
fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkError> {
    let mut decoder = RequestChunked::new(LIMIT);
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

/// The refusal of `input`, fed whole and byte by byte (the same either way).
fn refusal(input: &[u8]) -> ChunkError {
    let whole = dechunk(input, input.len().max(1)).expect_err("refused");
    let bytewise = dechunk(input, 1).expect_err("refused byte by byte");
    assert_eq!(whole, bytewise, "{}", input.escape_ascii());
    whole
}

fn malformed(input: &[u8]) -> &'static str {
    match refusal(input) {
        ChunkError::Malformed(why) => why,
        other => panic!("{}: {other:?}", input.escape_ascii()),
    }
}

#[test]
fn well_formed_chunked_bodies_decode() {
    for step in [1, 2, 7, 1000] {
        let (data, trailers) = dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", step).unwrap();
        assert_eq!(data, b"hello world");
        assert!(trailers.is_none());
    }
    let (data, _) = dechunk(b"A\r\nabcdefghij\r\n0000\r\n\r\n", 1).unwrap();
    assert_eq!(data, b"abcdefghij", "upper-case hex, leading zeros");
    let (data, trailers) = dechunk(b"2\r\nok\r\n0\r\nx-checksum: abc\r\n\r\n", 3).unwrap();
    assert_eq!(data, b"ok");
    assert_eq!(trailers.unwrap()["x-checksum"], "abc");
}

#[test]
fn rfc_chunk_extensions_are_accepted_and_ignored() {
    for line in [
        "5;name\r\n",
        "5;name=v\r\n",
        "5 ; name = v ; other\r\n",
        "5;name=\"quoted ; \\\" value\"\r\n",
        "5\t;a=b;c=\"\"\r\n",
        "5 \r\n",
    ] {
        let input = format!("{line}hello\r\n0\r\n\r\n");
        let (data, _) = dechunk(input.as_bytes(), 1).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(data, b"hello", "{line:?}");
    }
}

#[test]
fn chunk_size_with_leading_space_or_tab_is_refused() {
    assert!(malformed(b" 5\r\nhello\r\n0\r\n\r\n").contains("hex digit"));
    assert!(malformed(b"\t5\r\nhello\r\n0\r\n\r\n").contains("hex digit"));
    assert!(malformed(b"5\r\nhello\r\n 0\r\n\r\n").contains("hex digit"));
}

#[test]
fn chunk_size_that_is_not_plain_hex_is_refused() {
    for input in [
        &b"\r\nhello\r\n0\r\n\r\n"[..],
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"5g\r\nhello\r\n0\r\n\r\n",
    ] {
        refusal(input);
    }
}

#[test]
fn chunk_size_over_16_hex_digits_is_refused() {
    assert!(malformed(b"00000000000000005\r\nhello\r\n0\r\n\r\n").contains("16 hex digits"));
}

#[test]
fn bare_lf_line_ends_are_refused() {
    assert!(malformed(b"5\nhello\r\n0\r\n\r\n").contains("bare LF"));
    assert!(malformed(b"5\r\nhello\r\n0\n\r\n").contains("bare LF"));
    assert!(malformed(b"5;a=b\nhello\r\n0\r\n\r\n").contains("bare LF"));
}

#[test]
fn stray_cr_in_a_chunk_size_line_is_refused() {
    assert!(malformed(b"5\r\r\nhello\r\n0\r\n\r\n").contains("stray CR"));
    assert!(malformed(b"5;a\rb\r\nhello\r\n0\r\n\r\n").contains("stray CR"));
}

#[test]
fn bad_chunk_extension_bytes_are_refused() {
    for line in [
        "5;\r\n",
        "5;=v\r\n",
        "5;a=\r\n",
        "5;a b\r\n",
        "5;a=b c\r\n",
        "5;a=\"unterminated\r\n",
        "5;a=\"bad \u{1} byte\"\r\n",
        "5;a=b\u{0}\r\n",
        "5;a=(b)\r\n",
        "5 x\r\n",
        "5;a,b\r\n",
    ] {
        let input = format!("{line}hello\r\n0\r\n\r\n");
        assert!(
            malformed(input.as_bytes()).contains("extension"),
            "{line:?}"
        );
    }
}

#[test]
fn chunk_extensions_are_bounded_per_body() {
    let ext = format!(";{}", "a".repeat(MAX_CHUNK_LINE - 10));
    let input: String = std::iter::repeat_n(format!("1{ext}\r\nx\r\n"), 6).collect();
    assert!(malformed(format!("{input}0\r\n\r\n").as_bytes()).contains("extension bytes"));
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(MAX_CHUNK_LINE));
    assert!(malformed(long.as_bytes()).contains("too long"));
}

#[test]
fn chunk_data_must_be_followed_by_exactly_crlf() {
    for input in [
        &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
        b"5\r\nhello\r\r\n0\r\n\r\n",
    ] {
        assert!(
            malformed(input).contains("CRLF"),
            "{}",
            input.escape_ascii()
        );
    }
}

#[test]
fn trailers_are_parsed_strictly() {
    for input in [
        &b"0\r\nx: a\n\r\n"[..],
        b"0\r\nx: a\r\n\n",
        b"0\r\nx: a\rb\r\n\r\n",
        b"0\r\nbad field\r\n\r\n",
        b"0\r\nx: a\r\n folded\r\n\r\n",
        b"0\r\n: empty-name\r\n\r\n",
    ] {
        refusal(input);
    }
    let many: String = (0..=MAX_REQUEST_HEADERS)
        .map(|i| format!("h{i}: v\r\n"))
        .collect();
    assert!(malformed(format!("0\r\n{many}\r\n").as_bytes()).contains("too many"));
    let big = format!("0\r\nx: {}\r\n\r\n", "a".repeat(MAX_TRAILER_BYTES));
    assert!(malformed(big.as_bytes()).contains("too large"));
}

#[test]
fn chunk_size_beyond_the_body_limit_is_refused_at_once() {
    // No data follows: refused from the size line alone, not after waiting for 2^64 bytes.
    let mut decoder = RequestChunked::new(LIMIT);
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ChunkError::TooLarge { limit: LIMIT })
    );
    // Together with what came before.
    let mut decoder = RequestChunked::new(LIMIT);
    let mut buf = BytesMut::from(&b"400\r\n"[..]);
    buf.extend_from_slice(&[b'x'; 1024]);
    buf.extend_from_slice(b"\r\n1\r\n");
    assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::Data(_))));
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ChunkError::TooLarge { limit: LIMIT })
    );
    // Exactly the limit is fine.
    let mut decoder = RequestChunked::new(4);
    let mut buf = BytesMut::from(&b"4\r\nabcd\r\n0\r\n\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Data(Bytes::from_static(b"abcd")))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
    assert!(decoder.is_done());
}

#[test]
fn lines_split_across_reads_resume_where_they_stopped() {
    // The decoder remembers how far it searched a size line or the trailers: byte-by-byte
    // arrival decodes the same as one read.
    let input = b"5;a=\"b\"\r\nhello\r\n0\r\nx: 1\r\ny: 2\r\n\r\n";
    for step in 1..input.len() {
        let (data, trailers) = dechunk(input, step).unwrap();
        assert_eq!(data, b"hello", "step {step}");
        let trailers = trailers.unwrap();
        assert_eq!(
            (&trailers["x"], &trailers["y"]),
            (&"1".parse().unwrap(), &"2".parse().unwrap())
        );
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let mut decoder = RequestChunked::new(LIMIT);
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..bytes.len() + 2 {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(_)) => {}
                _ => break,
            }
        }
    }
}
