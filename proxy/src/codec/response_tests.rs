use super::*;
use http::{HeaderValue, Response};

fn encode(
    status: u16,
    headers: &[(&str, &str)],
    answering: Answering,
    body: BodyShape,
) -> (String, ResponseFraming, bool) {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (parts, ()) = response.into_parts();
    let mut out = Vec::new();
    let (framing, keep_alive) = encode_response_head(&mut out, &parts, answering, body);
    (String::from_utf8(out).unwrap(), framing, keep_alive)
}

const GET_11: Answering = Answering {
    head: false,
    version: Version::HTTP_11,
    keep_alive: true,
};
const UNKNOWN: BodyShape = BodyShape {
    end_stream: false,
    exact: None,
};

fn exact(n: u64) -> BodyShape {
    BodyShape {
        end_stream: n == 0,
        exact: Some(n),
    }
}

#[test]
fn a_declared_length_is_kept_and_a_date_added() {
    let (head, framing, keep) = encode(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "75"),
        ],
        GET_11,
        UNKNOWN,
    );
    assert_eq!(framing, ResponseFraming::Length(75));
    assert!(keep);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: "),
        "{head}"
    );
    assert!(
        head.ends_with(" GMT\r\ncontent-length: 75\r\n\r\n"),
        "{head}"
    );
    assert_eq!(head.matches("content-length").count(), 1);
}

#[test]
fn the_body_decides_without_a_declared_length() {
    assert_eq!(
        encode(200, &[], GET_11, exact(5)).1,
        ResponseFraming::Length(5)
    );
    let (head, framing, _) = encode(404, &[], GET_11, exact(0));
    assert_eq!(framing, ResponseFraming::Length(0));
    assert!(head.contains("content-length: 0\r\n"), "{head}");
    let (head, framing, keep) = encode(200, &[("transfer-encoding", "gzip")], GET_11, UNKNOWN);
    assert_eq!(framing, ResponseFraming::Chunked);
    assert!(keep);
    assert!(
        head.contains("transfer-encoding: chunked\r\n") && !head.contains("gzip"),
        "{head}"
    );
}

#[test]
fn an_http_1_0_client_gets_close_delimited_or_keep_alive_answers() {
    let old = Answering {
        version: Version::HTTP_10,
        keep_alive: true,
        ..GET_11
    };
    let (head, framing, keep) = encode(200, &[], old, UNKNOWN);
    assert_eq!((framing, keep), (ResponseFraming::Close, false));
    assert!(head.contains("connection: close\r\n"), "{head}");
    let (head, framing, keep) = encode(200, &[], old, exact(3));
    assert_eq!((framing, keep), (ResponseFraming::Length(3), true));
    assert!(head.contains("connection: keep-alive\r\n"), "{head}");
}

#[test]
fn bodiless_answers_send_no_body_and_keep_the_lengths_rfc_9110_allows() {
    let head_request = Answering {
        head: true,
        ..GET_11
    };
    let (head, framing, _) = encode(200, &[("content-length", "42")], head_request, UNKNOWN);
    assert_eq!(framing, ResponseFraming::None);
    assert!(head.contains("content-length: 42\r\n"), "{head}");
    let (head, framing, _) = encode(204, &[("content-length", "0")], GET_11, exact(0));
    assert_eq!(framing, ResponseFraming::None);
    assert!(!head.contains("content-length"), "{head}");
    let (head, _, _) = encode(304, &[("content-length", "42")], GET_11, UNKNOWN);
    assert!(head.contains("content-length: 42\r\n"), "{head}");
}

#[test]
fn connection_fields_are_the_servers_own() {
    let (head, _, keep) = encode(200, &[("connection", "close")], GET_11, exact(1));
    assert!(!keep, "the answer asked to close");
    assert_eq!(head.matches("connection").count(), 1, "{head}");
    let closing = Answering {
        keep_alive: false,
        ..GET_11
    };
    let (head, _, keep) = encode(
        200,
        &[("date", "Mon, 01 Jan 2024 00:00:00 GMT")],
        closing,
        exact(1),
    );
    assert!(!keep);
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert_eq!(
        head.matches("date:").count(),
        1,
        "an answer's own Date is kept: {head}"
    );
}

#[test]
fn the_date_is_an_imf_fixdate() {
    let mut seen = Vec::new();
    with_date(|d| seen.extend_from_slice(d));
    let text = String::from_utf8(seen).unwrap();
    assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
}
