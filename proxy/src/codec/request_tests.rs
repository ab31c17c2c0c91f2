use super::*;
use crate::error::ProxyError;
use proptest::prelude::*;

fn parse(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    parse_request_head(&mut BytesMut::from(raw))
}

fn head(raw: &str) -> RequestHead {
    parse(raw.as_bytes()).unwrap().expect("complete head")
}

fn refusal(raw: &str) -> (u16, String) {
    let err = ProxyError::from(parse(raw.as_bytes()).unwrap_err());
    (err.status().as_u16(), err.to_string())
}

#[test]
fn a_post_with_a_length_is_parsed_and_consumed_up_to_its_body() {
    let mut buf = BytesMut::from(
        &b"POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-Two: 1\r\nx-two: 2\r\n\r\n{}"[..],
    );
    let h = parse_request_head(&mut buf).unwrap().unwrap();
    assert_eq!(h.parts.method, Method::POST);
    assert_eq!(h.parts.uri, "/mcp?x=1");
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers["host"], "a");
    assert_eq!(h.parts.headers.get_all("x-two").iter().count(), 2);
    assert_eq!(h.framing, BodyFraming::Length(2));
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(&buf[..], b"{}", "the body stays in the buffer");
}

#[test]
fn an_incomplete_head_waits_and_leading_empty_lines_are_skipped() {
    assert!(
        parse(b"GET /mcp HTTP/1.1\r\nHost: a\r\n")
            .unwrap()
            .is_none()
    );
    assert!(parse(b"").unwrap().is_none());
    let h = head("\r\nGET /mcp HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::Empty);
}

#[test]
fn absolute_form_is_accepted_when_its_authority_is_the_host() {
    let h = head("GET http://a/mcp HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.parts.uri.path(), "/mcp");
    let h = head("GET HTTPS://Mcp.Example:8443/mcp HTTP/1.1\r\nHost: mcp.example:8443\r\n\r\n");
    assert_eq!(h.parts.uri.path(), "/mcp");
    // HTTP/1.0 needs no Host; the authority is then what allowed_hosts checks.
    head("POST http://a/mcp HTTP/1.0\r\n\r\n");
}

#[test]
fn absolute_form_whose_authority_differs_from_host_is_refused() {
    for raw in [
        "POST http://evil/mcp HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST http://a:8080/mcp HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST http://user@a/mcp HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST ftp://a/mcp HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}: {message}");
        assert!(message.contains("request target"), "{raw:?}: {message}");
    }
    let (_, message) = refusal("POST http://evil/mcp HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        message.contains("`evil` differs from Host `a`"),
        "{message}"
    );
}

#[test]
fn authority_and_asterisk_form_targets_are_refused() {
    for raw in [
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}: {message}");
        assert!(message.contains("-form request target"), "{message}");
    }
}

#[test]
fn a_missing_host_in_http_1_1_or_two_hosts_are_refused() {
    let (status, message) = refusal("POST /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 400);
    assert!(message.contains("no Host"), "{message}");
    for raw in [
        "POST /mcp HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST /mcp HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "POST /mcp HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400);
        assert!(message.contains("more than one Host"), "{message}");
    }
    assert_eq!(
        head("GET /mcp HTTP/1.0\r\n\r\n").framing,
        BodyFraming::Empty
    );
}

#[test]
fn transfer_encoding_must_be_exactly_chunked() {
    for value in ["chunked", "Chunked", " CHUNKED\t"] {
        let h = head(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:{value}\r\n\r\n"
        ));
        assert_eq!(h.framing, BodyFraming::Chunked, "{value:?}");
    }
}

#[test]
fn duplicated_or_malformed_chunked_is_refused_with_400() {
    for te in [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: ,chunked\r\n",
        "Transfer-Encoding: chunked;x=1\r\n",
        "Transfer-Encoding: \r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
        "Transfer-Encoding: chunk ed\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n");
        let (status, message) = refusal(&raw);
        assert_eq!(status, 400, "{te:?}: {message}");
        assert!(message.contains("chunked"), "{te:?}: {message}");
    }
}

