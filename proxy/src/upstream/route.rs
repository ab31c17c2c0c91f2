//! Mount paths: which upstream serves a request path, and the backend path it maps to.
//!
//! An upstream mounted at `/legacy` with backend URL `http://b:8000/` maps `/legacy/sse` to
//! `/sse`; mounted at `/mcp` with URL `http://b:8000/mcp` it maps `/mcp` to `/mcp`. The longest
//! matching mount wins, and matching is on whole path segments (`/mcp` never serves `/mcpx`).

use std::sync::Arc;

use std::str::FromStr;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};

use crate::config::normalise_mount;
use crate::config::{ConfigError, UpstreamConfig};
use crate::metrics::{Metrics, UpstreamMetrics};
use crate::upstream::{UpstreamClient, build_client};

/// One backend, ready to serve.
#[derive(Debug)]
pub struct Upstream {
    /// Name from config (a metric label).
    pub name: Arc<str>,
    /// Normalised mount path on the sidecar.
    pub mount: String,
    /// Normalised path prefix on the backend.
    pub base_path: String,
    /// The backend URL as configured.
    pub url: url::Url,
    /// `Host` value for upstream requests.
    pub authority: HeaderValue,
    /// The pooled client.
    pub client: UpstreamClient,
    /// The settings it was built from.
    pub config: UpstreamConfig,
    /// Its request, duration and stream series, resolved once.
    pub metrics: UpstreamMetrics,
    /// Scheme and authority of every upstream request URI, parsed once.
    scheme: Scheme,
    uri_authority: Authority,
}

impl Upstream {
    /// Builds an upstream from validated config; its series are created in `metrics`.
    pub fn from_config(config: &UpstreamConfig, metrics: &Metrics) -> Result<Self, ConfigError> {
        Self::from_config_with(config, metrics, None)
    }

    /// [`Upstream::from_config`] after a config reload: the pooled client of `previous` (the
    /// upstream it replaces) is kept, with its open connections, when everything the pool is
    /// built from is unchanged. An upstream with a `ca_file` always gets a new pool: the file
    /// is read again (a rotated CA applies on reload).
    pub fn rebuilt(
        config: &UpstreamConfig,
        metrics: &Metrics,
        previous: Option<&Upstream>,
    ) -> Result<Self, ConfigError> {
        let pool_settings = |c: &UpstreamConfig| {
            (
                c.url.clone(),
                c.connect_timeout,
                c.pool_idle_timeout,
                c.pool_max_idle,
            )
        };
        let client = previous
            .filter(|p| config.ca_file.is_none() && p.config.ca_file.is_none())
            .filter(|p| pool_settings(&p.config) == pool_settings(config))
            .map(|p| p.client.clone());
        Self::from_config_with(config, metrics, client)
    }

