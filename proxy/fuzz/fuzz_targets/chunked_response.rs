//! The chunked decoder as the client leg runs it on a response body (`upstream::h1::body`:
//! `Chunked::Size`, decode until it needs more, read more): never a panic, never an empty data
//! frame, and the same body, trailers and leftover bytes (bytes past the body) however
//! the backend's bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::codec::decode::Chunked;
use mcp_sidecar_fuzz::{assert_chunked_split_invariant, decode_chunked};

fuzz_target!(|input: &[u8]| {
    assert_chunked_split_invariant(input, |buf, feeder| {
        decode_chunked(Chunked::Size, buf, feeder)
    });
});
