//! The rows of the attack table, grouped as issue 14 lists them. Each row's expectation is what
//! issue 14 demands after its fixes: ambiguous or malformed framing is refused (400, the
//! connection closed), unknown transfer codings get 501, a body announced beyond
//! `listen.max_body_bytes` gets 413 before it is read, and a path a backend could resolve
//! differently from the sidecar gets 400. Rows marked with a finding check that finding.
//!
//! Requests go to `/public` (no credential needed) unless the row is about authentication, so
//! that a framing mistake would show up as bytes at the backend. [`framing`] holds the rows about
//! how a body is delimited and how field lines are read, [`target`] those about the request
//! line, early refusals, paths, `Host` and the remaining findings.

mod framing;
mod target;

use super::Row;

/// The JSON-RPC body every forwarded POST carries (MCP's `ping`).
pub const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// A request to `/public` as the client writes it: `extra` fields, then the length.
pub fn post(path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nx-request-id: attack\r\n{extra}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chunked request whose body is `chunks` as written (sizes, data, last chunk and all).
pub fn chunked(path: &str, extra: &str, chunks: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nx-request-id: attack\r\n{extra}\
         transfer-encoding: chunked\r\n\r\n{chunks}"
    )
}

/// [`PING`] as one chunk with this size line (`size` written as is) and the last chunk.
pub fn ping_chunk(size: &str) -> String {
    format!("{size}{PING}\r\n0\r\n\r\n")
}

/// The size line of [`PING`] as one chunk.
fn ping_size() -> String {
    format!("{:x}", PING.len())
}

/// What the backend must receive for a POST of `body` to the sidecar's `path` (the backend's
/// path is the same: both mounts keep their prefix): the request rewritten in origin form,
/// `Host` the backend's, the forwarding fields added, framed by its length.
pub fn forwarded(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {{backend}}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nx-request-id: attack\r\n\
         x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A second request hidden where a lenient parser would see a request boundary.
fn smuggled() -> String {
    post("/public", "x-smuggled: 1\r\n", PING)
}

/// Every row, in the order of issue 14's list.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(baseline());
    rows.extend(framing::cl_te());
    rows.extend(framing::transfer_encoding());
    rows.extend(framing::content_length());
    rows.extend(framing::chunk_sizes());
    rows.extend(framing::field_bytes());
    rows.extend(target::request_line());
    rows.extend(target::early_refusals());
    rows.extend(target::paths());
    rows.extend(target::hosts());
    rows.extend(target::findings());
    rows
}

/// Well-formed requests, some unusual but valid: the strictness must not refuse them, and
/// the backend gets the normalised request.
fn baseline() -> Vec<Row> {
    let fwd = forwarded("/public", PING);
    vec![
        Row::new("post_to_public_is_forwarded_normalised", post("/public", "", PING))
            .stays_open()
            .forwards(fwd.clone()),
        Row::new(
            "chunked_post_is_forwarded_with_its_length",
            chunked("/public", "", &format!("5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", &PING[..5], PING.len() - 5, &PING[5..])),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "chunk_extension_is_accepted_and_dropped",
            chunked("/public", "", &ping_chunk(&format!("{};name=value\r\n", ping_size()))),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "chunked_trailer_is_accepted_and_dropped",
            chunked("/public", "", &format!("{}\r\n{PING}\r\n0\r\nx-trailer: t\r\n\r\n", ping_size())),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "uppercase_chunked_coding_is_chunked",
            chunked("/public", "", &ping_chunk(&format!("{}\r\n", ping_size())))
                .replace("transfer-encoding: chunked", "Transfer-Encoding: CHUNKED"),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "te_value_after_a_tab_is_chunked",
            chunked("/public", "", &ping_chunk(&format!("{}\r\n", ping_size())))
                .replace("transfer-encoding: chunked", "Transfer-Encoding:\tchunked"),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "te_value_after_two_spaces_is_chunked",
            chunked("/public", "", &ping_chunk(&format!("{}\r\n", ping_size())))
                .replace("transfer-encoding: chunked", "Transfer-Encoding:  chunked"),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "protected_mount_with_the_key_is_forwarded_without_it",
            post("/mcp", &format!("authorization: Bearer {}\r\n", super::API_KEY), PING),
        )
        .stays_open()
        // The client's credential is taken out of the map, which moves its last field
        // (`x-forwarded-proto`) into its place.
        .forwards(format!(
            "POST /mcp HTTP/1.1\r\nhost: {{backend}}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nx-request-id: attack\r\n\
             x-forwarded-proto: http\r\nx-forwarded-for: 127.0.0.1\r\ncontent-length: 40\r\n\r\n{PING}"
        )),
        Row::new("protected_mount_without_a_key_is_401", post("/mcp", "", PING))
            .status(401)
            .stays_open(),
        Row::new(
            "two_pipelined_posts_are_forwarded_in_order",
            format!("{0}{0}", post("/public", "", PING)),
        )
        .statuses(&[200, 200])
        .stays_open()
        .forwards(format!("{fwd}{fwd}")),
        Row::new(
            "empty_lines_before_the_request_line_are_skipped",
            format!("\r\n\r\n{}", post("/public", "", PING)),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "absolute_form_with_an_allowed_authority_is_forwarded_in_origin_form",
            post("http://localhost/public", "", PING),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "content_length_with_leading_zeros_is_its_number",
            post("/public", "", PING).replace("content-length: 40", "content-length: 0040"),
        )
        .stays_open()
        .forwards(fwd.clone()),
        Row::new(
            "repeated_identical_content_lengths_are_400",
            post("/public", "content-length: 40\r\n", PING),
        )
        .finding(6)
        .status(400)
        .closes(),
        Row::new(
            "http10_request_without_host_is_forwarded_and_closed",
            post("/public", "", PING)
                .replace("HTTP/1.1", "HTTP/1.0")
                .replace("host: localhost\r\n", ""),
        )
        .closes()
        .forwards(fwd),
        Row::new("query_with_dot_dot_is_not_a_path", post("/public?next=../mcp", "", PING))
            .stays_open()
            .forwards(forwarded("/public?next=../mcp", PING)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_names_are_unique_and_canned_answers_are_framed_right() {
        let rows = rows();
        let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rows.len(), "duplicate row names");
        let body_len = |answer: &[u8]| {
            let text = String::from_utf8_lossy(answer);
            let (_, body) = text.split_once("\r\n\r\n").unwrap();
            body.len()
        };
        assert_eq!(body_len(target::SSE_WITH_LENGTH), 62);
        assert_eq!(PING.len(), 40);
    }
}
