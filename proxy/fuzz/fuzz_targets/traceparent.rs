//! The W3C `traceparent` reader (`trace::context::parse_traceparent`) on arbitrary bytes: never a
//! panic; whatever it accepts follows the spec's grammar exactly (two lowercase hex digits of
//! version other than `ff`, dashes at 2, 35 and 52, 32 and 16 lowercase hex digits that are not
//! all zero, two of flags; version 00 exactly 55 bytes, a later one going on only after a `-`);
//! and what it read, written back as version 00, reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::trace::context::{TRACEPARENT_LEN, parse_traceparent};

fn lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

fuzz_target!(|input: &[u8]| {
    let Some(parent) = parse_traceparent(input) else {
        return;
    };
    assert!(input.len() >= TRACEPARENT_LEN, "accepted {input:?}: too short");
    let head = &input[..TRACEPARENT_LEN];
    for (i, &c) in head.iter().enumerate() {
        if matches!(i, 2 | 35 | 52) {
            assert_eq!(c, b'-', "accepted {input:?}: no dash at {i}");
        } else {
            assert!(lower_hex(c), "accepted {input:?}: {c:#x} at {i} is not lowercase hex");
        }
    }
    assert_ne!(&head[..2], b"ff", "accepted {input:?}: version ff");
    if &head[..2] == b"00" {
        assert_eq!(input.len(), TRACEPARENT_LEN, "accepted {input:?}: version 00 with more");
    } else if input.len() > TRACEPARENT_LEN {
        assert_eq!(input[TRACEPARENT_LEN], b'-', "accepted {input:?}: no dash after 55");
    }
    assert!(head[3..35].iter().any(|&c| c != b'0'), "accepted {input:?}: zero trace id");
    assert!(head[36..52].iter().any(|&c| c != b'0'), "accepted {input:?}: zero parent id");
    let written = parent.to_bytes();
    assert_eq!(parse_traceparent(&written), Some(parent));
    assert_eq!(&written[3..52], &head[3..52], "the ids are kept as read");
});
