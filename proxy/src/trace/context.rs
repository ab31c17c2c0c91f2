//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` field read
//! strictly and written, and `tracestate` read into the span's state.
//!
//! Hand-written rather than the `opentelemetry_sdk` propagator: that one trims the value, lets
//! `u128::from_str_radix` accept short ids and a `+` sign, and allocates a `Vec` per header. The
//! sidecar is a security boundary: a field it cannot read exactly as the spec writes it is
//! ignored (the request starts a new trace), never an error and never half-trusted. The parser
//! is fuzzed (`proxy/fuzz`, target `traceparent`).

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Name of the W3C parent field.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// Name of the W3C vendor state field.
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub const TRACEPARENT_LEN: usize = 55;
/// Longest `tracestate` read into a span's state. The spec asks vendors to propagate at least
/// 512 characters and lets them drop the state past that; the field itself still goes to the
/// backend as the client sent it.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The parts of a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace (never all zeros).
    pub trace_id: [u8; 16],
    /// The caller's span (never all zeros).
    pub parent_id: [u8; 8],
    /// Whether the caller recorded its span (flag bit 0).
    pub sampled: bool,
}

/// Reads a `traceparent` value, or `None` when it is not one the spec allows: version `00` is
/// exactly 55 characters; a later version (`01`..`fe`) is read by its first 55 characters and
/// may only go on after a `-`; `ff`, uppercase hex, zero ids, a missing dash or any other length
/// are refused.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    match version {
        0xff => return None,
        0x00 if value.len() != TRACEPARENT_LEN => return None,
        // A future version may append fields, after a dash.
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    hex_into(&value[3..35], &mut trace_id)?;
    let mut parent_id = [0u8; 8];
    hex_into(&value[36..52], &mut parent_id)?;
    let flags = hex_byte(value[53], value[54])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 0x01 == 0x01,
    })
}

/// The remote parent a request's header fields name, or `None` (a new trace) when there is no
/// valid one. Several `traceparent` fields are ambiguous, so none is taken. The state comes from
/// `tracestate` when it is valid and not too long; otherwise the span has none.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let parent = parse_traceparent(value.as_bytes())?;
    Some(SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.parent_id),
        if parent.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        trace_state(headers),
    ))
}

/// The `tracestate` of the request (several fields joined, as the spec says), when valid.
fn trace_state(headers: &http::HeaderMap) -> TraceState {
    let mut values = headers.get_all(TRACESTATE).iter();
    let Some(first) = values.next() else {
        return TraceState::NONE;
    };
    let mut joined = String::new();
    for value in std::iter::once(first).chain(values) {
        let Ok(text) = value.to_str() else {
            return TraceState::NONE;
        };
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
        if joined.len() > MAX_TRACESTATE_LEN {
            return TraceState::NONE;
        }
    }
    joined.parse().unwrap_or(TraceState::NONE)
}

/// The `traceparent` value (version 00) naming `cx` as the parent.
pub fn traceparent_value(cx: &SpanContext) -> http::HeaderValue {
    let parent = TraceParent {
        trace_id: cx.trace_id().to_bytes(),
        parent_id: cx.span_id().to_bytes(),
        sampled: cx.is_sampled(),
    };
    // Lowercase hex and dashes: always a valid field value.
    http::HeaderValue::from_bytes(&parent.to_bytes()).unwrap_or(http::HeaderValue::from_static(""))
}

impl TraceParent {
    /// The field's text, version 00 (flags `01` or `00`).
    pub fn to_bytes(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[..3].copy_from_slice(b"00-");
        hex_out(&self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        hex_out(&self.parent_id, &mut out[36..52]);
        out[52] = b'-';
        hex_out(&[u8::from(self.sampled)], &mut out[53..55]);
        out
    }
}

/// The trace id as 32 lowercase hex digits (for the access log).
pub fn trace_id_hex(id: TraceId) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_out(&id.to_bytes(), &mut out);
    out
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

/// One byte from two lowercase hex digits (the spec refuses uppercase).
fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(nibble(hi)? << 4 | nibble(lo)?)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_out(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
