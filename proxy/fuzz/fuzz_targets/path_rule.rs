//! The path rule (`upstream::check_path`) on arbitrary paths: never a panic, and every path it
//! lets through means the same to a backend that percent-decodes it once before resolving it:
//! no backslash, no `.` or `..` segment (a segment's name ends at `/` or `;`), no control byte, no `%`
//! left to decode a second time, no bytes that are not UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::upstream::check_path;

/// `path` with every `%XX` escape decoded once; `None` for an escape that is not two hex digits.
fn decode_once(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = std::str::from_utf8(path.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Some(out)
}

fuzz_target!(|input: &[u8]| {
    let Ok(path) = std::str::from_utf8(input) else {
        return;
    };
    if check_path(path).is_err() {
        return;
    }
    let decoded = decode_once(path.as_bytes()).expect("an accepted path has only valid escapes");
    let text = std::str::from_utf8(&decoded).expect("an accepted path decodes to UTF-8");
    assert!(
        !text.contains('\\'),
        "accepted {path:?}: a backslash after decoding"
    );
    assert!(
        !text.contains('%'),
        "accepted {path:?}: a `%` left to decode again"
    );
    assert!(
        !text.chars().any(|c| c.is_ascii_control()),
        "accepted {path:?}: a control byte after decoding"
    );
    // An encoded `/` would be a separator to a decoding backend; the rule refuses `%2f`, so the
    // raw and decoded paths have the same segments.
    assert_eq!(
        path.matches('/').count(),
        text.matches('/').count(),
        "accepted {path:?}: an encoded slash"
    );
    // A segment's name ends at its first `;` (the rest are path parameters, which Tomcat and
    // Jetty strip before resolving).
    for segment in text.split('/') {
        let name = segment.split(';').next().unwrap_or_default();
        assert!(
            name != "." && name != "..",
            "accepted {path:?}: a dot segment after decoding"
        );
    }
});
