//! Authentication's phases in the request path's one call shape ([`crate::exchange`]). Where
//! each runs is decided by `dispatch` in [`crate::forward`]; the work is done by the methods
//! they call, which the unit tests exercise directly.

use super::Auth;
use crate::error::ProxyError;
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
        // Fails closed: without an upstream there is nothing to authenticate for.
        let Some(upstream) = ex.upstream.as_deref() else {
            return Err(unrouted(ex));
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
            return Err(unrouted(ex));
        };
        self.authorize_messages(upstream, ex.principal.as_ref(), ex.classified.as_ref())?;
        Ok(Step::Next)
    }
}

/// The refusal of a request that reached an authentication phase without an upstream (the
/// request path routes first, so only a misplaced phase can see one).
fn unrouted(ex: &Exchange) -> ProxyError {
    ProxyError::NoRoute {
        path: ex.head.uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_info::ConnInfo;

    #[tokio::test]
    async fn an_unrouted_request_is_refused_by_authentication_not_let_through() {
        let auth = Auth::disabled();
        let head = http::Request::new(()).into_parts().0;
        let conn = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 1)), false);
        let mut ex = Exchange::new(head, conn);
        assert!(matches!(
            auth.authenticate(&mut ex, &mut ()).await,
            Err(ProxyError::NoRoute { .. })
        ));
        assert!(matches!(
            auth.authorize(&mut ex, &mut ()),
            Err(ProxyError::NoRoute { .. })
        ));
    }
}
