//! The seam between the request path and its policies: what a phase sees ([`Exchange`]), what
//! it decides ([`Step`]), and the one call shape every policy's phases share ([`Policy`]).
//!
//! A phase is a method of a policy with the shape
//!
//! ```text
//! fn phase(&self, ex: &mut Exchange, state: &mut Self::State) -> Outcome
//! ```
//!
//! (an `async fn` where the phase must wait, such as authentication fetching a JWKS). It reads
//! the request and what earlier phases learned from the [`Exchange`], may add to it (the
//! principal, the allowed `Origin`), keeps what only it needs in its own `State` (permits, a
//! CORS grant), and returns:
//! - `Ok(Step::Next)`: go on to the next phase;
//! - `Ok(Step::Answer(response))`: the request is answered here (a CORS preflight, the protected
//!   resource metadata, a job's `202 Accepted`): a normal outcome, not an error;
//! - `Err(ProxyError)`: the request is refused, answered by the one error mapping.
//!
//! The order of the phases is written once, in [`crate::forward`]'s `dispatch`. When the request
//! goes on to the upstream, the tail takes the exchange whole and gives back its [`Facts`], what
//! the answer to an error and the access log still need. Phases are
//! plain methods called in sequence, so their futures are part of the request's one future:
//! nothing is boxed per phase.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;

use crate::body::ProxyBody;
use crate::conn_info::ConnInfo;
use crate::error::ProxyError;
use crate::mcp::Classified;
use crate::principal::Principal;
use crate::upstream::Upstream;

/// What a phase decided.
#[derive(Debug)]
pub enum Step {
    /// Go on to the next phase.
    Next,
    /// The request is answered with this response; no later phase runs and nothing is sent
    /// upstream (unless the policy that answered arranged it, as a job does).
    Answer(http::Response<ProxyBody>),
}

/// What every phase returns.
pub type Outcome = Result<Step, ProxyError>;

/// A policy: a concern of the request path (authentication, limits, CORS, breakers, jobs) whose
/// phases have the shape described in the [module docs](self).
pub trait Policy {
    /// What the policy keeps about one request between its phases and until the answer ends
    /// (permits, headers for the answer); `()` for none. The request path holds one per policy.
    type State: Default + Send + std::fmt::Debug;
}

/// One request as the phases see it: its head, its connection, and what earlier phases
/// learned. Later phases and the error answer read it.
#[derive(Debug)]
pub struct Exchange {
    /// Method, target, version and header fields as the client sent them (the body is the
    /// request path's, read once). The tail rewrites it into the upstream request.
    pub head: Parts,
    /// The connection the request came in on.
    pub conn: ConnInfo,
    /// The upstream the path routed to (`None` before routing). The request path routes before
    /// any phase that needs it; such a phase refuses an unrouted request where letting it
    /// through would open something (authentication fails closed) and does nothing where there
    /// is nothing to apply (an upstream's caps).
    pub upstream: Option<Arc<Upstream>>,
    /// The request's `Origin`, once the Host/Origin check has allowed it.
    pub origin: Option<HeaderValue>,
    /// The classified POST body: kind, method, tool and id of every message.
    pub classified: Option<Classified>,
    /// The POST body as read (shared bytes, not a copy): what the tail sends again on a retry,
    /// and what a phase that keeps the request to send it later (a job) stores.
    pub body: Option<Bytes>,
    /// The authenticated caller (none for public upstreams or without `[auth]`).
    pub principal: Option<Arc<Principal>>,
}

impl Exchange {
    /// A request that has not been through any phase yet.
    #[inline]
    pub fn new(head: Parts, conn: ConnInfo) -> Self {
        Self {
            head,
            conn,
            upstream: None,
            origin: None,
            classified: None,
            body: None,
            principal: None,
        }
    }

    /// What the request path keeps once the head has gone upstream (or was answered).
    #[inline]
    pub fn into_facts(self) -> Facts {
        Facts {
            upstream: self.upstream,
            classified: self.classified,
            principal: self.principal,
        }
    }
}

/// What the request path learned about a request, kept for its answer and its log line once the
/// [`Exchange`] has been used up (its head sent upstream, or the request answered): the
/// upstream, the classification (an error answer carries the JSON-RPC id) and the principal.
#[derive(Debug, Default)]
pub struct Facts {
    /// The upstream the path routed to.
    pub upstream: Option<Arc<Upstream>>,
    /// The classified POST body.
    pub classified: Option<Classified>,
    /// The authenticated caller.
    pub principal: Option<Arc<Principal>>,
}
