//! The client leg's response head parser (`upstream::h1::decode::parse_head`, interim 1xx
//! skipped), then the body as framed: never a panic, an overridden `Content-Length` never
//! passed on, and the same outcome however the backend's bytes are split. Bit 7 of the seed
//! byte says whether the request was a HEAD.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar_fuzz::{Feeder, read_response, seed_and_data};

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let head_request = seed & 0x80 != 0;
    let whole = read_response(Feeder::whole(data), head_request);
    let split = read_response(Feeder::split(data, seed), head_request);
    assert_eq!(
        whole, split,
        "the outcome depends on how the bytes were split"
    );
});