#[test]
fn other_transfer_codings_are_refused_with_501() {
    for (te, coding) in [
        ("Transfer-Encoding: gzip, chunked\r\n", "gzip"),
        ("Transfer-Encoding: identity\r\n", "identity"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x-custom\r\n",
            "x-custom",
        ),
        ("Transfer-Encoding: chunked, gzip\r\n", "gzip"),
        ("Transfer-Encoding: deflate;q=1, chunked\r\n", "deflate"),
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n");
        let err = ProxyError::from(parse(raw.as_bytes()).unwrap_err());
        assert_eq!(err.status().as_u16(), 501, "{te:?}: {err}");
        assert_eq!(err.reason(), "unsupported_transfer_coding");
        assert!(err.to_string().contains(&format!("`{coding}`")), "{err}");
    }
}

#[test]
fn ambiguous_framing_is_refused_with_400() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}: {message}");
    }
}

#[test]
fn content_length_lists_and_repeated_fields_are_refused_even_when_identical() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}: {message}");
        assert!(message.contains("Content-Length"), "{message}");
    }
}

#[test]
fn a_host_that_is_not_an_authority_is_refused() {
    for raw in [
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}: {message}");
        assert!(message.contains("Host"), "{message}");
    }
    for host in [
        "[::1]:8080",
        "localhost",
        "localhost:8080",
        "a.b-c_d~e",
        "127.0.0.1:80",
        "x%41y",
        "a:",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(head(&raw).parts.headers["host"], host);
    }
}

#[test]
fn malformed_heads_are_refused_with_400_naming_the_problem() {
    for raw in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
    ] {
        let (status, message) = refusal(raw);
        assert_eq!(status, 400, "{raw:?}");
        assert!(message.contains("malformed request head"), "{message}");
    }
}

#[test]
fn oversized_heads_are_refused_with_431() {
    let many: String = (0..=MAX_REQUEST_HEADERS)
        .map(|i| format!("x-{i}: v\r\n"))
        .collect();
    let (status, message) = refusal(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"));
    assert_eq!(
        (status, message.as_str()),
        (431, "request head exceeds 100 header fields")
    );
    let long = "a".repeat(MAX_REQUEST_HEAD_BYTES);
    let (status, message) = refusal(&format!("GET / HTTP/1.1\r\nHost: a\r\nx: {long}"));
    assert_eq!(status, 431, "{message}");
    let (status, _) = refusal(&format!("GET / HTTP/1.1\r\nHost: a\r\nx: {long}\r\n\r\n"));
    assert_eq!(status, 431, "a complete head over the limit too");
}

#[test]
fn keep_alive_follows_the_version_and_connection_tokens() {
    assert!(head("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
}

#[test]
fn expect_100_continue_is_noted_and_other_expectations_get_417() {
    assert!(
        head("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(!head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    let (status, message) = refusal("POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n");
    assert_eq!(status, 417);
    assert!(message.contains("teapot"), "{message}");
}

#[test]
fn field_values_are_slices_of_the_read_buffer() {
    let mut buf =
        BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nx-long: 0123456789abcdef\r\n\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let h = parse_request_head(&mut buf).unwrap().unwrap();
    let at = h.parts.headers["x-long"].as_bytes().as_ptr() as usize;
    assert!((start..end).contains(&at), "the value was copied");
}

proptest! {
    #[test]
    fn a_head_split_anywhere_parses_as_the_whole(split in 0usize..90) {
        let raw = b"POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let split = split.min(raw.len());
        let mut buf = BytesMut::from(&raw[..split]);
        let first = parse_request_head(&mut buf).unwrap();
        let h = match first {
            Some(h) => h,
            None => {
                buf.extend_from_slice(&raw[split..]);
                parse_request_head(&mut buf).unwrap().unwrap()
            }
        };
        prop_assert_eq!(h.framing, BodyFraming::Length(2));
        prop_assert_eq!(h.parts.headers.len(), 3);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request_head(&mut BytesMut::from(&bytes[..]));
    }
}
