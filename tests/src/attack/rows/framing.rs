//! Rows about framing: both framings at once, `Transfer-Encoding`, `Content-Length`, chunk
//! sizes and chunk data, and the bytes of field lines.

use super::{PING, chunked, ping_chunk, ping_size, post, smuggled};
use crate::attack::Row;

/// Both framings at once: the classic desync.
pub(super) fn cl_te() -> Vec<Row> {
    let hidden = smuggled();
    vec![
        Row::new(
            "cl_te_content_length_first_is_400",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\
                 transfer-encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
                hidden.len() + 5
            ),
        )
        .status(400)
        .closes(),
        Row::new(
            "te_cl_transfer_encoding_first_is_400",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\
                 content-length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
                hidden.len()
            ),
        )
        .status(400)
        .closes(),
        Row::new(
            "content_length_with_te_xchunked_is_refused",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\
                 transfer-encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        )
        .status_in(&[400, 501])
        .closes(),
        Row::new(
            "content_length_with_chunked_in_a_second_te_field_is_refused",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\
                 transfer-encoding: identity\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        )
        .status_in(&[400, 501])
        .closes(),
    ]
}

/// `Transfer-Encoding` must be exactly `chunked` (finding 6).
pub(super) fn transfer_encoding() -> Vec<Row> {
    let body = ping_chunk(&format!("{}\r\n", ping_size()));
    let te = |name: &'static str, field: &str| {
        Row::new(
            name,
            chunked("/public", "", &body).replace("transfer-encoding: chunked\r\n", field),
        )
        .closes()
    };
    vec![
        te("te_xchunked_is_501", "transfer-encoding: xchunked\r\n")
            .status(501)
            .finding(6),
        te(
            "te_chunked_identity_is_501",
            "transfer-encoding: chunked, identity\r\n",
        )
        .status(501)
        .finding(6),
        te(
            "te_gzip_chunked_is_501",
            "transfer-encoding: gzip, chunked\r\n",
        )
        .status(501)
        .finding(6),
        te(
            "te_identity_field_then_chunked_field_is_501",
            "transfer-encoding: identity\r\ntransfer-encoding: chunked\r\n",
        )
        .status(501)
        .finding(6),
        te(
            "te_chunked_twice_in_one_field_is_400",
            "transfer-encoding: chunked, chunked\r\n",
        )
        .status(400)
        .finding(6),
        te(
            "te_chunked_in_two_fields_is_400",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        )
        .status(400)
        .finding(6),
        te(
            "te_space_before_the_colon_is_400",
            "transfer-encoding : chunked\r\n",
        )
        .status(400),
        te("te_obs_fold_is_400", "transfer-encoding:\r\n chunked\r\n").status(400),
        te(
            "te_vertical_tab_before_the_value_is_400",
            "transfer-encoding: \x0bchunked\r\n",
        )
        .status(400),
        te("te_empty_value_is_refused", "transfer-encoding: \r\n")
            .status_in(&[400, 501])
            .finding(6),
        Row::new(
            "te_in_an_http10_request_is_400",
            chunked("/public", "", &body).replace("HTTP/1.1", "HTTP/1.0"),
        )
        .status(400)
        .closes(),
    ]
}

/// `Content-Length` must be one decimal number (repeats of the same number allowed).
pub(super) fn content_length() -> Vec<Row> {
    let cl = |name: &'static str, value: &str| {
        Row::new(
            name,
            post("/public", "", PING).replace("content-length: 40", value),
        )
        .status(400)
        .closes()
    };
    vec![
        cl(
            "different_repeated_content_lengths_are_400",
            "content-length: 40\r\ncontent-length: 41",
        ),
        cl(
            "content_length_list_of_different_values_is_400",
            "content-length: 40, 41",
        ),
        // RFC 9110 §8.6 lets a recipient take a list of identical values as one, but hyper's
        // server refuses any list, and the sidecar is at least as strict as hyper.
        cl(
            "content_length_list_of_identical_values_is_400",
            "content-length: 40, 40",
        )
        .finding(6),
        cl("plus_signed_content_length_is_400", "content-length: +40"),
        cl("negative_content_length_is_400", "content-length: -40"),
        cl("hex_content_length_is_400", "content-length: 0x28"),
        cl(
            "content_length_beyond_u64_is_400",
            "content-length: 99999999999999999999999",
        ),
        cl(
            "content_length_with_an_inner_space_is_400",
            "content-length: 4 0",
        ),
        cl("empty_content_length_is_400", "content-length: "),
        Row::new(
            "content_length_beyond_max_body_is_413_before_reading",
            format!(
                "POST /public HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                 content-length: 5000000\r\n\r\n{PING}"
            ),
        )
        .status(413)
        .closes(),
    ]
}

