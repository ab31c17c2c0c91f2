//! The SSE event scanner (`mcp_model::sse`, reached as `mcp_sidecar::mcp::sse`) that the legacy
//! `endpoint` rewrite runs over a backend's stream: never a panic, the same events however the stream is split (a blank line
//! written as CRLF ends at its CR when the LF has not arrived yet, and the LF is then the first
//! byte of the next event, which the classifier skips), endpoint ranges inside their event, and
//! a rewritten endpoint that stays under the sidecar's mount; and the `EventSource`-style
//! `decode` agrees with the classifier on every event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::body::EndpointRewrite;
use mcp_sidecar::mcp::sse::{EventKind, EventSplitter, classify, decode};
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

/// What each event (cut at `ends`) means: its kind, with an endpoint's value.
fn meanings(data: &[u8], ends: &[usize]) -> Vec<(String, Vec<u8>)> {
    let mut start = 0;
    let mut out = Vec::new();
    for &end in ends {
        let event = &data[start..end];
        let kind = classify(event, start == 0);
        let value = match &kind {
            EventKind::Endpoint(range) => {
                assert!(range.end <= event.len());
                event[range.clone()].to_vec()
            }
            _ => Vec::new(),
        };
        // The `EventSource`-style decoder reads the same event the same way.
        let decoded = decode(event, start == 0);
        match (&kind, &decoded) {
            (EventKind::Ignored, None) => {}
            (EventKind::Other, Some(d)) => assert_ne!(d.event_type, "endpoint"),
            (EventKind::UnsupportedEndpoint, Some(d)) => assert_eq!(d.event_type, "endpoint"),
            (EventKind::Endpoint(_), Some(d)) => {
                assert_eq!(d.event_type, "endpoint");
                assert_eq!(d.data.as_bytes(), &value[..]);
            }
            _ => panic!("classify says {kind:?}, decode says {decoded:?}"),
        }
        out.push((
            format!("{kind:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_owned(),
            value,
        ));
        start = end;
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = seed_and_data(input) else {
        return;
    };
    let whole = boundaries(data, &[data.len()]);
    let pieces: Vec<usize> = (0..8)
        .map(|i| 1 + usize::from(seed.rotate_left(i)) % 7)
        .collect();
    for split in [boundaries(data, &pieces), boundaries(data, &[1])] {
        assert_eq!(whole.len(), split.len(), "event count depends on the split");
        for (&w, &s) in whole.iter().zip(&split) {
            let lf_pending = w == s + 1 && data[s] == b'\n' && s > 0 && data[s - 1] == b'\r';
            assert!(
                w == s || lf_pending,
                "event boundaries depend on the split: {w} vs {s}"
            );
        }
        assert_eq!(
            meanings(data, &whole),
            meanings(data, &split),
            "events mean something else when split"
        );
    }

    let Ok(request_url) = url::Url::parse("http://backend.test:8000/backend/sse") else {
        return;
    };
    let rewrite = EndpointRewrite::new(request_url, "/backend", "/legacy");
    for (kind, value) in meanings(data, &whole) {
        if kind != "Endpoint" {
            continue;
        }
        let value = std::str::from_utf8(&value).unwrap_or_default();
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
});
