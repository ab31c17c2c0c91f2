//! Header hygiene on both legs of the proxy: hop-by-hop stripping, Host rewrite, forwarding
//! headers, request ids, and the headers SSE needs to survive intermediaries.
//!
//! MCP's own headers (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, `Accept`) are
//! end-to-end and are never touched here: they pass byte for byte.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the policies that apply.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of the binding policy, and when it resets.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-Request-Id`: propagated from the client when sane, generated otherwise, returned downstream.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`: the client chain, with our peer appended.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used to reach the sidecar.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Tells nginx-style intermediaries not to buffer the response (needed for SSE).
pub static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Longest client-supplied request id we propagate. Longer ones are replaced, so a client cannot
/// bloat every log line and upstream request.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1, plus the legacy
/// `Proxy-Connection` and `Keep-Alive`). They must never be forwarded.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (cheap comparisons of standard headers)
    // instead of ten hashed removals, on both legs of every request.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Whether `name` is one of the fixed hop-by-hop headers (or `Upgrade`). Their names are 2, 7,
/// 10 or 16-19 bytes long, so the length turns most names away before any comparison.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str().len(), 2 | 7 | 10 | 16..=19)
        && (HOP_BY_HOP.contains(name) || name == header::UPGRADE)
}

/// Returns the client's request id if it is safe to propagate (1..=128 visible ASCII characters).
pub fn valid_request_id(headers: &HeaderMap) -> Option<&HeaderValue> {
    let value = headers.get(&X_REQUEST_ID)?;
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(u8::is_ascii_graphic);
    ok.then_some(value)
}

/// The request id to use: the client's when valid, a fresh UUID otherwise. Always visible ASCII,
/// so [`request_id_str`] never comes back empty.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = valid_request_id(headers) {
        // A clone of the parsed header shares its bytes: no copy on the common path.
        return id.clone();
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid-request-id"))
}

/// A request id from [`request_id`] as text (for logs and error bodies).
pub fn request_id_str(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("invalid-request-id")
}