/// Chunk-size lines and chunk data framing (finding 6): as strict as hyper's decoder, and a
/// size beyond `max_body_bytes` refused at once.
pub(super) fn chunk_sizes() -> Vec<Row> {
    let size = ping_size();
    let c = |name: &'static str, chunks: String| {
        Row::new(name, chunked("/public", "", &chunks))
            .closes()
            .finding(6)
    };
    vec![
        c(
            "chunk_size_with_a_leading_space_is_400",
            ping_chunk(&format!(" {size}\r\n")),
        )
        .status(400),
        c(
            "chunk_size_with_0x_prefix_is_400",
            ping_chunk(&format!("0x{size}\r\n")),
        )
        .status(400),
        c(
            "chunk_size_beyond_u64_is_refused",
            ping_chunk("10000000000000000\r\n"),
        )
        .status_in(&[400, 413]),
        c(
            "chunk_size_ffffffffffffffff_is_413_at_once",
            "ffffffffffffffff\r\n".into(),
        )
        .status(413),
        c(
            "chunk_size_beyond_max_body_is_413_at_once",
            "500000\r\n".into(),
        )
        .status(413),
        c(
            "chunk_size_line_ending_in_a_bare_lf_is_400",
            ping_chunk(&format!("{size}\n")),
        )
        .status(400),
        c(
            "chunk_size_with_a_stray_cr_is_400",
            ping_chunk(&format!("{size}\r\r\n")),
        )
        .status(400),
        c(
            "chunk_extension_with_a_control_byte_is_400",
            ping_chunk(&format!("{size};a=\x01b\r\n")),
        )
        .status(400),
        c(
            "chunk_extension_with_del_is_400",
            ping_chunk(&format!("{size};\x7f\r\n")),
        )
        .status(400),
        c(
            "chunk_data_without_its_crlf_is_400",
            format!("{size}\r\n{PING}X0\r\n\r\n"),
        )
        .status(400),
        c(
            "chunk_data_ending_in_a_bare_lf_is_400",
            format!("{size}\r\n{PING}\n0\r\n\r\n"),
        )
        .status(400),
        c(
            "last_chunk_line_ending_in_a_bare_lf_is_400",
            format!("{size}\r\n{PING}\r\n0\n\r\n"),
        )
        .status(400),
    ]
}

/// Control bytes, whitespace and folding in field lines.
pub(super) fn field_bytes() -> Vec<Row> {
    let f = |name: &'static str, field: &str| {
        Row::new(name, post("/public", field, PING))
            .status(400)
            .closes()
    };
    vec![
        f("nul_in_a_field_value_is_400", "x-a: a\0b\r\n"),
        f("lone_cr_in_a_field_value_is_400", "x-a: a\rb\r\n"),
        f("del_in_a_field_value_is_400", "x-a: a\x7fb\r\n"),
        f("nul_in_a_field_name_is_400", "x-\0a: b\r\n"),
        f("space_in_a_field_name_is_400", "x a: b\r\n"),
        f("space_before_a_colon_is_400", "x-a : b\r\n"),
        f("field_line_without_a_colon_is_400", "x-a\r\n"),
        f("obs_fold_in_a_field_is_400", "x-a: a\r\n b\r\n"),
        f("field_line_starting_with_a_space_is_400", " x-a: b\r\n"),
    ]
}
