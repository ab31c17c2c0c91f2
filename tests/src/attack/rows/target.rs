//! Rows about the request line, early refusals with smuggled bodies, paths, `Host`, and the
//! rest of issue 14's findings.

use super::{PING, chunked, forwarded, ping_chunk, ping_size, post, smuggled};
use crate::attack::Row;

/// Request-line oddities.
pub(super) fn request_line() -> Vec<Row> {
    let long_path = format!("/public/{}", "a".repeat(70 * 1024));
    vec![
        Row::new(
            "double_space_in_the_request_line_is_400",
            post("/public", "", PING).replacen("POST /public", "POST  /public", 1),
        )
        .status(400)
        .closes(),
        Row::new(
            "tab_in_the_request_line_is_400",
            post("/public", "", PING).replacen("POST /public", "POST\t/public", 1),
        )
        .status(400)
        .closes(),
        Row::new(
            "lowercase_method_is_not_post_405",
            post("/public", "", PING).replacen("POST", "post", 1),
        )
        .status(405),
        Row::new(
            "http_1_2_is_refused",
            post("/public", "", PING).replacen("HTTP/1.1", "HTTP/1.2", 1),
        )
        .status_in(&[400, 505])
        .closes(),
        Row::new(
            "http_2_0_request_line_on_http1_is_refused",
            post("/public", "", PING).replacen("HTTP/1.1", "HTTP/2.0", 1),
        )
        .status_in(&[400, 505])
        .closes(),
        Row::new("http_0_9_request_line_is_400", "GET /public\r\n\r\n")
            .status(400)
            .closes(),
        Row::new(
            "absolute_form_with_another_authority_is_refused",
            post("http://evil.example/public", "", PING),
        )
        .status_in(&[400, 421])
        .finding(6),
        Row::new(
            "asterisk_form_is_refused",
            "OPTIONS * HTTP/1.1\r\nhost: localhost\r\n\r\n",
        )
        .status_in(&[400, 404]),
        Row::new(
            "request_line_beyond_the_head_limit_is_431",
            format!("GET {long_path} HTTP/1.1\r\nhost: localhost\r\n\r\n"),
        )
        .status(431)
        .closes(),
    ]
}

/// Requests refused from their head, their body carrying a second request: the body is never
/// read as a request.
pub(super) fn early_refusals() -> Vec<Row> {
    let hidden = smuggled();
    vec![
        Row::new(
            "401_with_a_request_smuggled_in_its_body",
            post("/mcp", "", &hidden),
        )
        .status(401)
        .stays_open(),
        Row::new(
            "401_with_a_request_smuggled_in_its_chunks",
            chunked("/mcp", "", &format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len())),
        )
        .status(401)
        .stays_open(),
        Row::new("404_with_a_request_smuggled_in_its_body", post("/nowhere", "", &hidden))
            .status(404)
            .stays_open(),
        Row::new(
            "405_with_a_request_smuggled_in_its_body",
            post("/public", "", &hidden).replacen("POST", "PUT", 1),
        )
        .status(405)
        .stays_open(),
        Row::new(
            "413_followed_by_a_smuggled_request",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5000000\r\n\r\n{hidden}"
            ),
        )
        .status(413)
        .closes(),
        Row::new(
            "400_head_followed_by_a_request_that_is_never_read",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1\r\n\
                 transfer-encoding: chunked\r\n\r\n{hidden}"
            ),
        )
        .status(400)
        .closes(),
        Row::new(
            "401_then_a_pipelined_request_is_answered_in_order",
            format!("{}{}", post("/mcp", "", PING), post("/public", "", PING)),
        )
        .statuses(&[401, 200])
        .stays_open()
        .forwards(forwarded("/public", PING)),
    ]
}

/// Paths a backend could resolve differently from the sidecar (finding 1): with no
/// credential, `/public/..\mcp` reached a Node backend's `/mcp`.
pub(super) fn paths() -> Vec<Row> {
    let p = |name: &'static str, path: &str| {
        Row::new(name, post(path, "", PING)).status(400).finding(1)
    };
    vec![
        p(
            "backslash_dot_dot_out_of_the_public_mount_is_400",
            "/public/..\\mcp",
        ),
        p("backslash_alone_is_400", "/public\\x"),
        p("encoded_dot_dot_is_400", "/public/%2e%2e/mcp"),
        p("uppercase_encoded_dot_dot_is_400", "/public/%2E%2E/mcp"),
        p("half_encoded_dot_dot_is_400", "/public/.%2e/mcp"),
        p("encoded_slash_is_400", "/public/..%2fmcp"),
        p("encoded_slash_after_the_mount_prefix_is_400", "/public%2fx"),
        p("encoded_backslash_is_400", "/public/..%5cmcp"),
        p("double_encoded_dot_dot_is_400", "/public/%252e%252e/mcp"),
        p("encoded_nul_is_400", "/public/%00"),
        p("plain_dot_dot_is_400", "/public/../mcp"),
        p("plain_dot_segment_is_400", "/public/./x"),
    ]
}