    fn from_config_with(
        config: &UpstreamConfig,
        metrics: &Metrics,
        client: Option<UpstreamClient>,
    ) -> Result<Self, ConfigError> {
        let url = url::Url::parse(&config.url)
            .map_err(|e| ConfigError::invalid("upstream.url", e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let invalid =
            |e: &dyn std::fmt::Display| ConfigError::invalid("upstream.url", e.to_string());
        let uri_authority = Authority::from_str(&authority).map_err(|e| invalid(&e))?;
        let scheme = Scheme::from_str(url.scheme()).map_err(|e| invalid(&e))?;
        let authority = HeaderValue::from_str(&authority).map_err(|e| invalid(&e))?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        // What the pool dials: `scheme://host:port`.
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(uri_authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| invalid(&e))?;
        let tool_globs: Vec<&str> = config.tool.iter().map(|t| t.name.as_str()).collect();
        Ok(Self {
            metrics: UpstreamMetrics::new(metrics, name.clone(), &tool_globs),
            scheme,
            uri_authority,
            name,
            mount: config.mount_path(),
            base_path: normalise_mount(url.path()),
            client: match client {
                Some(kept) => kept,
                None => build_client(config, target)?,
            },
            url,
            authority,
            config: config.clone(),
        })
    }

    /// The rest of `path` below this mount, or `None` if the mount does not cover it.
    pub fn strip_mount<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.mount == "/" {
            return Some(if path == "/" { "" } else { path });
        }
        let rest = path.strip_prefix(self.mount.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The backend URI for a request whose path is below the mount (`rest` from [`strip_mount`]).
    /// Where the mount and the backend path are the same (the usual sidecar set-up) the request's
    /// own path and query are reused as they are, without a copy.
    ///
    /// [`strip_mount`]: Upstream::strip_mount
    pub fn upstream_uri_for(&self, request: &Uri, rest: &str) -> Result<Uri, http::Error> {
        if self.base_path == self.mount
            && let Some(pq) = request.path_and_query()
        {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.uri_authority.clone());
            parts.path_and_query = Some(pq.clone());
            return Ok(Uri::from_parts(parts)?);
        }
        self.upstream_uri(rest, request.query())
    }

    /// The backend URI for a request path below the mount (`rest` from [`Upstream::strip_mount`]).
    pub fn upstream_uri(&self, rest: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        // One allocation for the path; scheme and authority are shared, parsed at start.
        let base = if self.base_path == "/" {
            ""
        } else {
            self.base_path.as_str()
        };
        let mut path =
            String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
        path.push_str(base);
        path.push_str(rest);
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.uri_authority.clone())
            .path_and_query(PathAndQuery::from_maybe_shared(bytes::Bytes::from(path))?)
            .build()
    }
}

/// Picks the upstream for a request path.
#[derive(Debug, Clone)]
pub struct Router {
    /// Sorted by mount length, longest first, so the most specific mount wins.
    upstreams: Arc<[Arc<Upstream>]>,
}

impl Router {
    /// Builds the router; `upstreams` must have distinct mounts (validated by config).
    pub fn new(mut upstreams: Vec<Arc<Upstream>>) -> Self {
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.mount.len()));
        Self {
            upstreams: upstreams.into(),
        }
    }

    /// The upstream serving `path` and the rest of the path below its mount.
    pub fn route<'p>(&self, path: &'p str) -> Option<(&Arc<Upstream>, &'p str)> {
        self.upstreams
            .iter()
            .find_map(|u| u.strip_mount(path).map(|rest| (u, rest)))
    }

    /// All upstreams.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str, path: Option<&str>) -> Arc<Upstream> {
        let cfg = UpstreamConfig::new("u", url, path.map(str::to_owned));
        Arc::new(Upstream::from_config(&cfg, &Metrics::new().unwrap()).unwrap())
    }

    #[tokio::test]
    async fn same_path_mount_maps_identically() {
        let u = upstream("http://127.0.0.1:8000/mcp", None);
        assert_eq!(u.strip_mount("/mcp"), Some(""));
        assert_eq!(u.strip_mount("/mcpx"), None);
        let uri = u.upstream_uri("", Some("a=1")).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:8000/mcp?a=1");
    }

    #[tokio::test]
    async fn request_uri_maps_the_same_on_the_fast_and_the_general_path() {
        for (url, mount, path) in [
            ("http://127.0.0.1:8000/mcp", None, "/mcp?a=1"),
            ("http://127.0.0.1:8000/mcp", None, "/mcp/x"),
            ("http://h:1/", Some("/"), "/"),
            ("http://h:1/", Some("/"), "/a/b?q"),
            ("http://h:1/", Some("/legacy"), "/legacy/sse?s=1"),
            ("http://h:1/mcp", Some("/"), "/x"),
        ] {
            let u = upstream(url, mount);
            let request: Uri = path.parse().unwrap();
            let rest = u.strip_mount(request.path()).unwrap();
            assert_eq!(
                u.upstream_uri_for(&request, rest).unwrap(),
                u.upstream_uri(rest, request.query()).unwrap(),
                "{url} mounted at {mount:?}, {path}"
            );
        }
    }

    #[tokio::test]
    async fn prefix_mount_maps_to_backend_root() {
        let u = upstream("http://127.0.0.1:8000/", Some("/legacy"));
        let rest = u.strip_mount("/legacy/sse").unwrap();
        assert_eq!(u.upstream_uri(rest, None).unwrap().path(), "/sse");
        assert_eq!(
            u.upstream_uri(u.strip_mount("/legacy").unwrap(), None)
                .unwrap()
                .path(),
            "/"
        );
    }

    #[tokio::test]
    async fn root_mount_prefixes_backend_path() {
        let u = upstream("http://h:1/mcp", Some("/"));
        assert_eq!(
            u.upstream_uri(u.strip_mount("/").unwrap(), None)
                .unwrap()
                .path(),
            "/mcp"
        );
        assert_eq!(
            u.upstream_uri(u.strip_mount("/x").unwrap(), None)
                .unwrap()
                .path(),
            "/mcp/x"
        );
    }

    #[tokio::test]
    async fn longest_mount_wins() {
        let r = Router::new(vec![
            upstream("http://h:1/a", Some("/")),
            upstream("http://h:2/b", Some("/mcp")),
        ]);
        assert_eq!(r.route("/mcp/x").unwrap().0.mount, "/mcp");
        assert_eq!(r.route("/other").unwrap().0.mount, "/");
    }
}
