//! The HTTP/1.1 codec both legs share (RFC 9112): request heads parsed strictly for the server
//! leg ([`request`]), response heads for the client leg ([`decode`]), the chunked coding both
//! ways ([`decode::Chunked`], the stricter [`chunked::RequestChunked`] for what clients send,
//! [`encode`]), and response heads written by the server leg ([`response`]).
//!
//! Pure functions over byte buffers: no I/O, no policy, nothing from the request path. The
//! connection loops that drive them are the legs ([`crate::downstream`], [`crate::upstream::h1`]);
//! `chaos/` and `loadtest/` build on the same functions.

pub mod chunked;
pub mod decode;
pub mod encode;
pub mod request;
pub mod response;

/// RFC 9110 `tchar`: the bytes of a token (field names, transfer codings, chunk extensions).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why bytes from a peer are not a valid HTTP/1.1 response head or chunked body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid HTTP/1.1 (the message names what).
    #[error("invalid HTTP/1.1: {0}")]
    Malformed(String),
    /// The head (or a chunk's trailer section) is larger than [`decode::MAX_HEAD_BYTES`].
    #[error("head larger than {} bytes", decode::MAX_HEAD_BYTES)]
    HeadTooLarge,
}