/// `Host` (RFC 9112 §3.2) and the allow-list.
pub(super) fn hosts() -> Vec<Row> {
    vec![
        Row::new(
            "two_host_fields_are_400",
            post("/public", "host: localhost\r\n", PING),
        )
        .status(400)
        .finding(6),
        Row::new(
            "missing_host_in_http11_is_400",
            post("/public", "", PING).replace("host: localhost\r\n", ""),
        )
        .status(400)
        .finding(6),
        Row::new(
            "host_with_a_space_is_400",
            post("/public", "", PING).replace("host: localhost", "host: local host"),
        )
        .status(400)
        .finding(6),
        Row::new(
            "host_outside_the_allow_list_is_421",
            post("/public", "", PING).replace("host: localhost", "host: evil.example"),
        )
        .status(421),
    ]
}

/// A `tools/call` body (not idempotent unless configured so).
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

/// HTTP/1.0 answer framed as chunked (faulty per RFC 9112 §6.1).
const HTTP10_CHUNKED: &[u8] = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\
transfer-encoding: chunked\r\n\r\n24\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n0\r\n\r\n";

/// An SSE answer the backend framed by its length.
pub(super) const SSE_WITH_LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
content-length: 62\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n";

/// The rest of issue 14's findings, as far as raw bytes and a capturing backend show them.
/// Findings 3 (body read timeout), 7 (local exhaustion) and 9 (quiet streams) need time or
/// resource pressure and are tested where they are fixed.
pub(super) fn findings() -> Vec<Row> {
    let request = post("/public", "", PING);
    vec![
        Row::new(
            "cors_preflight_to_a_protected_mount_never_reaches_the_backend",
            format!(
                "OPTIONS /mcp?session=1 HTTP/1.1\r\nhost: localhost\r\norigin: http://localhost\r\n\
                 access-control-request-method: POST\r\n\
                 access-control-request-headers: authorization, content-type, mcp-session-id\r\n\
                 mcp-session-id: s1\r\ncontent-length: {}\r\n\r\n{PING}",
                PING.len()
            ),
        )
        .status_in(&[200, 204])
        .finding(2),
        Row::new(
            "options_without_a_credential_that_is_no_preflight_is_401",
            "OPTIONS /mcp HTTP/1.1\r\nhost: localhost\r\n\r\n",
        )
        .status(401)
        .finding(2),
        Row::new(
            "expect_continue_without_a_credential_gets_401_never_100",
            format!(
                "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                 expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
                PING.len()
            ),
        )
        .status(401)
        .closes()
        .finding(4),
        Row::new("http1_post_split_after_p_is_http1", request.clone())
            .split_after(1)
            .stays_open()
            .forwards(forwarded("/public", PING))
            .finding(5),
        Row::new("http1_post_split_after_pr_is_http1", request.clone())
            .split_after(2)
            .stays_open()
            .forwards(forwarded("/public", PING))
            .finding(5),
        // The same bytes as whole-segment rows above, so the same answers: which parser reads
        // a connection must not depend on where TCP cut it.
        Row::new(
            "chunk_size_with_a_leading_space_split_after_p_is_400",
            chunked("/public", "", &ping_chunk(&format!(" {}\r\n", ping_size()))),
        )
        .split_after(1)
        .status(400)
        .closes()
        .finding(5),
        Row::new(
            "content_length_list_split_after_p_is_400",
            post("/public", "", PING).replace("content-length: 40", "content-length: 40, 40"),
        )
        .split_after(1)
        .status(400)
        .closes()
        .finding(5),
        Row::new("pri_method_on_http1_split_after_pri_is_405", "")
            .segments(&[b"PRI", b" /public HTTP/1.1\r\nhost: localhost\r\n\r\n"])
            .status(405)
            .finding(5),
        Row::new(
            "h2c_preface_in_one_segment_is_http2",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        )
        .http2(),
        Row::new("h2c_preface_split_in_two_is_http2", "")
            .segments(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"])
            .http2()
            .finding(5),
        // A `tools/call`, which is never retried: the backend gets it exactly once whatever the
        // sidecar makes of the faulty answer (a `ping` may be retried).
        Row::new(
            "http10_answer_framed_as_chunked_is_502",
            post("/public", "", CALL),
        )
        .backend_answers(HTTP10_CHUNKED)
        .status(502)
        .forwards(forwarded("/public", CALL))
        .finding(6),
        Row::new("sse_answer_with_a_length_keeps_its_length", request)
            .backend_answers(SSE_WITH_LENGTH)
            .head_has("content-length: 62")
            .head_lacks("transfer-encoding")
            .forwards(forwarded("/public", PING))
            .finding(8),
    ]
}