/// Everything the upstream request's headers depend on besides the client's headers.
#[derive(Debug)]
pub struct ForwardContext<'a> {
    /// The client's address as the sidecar saw it, as header text ([`ip_value`]).
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`: how the client reached the sidecar.
    pub client_proto: &'static str,
    /// The request id.
    pub request_id: &'a HeaderValue,
}

/// Rewrites a client's request headers into the upstream request's headers, in place.
///
/// `Host` is left alone: the client leg's encoder always writes the backend's own authority
/// (a Python MCP server answers 421 to any other) and never the client's, so it costs no map
/// insert here ([`crate::codec::encode::encode_head`]).
pub fn prepare_upstream_request(headers: &mut HeaderMap, cx: &ForwardContext<'_>) {
    strip_hop_by_hop(headers);
    // The parser sizes the map for the client's fields; one growth for ours instead of several.
    headers.reserve(3);
    // One lookup: the entry's `insert` also drops any further values of a repeated header.
    match headers.entry(X_FORWARDED_FOR.clone()) {
        header::Entry::Occupied(mut entry) => {
            let prior = entry.get().to_str().ok().map(str::trim).unwrap_or_default();
            let ip = cx.client_ip.as_bytes();
            let mut chain = Vec::with_capacity(prior.len() + 2 + ip.len());
            if !prior.is_empty() {
                chain.extend_from_slice(prior.as_bytes());
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(ip);
            match HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)) {
                Ok(v) => {
                    entry.insert(v);
                }
                Err(_) => {
                    entry.remove();
                }
            }
        }
        header::Entry::Vacant(entry) => {
            entry.insert(cx.client_ip.clone());
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(cx.client_proto),
    );
    headers.insert(X_REQUEST_ID.clone(), cx.request_id.clone());
}

/// `ip` in its usual text form, as a header value whose clones share one buffer.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut text = Vec::with_capacity(39);
    push_ip(&mut text, ip);
    // An IP's text is always a valid header value.
    let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    // Promote the buffer to a shared one now, so every later clone is a reference count.
    drop(value.clone());
    value
}

/// Appends `ip` in its usual text form (IPv4 without the formatting machinery).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Is this a `text/event-stream` response?
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    // Bytes, not `to_str` and a char split: this runs on every response.
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let bytes = v.as_bytes();
        let mime = bytes.split(|b| *b == b';').next().unwrap_or(bytes);
        mime.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// Rewrites an upstream response's headers for the client, in place. (`X-Request-Id` is set by
/// the proxy on every answer, this one included.)
pub fn prepare_downstream_response(headers: &mut HeaderMap, sse: bool) {
    strip_hop_by_hop(headers);
    if sse {
        // Every intermediary between us and the client must pass events as they come.
        headers.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
        let cacheable = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| !v.contains("no-cache") && !v.contains("no-store"));
        if cacheable {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        // A `Content-Length` stays: a length-delimited stream is finite and goes out as the
        // backend framed it (the body wrappers that change bytes remove the length themselves).
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static CLIENT_IP: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();

    #[test]
    fn ip_values_are_the_usual_text_forms() {
        assert_eq!(ip_value("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(ip_value("::1".parse().unwrap()), "::1");
        assert_eq!(ip_value("2001:db8::7".parse().unwrap()), "2001:db8::7");
    }

    fn cx(rid: &HeaderValue) -> ForwardContext<'_> {
        ForwardContext {
            client_ip: CLIENT_IP.get_or_init(|| ip_value("10.1.2.3".parse().unwrap())),
            client_proto: "https",
            request_id: rid,
        }
    }

    #[test]
    fn the_length_filter_lets_every_hop_by_hop_name_through() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "content-type",
            "accept",
            "host",
            "mcp-session-id",
            "user-agent",
            "tee",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["mcp-session-id"], "abc");
    }

    #[test]
    fn upstream_request_gets_forwarding_fields_and_request_id() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("sidecar.example:8080"),
        );
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        let rid = HeaderValue::from_static("rid-1");
        prepare_upstream_request(&mut h, &cx(&rid));
        // Not rewritten here: the encoder writes the backend's authority instead (encode.rs).
        assert_eq!(h[header::HOST], "sidecar.example:8080");
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.1, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_REQUEST_ID], "rid-1");
        assert_eq!(h[header::ACCEPT], "application/json, text/event-stream");
        assert_eq!(h["mcp-protocol-version"], "2025-06-18");
    }

    #[test]
    fn forwarded_for_appends_the_peer_once_to_a_repeated_or_blank_chain() {
        let rid = HeaderValue::from_static("r");
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.2"));
        prepare_upstream_request(&mut h, &cx(&rid));
        let all: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(all, ["192.0.2.1, 10.1.2.3"]);
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("  "));
        prepare_upstream_request(&mut h, &cx(&rid));
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
    }

    #[test]
    fn client_addresses_are_written_in_their_usual_form() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "::1",
            "2001:db8::8:800:200c:417a",
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), ip);
        }
    }

    #[test]
    fn sse_response_gets_anti_buffering_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(is_event_stream(&h));
        prepare_downstream_response(&mut h, true);
        assert_eq!(h[&X_ACCEL_BUFFERING], "no");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h[header::CONTENT_LENGTH], "10");
    }

    #[test]
    fn invalid_request_ids_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(valid_request_id(&h).is_none());
        assert_ne!(request_id(&h), "has space");
        assert_eq!(request_id(&h).len(), 36, "a hyphenated UUID");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
    }

    proptest! {
        #[test]
        fn stripping_leaves_no_hop_by_hop_header(
            names in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..8),
            listed in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..4),
        ) {
            let mut h = HeaderMap::new();
            for n in &names {
                h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
            }
            // A value that is no header name, so the `Connection` copy names nothing extra.
            for hop in HOP_BY_HOP.iter() {
                h.append(hop.clone(), HeaderValue::from_static("a b"));
            }
            h.append(header::CONNECTION, HeaderValue::from_str(&listed.join(", ")).unwrap());
            strip_hop_by_hop(&mut h);
            for hop in HOP_BY_HOP.iter() {
                prop_assert!(!h.contains_key(hop));
            }
            for n in &listed {
                prop_assert!(!h.contains_key(n.as_str()));
            }
            // Headers neither hop-by-hop nor listed survive.
            for n in &names {
                let hop = HOP_BY_HOP.iter().any(|x| x.as_str() == n) || listed.contains(n) || n == "upgrade";
                prop_assert_eq!(h.contains_key(n.as_str()), !hop);
            }
        }

        #[test]
        fn any_header_value_yields_a_valid_request_id(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut h = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&v) {
                h.insert(&X_REQUEST_ID, value);
            }
            let id = request_id(&h);
            let text = request_id_str(&id);
            prop_assert!(!text.is_empty() && text.len() <= MAX_REQUEST_ID_LEN);
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}
