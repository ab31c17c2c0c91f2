//! The strict chunked decoder as the server leg runs it on a request body
//! (`downstream::chunked::RequestChunked` under the default body limit: decode until it needs
//! more, read more): never a panic, never an empty data frame, never a body past the limit, and
//! the same body, trailers and leftover bytes (the next pipelined request) however the client's
//! bytes are split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mcp_sidecar_fuzz::{Feeder, REQUEST_BODY_LIMIT, decode_request_chunked, seed_and_data};

fn run(mut feeder: Feeder<'_>) -> (Result<mcp_sidecar_fuzz::Body, String>, Vec<u8>) {
    let mut buf = BytesMut::new();
    let body = decode_request_chunked(REQUEST_BODY_LIMIT, &mut buf, &mut feeder);
    let mut rest = buf.to_vec();
    rest.extend_from_slice(feeder.remaining());
    (body, rest)
}

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let whole = run(Feeder::whole(data));
    let split = run(Feeder::split(data, seed));
    assert_eq!(
        whole, split,
        "the outcome depends on how the bytes were split"
    );
});
