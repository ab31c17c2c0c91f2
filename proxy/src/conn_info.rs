//! What the sidecar knows about the connection a request came in on, shared by both HTTP
//! versions' servers and everything after them.

use std::net::SocketAddr;

use http::HeaderValue;

use crate::headers;

/// What the sidecar knows about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// Whether the client connected with TLS.
    pub tls: bool,
    /// The client's IP as an `X-Forwarded-For` element, formatted once per connection rather
    /// than once per request (clones share it).
    pub forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// The connection from `remote`, with or without TLS.
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        Self {
            remote,
            tls,
            forwarded_for: headers::ip_value(remote.ip()),
        }
    }
}
