//! The SSE event scanner (`body::event_scan`) that the legacy `endpoint` rewrite runs over a
//! backend's stream: never a panic, the same event boundaries however the stream is split
//! (a CR at the end of one piece may be half of a CRLF), endpoint ranges inside their event,
//! and a rewritten endpoint that stays under the sidecar's mount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::body::EndpointRewrite;
use mcp_sidecar::body::event_scan::{EventKind, EventSplitter, classify};
use mcp_sidecar_fuzz::seed_and_data;

/// Event ends (stream offsets) of `data` delivered in pieces of the given lengths (cycled).
fn boundaries(data: &[u8], pieces: &[usize]) -> Vec<usize> {
    let mut splitter = EventSplitter::default();
    let mut found = Vec::new();
    let mut base = 0;
    let mut lengths = pieces.iter().cycle();
    while base < data.len() {
        let len = lengths.next().copied().unwrap_or(data.len()).max(1);
        let piece = &data[base..data.len().min(base + len)];
        let mut pos = 0;
        while let Some(end) = splitter.find_event_end(&piece[pos..]) {
            assert!(end > 0 && pos + end <= piece.len());
            pos += end;
            found.push(base + pos);
        }
        base += piece.len();
    }
    found
}

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let whole = boundaries(data, &[data.len()]);
    let pieces: Vec<usize> = (0..8)
        .map(|i| 1 + usize::from(seed.rotate_left(i)) % 7)
        .collect();
    assert_eq!(
        whole,
        boundaries(data, &pieces),
        "event boundaries depend on the split"
    );
    assert_eq!(
        whole,
        boundaries(data, &[1]),
        "event boundaries depend on the split"
    );

    let Ok(request_url) = url::Url::parse("http://backend.test:8000/backend/sse") else {
        return;
    };
    let rewrite = EndpointRewrite::new(request_url, "/backend", "/legacy");
    let mut start = 0;
    for end in whole {
        let event = &data[start..end];
        if let EventKind::Endpoint(range) = classify(event, start == 0) {
            assert!(range.end <= event.len());
            let value = std::str::from_utf8(&event[range]).unwrap_or_default();
            if let Some(mapped) = rewrite.rewrite(value) {
                assert!(
                    mapped == "/legacy"
                        || mapped.starts_with("/legacy/")
                        || mapped.starts_with("/legacy?"),
                    "endpoint {value:?} rewritten outside the mount: {mapped:?}"
                );
                assert!(
                    !mapped.contains(['\r', '\n']),
                    "rewritten endpoint breaks the event"
                );
            }
        }
        start = end;
    }
});
