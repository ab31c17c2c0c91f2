//! Each upstream's auth settings, compiled once at start: whether it is protected, the resource
//! identifier its tokens must name, the challenge its 401s and 403s carry, its authorization
//! rules and the credential the sidecar sends to it.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::authz::Rules;
use super::prm;
use crate::config::{AuthConfig, Config, CredentialConfig, UpstreamConfig};
use crate::upstream::ByName;

/// One upstream's compiled auth settings.
#[derive(Debug)]
pub(super) struct UpstreamAuth {
    /// Authentication required (not `public`, and authenticators configured).
    pub(super) protected: bool,
    /// Resource identifier (accepted `aud`).
    pub(super) resource: String,
    /// `resource_metadata="…"` (and `scope="…"`): the tail of every challenge.
    pub(super) challenge_tail: String,
    /// `resource_metadata="…"` alone, for 403s.
    pub(super) metadata_param: String,
    pub(super) rules: Option<Arc<Rules>>,
    pub(super) credential: Option<(HeaderName, HeaderValue)>,
}

/// Every upstream's settings by name, and the protected ones' metadata documents' inputs, in
/// config order.
pub(super) fn compile(config: &Config) -> (ByName<String, UpstreamAuth>, Vec<prm::Resource>) {
    let auth = &config.auth;
    let enabled = auth.enabled();
    let public_url = auth.public_url.as_deref().unwrap_or_default();
    let mut upstreams = ByName::default();
    let mut resources = Vec::new();
    for up in &config.upstream {
        let (settings, resource) = UpstreamAuth::from_config(up, auth, enabled, public_url);
        resources.extend(resource);
        upstreams.insert(up.name.clone(), settings);
    }
    (upstreams, resources)
}

impl UpstreamAuth {
    /// `up`'s settings, with its metadata document's inputs when it is protected (auth
    /// `enabled` and `up` not public). The scopes announced are `auth.scopes_supported`, else
    /// those its rules grant.
    fn from_config(
        up: &UpstreamConfig,
        auth: &AuthConfig,
        enabled: bool,
        public_url: &str,
    ) -> (Self, Option<prm::Resource>) {
        let rules = Rules::new(&up.auth.rules).map(Arc::new);
        let scopes = auth
            .scopes_supported
            .clone()
            .or_else(|| rules.as_ref().map(|r| r.scopes()))
            .unwrap_or_default();
        let mount = up.mount_path();
        let resource = up.resource(auth).unwrap_or_default();
        let protected = enabled && !up.auth.public;
        let metadata_param = format!(
            "resource_metadata=\"{}\"",
            prm::metadata_url(public_url, &mount)
        );
        let challenge_tail = if scopes.is_empty() {
            metadata_param.clone()
        } else {
            format!("{metadata_param}, scope=\"{}\"", scopes.join(" "))
        };
        let document = protected.then(|| prm::Resource {
            mount,
            resource: resource.clone(),
            scopes,
        });
        let settings = Self {
            protected,
            resource,
            challenge_tail,
            metadata_param,
            rules,
            credential: up.auth.credential.as_ref().and_then(credential),
        };
        (settings, document)
    }
}

/// The backend's own credential header, marked sensitive (kept out of debug output). `None` when
/// it does not parse (validation has refused that before this runs).
fn credential(c: &CredentialConfig) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(c.header.as_bytes()).ok()?;
    let mut value = HeaderValue::from_str(c.value.expose()).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}
