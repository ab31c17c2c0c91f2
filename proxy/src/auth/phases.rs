//! Authentication's phases in the request path's one call shape ([`crate::exchange`]). Where
//! each runs is decided by `dispatch` in [`crate::forward`]; the work is done by the methods
//! they call, which the unit tests exercise directly.

use super::Auth;
use crate::exchange::{Exchange, Outcome, Policy, Step};

impl Policy for Auth {
    type State = ();
}

impl Auth {
    /// Answers a request for the protected resource metadata (the sidecar's own document,
    /// fetched without a credential, so before routing); every other request goes on.
    #[inline]
    pub fn metadata(&self, ex: &mut Exchange, _: &mut ()) -> Outcome {
        match self.metadata_answer(&ex.head.method, ex.head.uri.path()) {
            None => Ok(Step::Next),
            Some(answer) => answer.map(Step::Answer),
        }
    }

    /// Refuses a `Host` (421) or `Origin` (403) outside the allow-lists, and records an allowed
    /// `Origin` for the CORS phase.
    #[inline]
    pub fn check_host_origin(&self, ex: &mut Exchange, _: &mut ()) -> Outcome {
        ex.origin = self
            .host_and_origin(&ex.head.headers, &ex.head.uri)?
            .cloned();
        Ok(Step::Next)
    }

    /// Finds the caller's principal (401 when a protected upstream gets no valid credential).
    pub async fn authenticate(&self, ex: &mut Exchange, _: &mut ()) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        ex.principal = self
            .authenticate_headers(upstream, &ex.head.headers)
            .await?;
        Ok(Step::Next)
    }

    /// Checks every message of the classified body against the upstream's rules (403).
    #[inline]
    pub fn authorize(&self, ex: &mut Exchange, _: &mut ()) -> Outcome {
        let Some(upstream) = ex.upstream.as_deref() else {
            return Ok(Step::Next);
        };
        self.authorize_messages(upstream, ex.principal.as_ref(), ex.classified.as_ref())?;
        Ok(Step::Next)
    }
}
