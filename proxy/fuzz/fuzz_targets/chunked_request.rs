//! The strict chunked decoder as the server leg runs it on a request body
//! (`downstream::chunked::RequestChunked` under the default body limit: decode until it needs
//! more, read more): never a panic, never an empty data frame, never a body past the limit, and
//! the same body, trailers and leftover bytes (the next pipelined request) however the client's
//! bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar_fuzz::{
    REQUEST_BODY_LIMIT, assert_chunked_split_invariant, decode_request_chunked,
};

fuzz_target!(|input: &[u8]| {
    assert_chunked_split_invariant(input, |buf, feeder| {
        decode_request_chunked(REQUEST_BODY_LIMIT, buf, feeder)
    });
});
