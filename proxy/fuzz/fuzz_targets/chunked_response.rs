//! The chunked decoder as the client leg runs it on a response body (`upstream::h1::body`:
//! `Chunked::Size`, decode until it needs more, read more): never a panic, never an empty data
//! frame, and the same body, trailers and leftover bytes (bytes past the body) however
//! the backend's bytes are split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mcp_sidecar::upstream::h1::decode::Chunked;
use mcp_sidecar_fuzz::{Feeder, decode_chunked, seed_and_data};

/// The response side's decoder state at the start of a body.
fn response_decoder() -> Chunked {
    Chunked::Size
}

fn run(mut feeder: Feeder<'_>) -> (Result<mcp_sidecar_fuzz::Body, String>, Vec<u8>) {
    let mut buf = BytesMut::new();
    let body = decode_chunked(response_decoder(), &mut buf, &mut feeder);
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
