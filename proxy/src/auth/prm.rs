//! OAuth 2.0 Protected Resource Metadata (RFC 9728), served by the sidecar itself on the main
//! listener: `/.well-known/oauth-protected-resource/<mount>` per protected upstream, and the bare
//! `/.well-known/oauth-protected-resource` (the only protected upstream's document, or one for
//! `public_url` naming the union of scopes). MCP clients read it after a 401 to find the
//! authorization server. No token needed; CORS-readable, so browser-based clients can fetch it.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::json;

use crate::body::{ProxyBody, empty, full};
use crate::config::AuthConfig;
use crate::error::ProxyError;

/// The well-known path prefix.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// How long clients and caches may keep a metadata document (it changes only with config).
const MAX_AGE: &str = "public, max-age=300";

/// The metadata URL for a resource mounted at `mount` on `public_url`.
pub fn metadata_url(public_url: &str, mount: &str) -> String {
    let base = public_url.trim_end_matches('/');
    if mount == "/" {
        format!("{base}{WELL_KNOWN}")
    } else {
        format!("{base}{WELL_KNOWN}{mount}")
    }
}

/// One protected resource's document inputs.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Mount path on the sidecar.
    pub mount: String,
    /// Resource identifier.
    pub resource: String,
    /// Scopes announced.
    pub scopes: Vec<String>,
}

/// The metadata documents, rendered once at start.
#[derive(Debug, Default)]
pub struct Prm {
    docs: HashMap<String, Bytes>,
}

impl Prm {
    /// The documents of the protected upstreams' `resources`, naming `auth.authorization_servers`
    /// (default: the `issuer` of every `[[auth.jwt]]`).
    pub fn from_config(auth: &AuthConfig, resources: &[Resource]) -> Self {
        let authorization_servers: Vec<String> = auth
            .authorization_servers
            .clone()
            .unwrap_or_else(|| auth.jwt.iter().map(|j| j.issuer.clone()).collect());
        let public_url = auth.public_url.as_deref().unwrap_or_default();
        Self::new(resources, &authorization_servers, public_url)
    }

    /// Renders the documents for `resources`.
    pub fn new(resources: &[Resource], authorization_servers: &[String], public_url: &str) -> Self {
        let render = |resource: &str, scopes: &[String]| -> Bytes {
            let mut doc = json!({
                "resource": resource,
                "authorization_servers": authorization_servers,
                "bearer_methods_supported": ["header"],
            });
            if !scopes.is_empty() {
                doc["scopes_supported"] = json!(scopes);
            }
            Bytes::from(doc.to_string())
        };
        let mut docs = HashMap::new();
        for r in resources {
            let path = if r.mount == "/" {
                WELL_KNOWN.to_owned()
            } else {
                format!("{WELL_KNOWN}{}", r.mount)
            };
            docs.insert(path, render(&r.resource, &r.scopes));
        }
        if !docs.contains_key(WELL_KNOWN) && !resources.is_empty() {
            let root = match resources {
                [only] => render(&only.resource, &only.scopes),
                _ => {
                    let mut scopes: Vec<String> = Vec::new();
                    for s in resources.iter().flat_map(|r| &r.scopes) {
                        if !scopes.contains(s) {
                            scopes.push(s.clone());
                        }
                    }
                    render(public_url.trim_end_matches('/'), &scopes)
                }
            };
            docs.insert(WELL_KNOWN.to_owned(), root);
        }
        Self { docs }
    }

    /// The answer for `path`, if it is a metadata path this sidecar serves.
    pub fn handle(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<Result<Response<ProxyBody>, ProxyError>> {
        let trimmed = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let doc = self.docs.get(trimmed)?;
        let mut response = match *method {
            Method::GET => Response::new(full(doc.clone())),
            Method::HEAD => Response::new(empty()),
            Method::OPTIONS => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("mcp-protocol-version"),
                );
                r
            }
            _ => {
                return Some(Err(ProxyError::MethodNotAllowed {
                    method: method.to_string(),
                }));
            }
        };
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        Some(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn res(mount: &str, scopes: &[&str]) -> Resource {
        Resource {
            mount: mount.into(),
            resource: format!("https://mcp.example.com{mount}"),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    async fn body(r: Response<ProxyBody>) -> serde_json::Value {
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn documents_per_mount_and_root() {
        let prm = Prm::new(
            &[res("/mcp", &["crawl"]), res("/other", &["read", "crawl"])],
            &["https://auth.example.com".into()],
            "https://mcp.example.com/",
        );
        let doc = body(
            prm.handle(&Method::GET, "/.well-known/oauth-protected-resource/mcp")
                .unwrap()
                .unwrap(),
        )
        .await;
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://auth.example.com");
        assert_eq!(doc["scopes_supported"], json!(["crawl"]));
        let root = body(prm.handle(&Method::GET, WELL_KNOWN).unwrap().unwrap()).await;
        assert_eq!(root["resource"], "https://mcp.example.com");
        assert_eq!(root["scopes_supported"], json!(["crawl", "read"]));
        assert!(
            prm.handle(&Method::GET, "/.well-known/oauth-protected-resource/nope")
                .is_none()
        );
        assert!(prm.handle(&Method::POST, WELL_KNOWN).unwrap().is_err());
    }

    #[tokio::test]
    async fn single_resource_is_also_the_root_document() {
        let prm = Prm::new(&[res("/mcp", &[])], &[], "https://mcp.example.com");
        let root = body(prm.handle(&Method::GET, WELL_KNOWN).unwrap().unwrap()).await;
        assert_eq!(root["resource"], "https://mcp.example.com/mcp");
        assert!(root.get("scopes_supported").is_none());
        assert_eq!(
            metadata_url("https://mcp.example.com/", "/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }
}
