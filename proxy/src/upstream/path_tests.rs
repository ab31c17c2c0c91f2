use super::*;

#[test]
fn paths_a_backend_could_resolve_differently_are_refused() {
    use PathRefusal::*;
    for (path, why) in [
        // The finding: Node reads `\` as `/`, so this is `/mcp` at the backend.
        ("/public/..\\mcp", Backslash),
        ("/public\\..\\mcp", Backslash),
        ("/public/..%5cmcp", EncodedBackslash),
        ("/public/..%5Cmcp", EncodedBackslash),
        ("/public/..%2fmcp", EncodedSlash),
        ("/public%2F..%2Fmcp", EncodedSlash),
        ("/public/../mcp", DotSegment),
        ("/public/./x", DotSegment),
        ("/public/..", DotSegment),
        ("/public/.", DotSegment),
        ("/..", DotSegment),
        ("/public/%2e%2e/mcp", DotSegment),
        ("/public/%2E%2e/mcp", DotSegment),
        ("/public/.%2e/mcp", DotSegment),
        ("/public/%2e./mcp", DotSegment),
        ("/public/%2e", DotSegment),
        ("/public/..;/mcp", DotSegment),
        ("/public/..;jsessionid=1/mcp", DotSegment),
        ("/public/.;x/mcp", DotSegment),
        ("/public/..%3b/mcp", DotSegment),
        ("/public/%252e%252e/mcp", DoubleEncoding),
        ("/public/%255cmcp", DoubleEncoding),
        ("/public/%25", DoubleEncoding),
        ("/public/%00", ControlByte),
        ("/public/a%0d%0aX-Injected:1", ControlByte),
        ("/public/%1F", ControlByte),
        ("/public/%7f", ControlByte),
        ("/public/\u{0}", ControlByte),
        ("/public/\t", ControlByte),
        ("/public/%", InvalidEscape),
        ("/public/%2", InvalidEscape),
        ("/public/%zz", InvalidEscape),
        ("/public/%%2e", InvalidEscape),
        ("/public/%c0%ae%c0%ae/mcp", InvalidUtf8),
        ("/public/%e0%80%ae", InvalidUtf8),
        ("/public/%ff", InvalidUtf8),
    ] {
        assert_eq!(check_path(path), Err(why), "{path:?}");
    }
}

#[test]
fn ordinary_paths_pass() {
    for path in [
        "/",
        "/mcp",
        "/mcp/",
        "/messages/",
        "/public//mcp",
        "/mcp/.well-known/x",
        "/mcp/a..b",
        "/mcp/...",
        "/mcp/..a",
        "/mcp/a.",
        "/mcp/%20x",
        "/mcp/caf%C3%A9",
        "/mcp/caf\u{e9}",
        "/mcp/a;b=1",
        "/mcp/;..",
        "/mcp/%2e%2e%2e",
        "/mcp/x%2ey",
        "/mcp/%7E",
        "/mcp/\"{}\"",
    ] {
        assert_eq!(check_path(path), Ok(()), "{path:?}");
    }
}

#[test]
fn the_query_is_not_part_of_the_rule() {
    // The rule is given the path only: what http::Uri calls the path of these targets passes.
    for target in ["/messages/?session_id=..", "/mcp?x=%2f..%5c%25"] {
        let uri: http::Uri = target.parse().unwrap();
        assert_eq!(check_path(uri.path()), Ok(()), "{target}");
    }
}

#[test]
fn uri_parsing_already_refuses_raw_controls_and_spaces() {
    // Documented in the module: these never reach the rule from a real request.
    for target in ["/a\0b", "/a b", "/a\x7f", "/a\r\nb"] {
        assert!(target.parse::<http::Uri>().is_err(), "{target:?}");
    }
    // ... but a backslash does, which is why the rule checks it.
    assert_eq!(
        "/public/..\\mcp".parse::<http::Uri>().unwrap().path(),
        "/public/..\\mcp"
    );
}
