//! The server leg's request head parser and framing decision
//! (`downstream::request::parse_request_head`), then the body as framed: never a panic, the
//! scan's framing invariants hold, and the same bytes give the same head, body and leftover
//! bytes however the connection delivers them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar_fuzz::{Feeder, seed_and_data, serve_request};

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let whole = serve_request(Feeder::whole(data));
    let split = serve_request(Feeder::split(data, seed));
    assert_eq!(
        whole, split,
        "the outcome depends on how the bytes were split"
    );
});
