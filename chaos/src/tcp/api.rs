//! The control API, shaped like Toxiproxy's so its clients can drive the TCP faults:
//!
//! | Method and path | Does |
//! |---|---|
//! | `GET /version` | `{"version": "..."}` |
//! | `POST /reset` | enables every proxy and removes every toxic (204) |
//! | `GET /proxies` | the proxies, as an object keyed by name |
//! | `POST /proxies` | creates one: `{"name","listen","upstream","enabled"?}` (201; 409 if it exists) |
//! | `GET/POST/DELETE /proxies/{name}` | reads; updates (`{"enabled": false}` takes it down); deletes (204) |
//! | `GET/POST /proxies/{name}/toxics` | lists; adds `{"name"?,"type","stream"?,"toxicity"?,"attributes"}` |
//! | `GET/POST/DELETE /proxies/{name}/toxics/{toxic}` | reads; updates `toxicity`/`attributes`; removes (204) |
//!
//! Errors are `{"error": "...", "status": N}` naming the field or object at fault: 400 bad input,
//! 404 unknown proxy or toxic, 405 wrong method (with `Allow`), 409 name or address taken, 413
//! body too large. The server plumbing is shared with the HTTP fault proxy's API
//! (`crate::control`), so the two answer alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use super::{TcpError, TcpProxy, Toxic};
pub use crate::control::ApiError;
use crate::control::{self, Reply, Routes, parse};

/// The proxies the API manages, by name, and the seed new ones get.
#[derive(Debug)]
pub struct Registry {
    seed: u64,
    proxies: Mutex<BTreeMap<String, TcpProxy>>,
}

impl From<TcpError> for ApiError {
    fn from(e: TcpError) -> Self {
        let status = match &e {
            TcpError::ToxicNotFound(_) => StatusCode::NOT_FOUND,
            TcpError::ToxicExists(_) => StatusCode::CONFLICT,
            TcpError::Listen { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                StatusCode::CONFLICT
            }
            TcpError::Listen { .. } => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl Registry {
    /// An empty registry whose proxies draw from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            seed,
            proxies: Mutex::new(BTreeMap::new()),
        })
    }

    /// Creates and starts a proxy (then disables it if `enabled` is false).
    pub async fn create(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        enabled: bool,
    ) -> Result<TcpProxy, ApiError> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("proxy `{name}` already exists"),
            ));
        }
        let proxy = TcpProxy::start(name, listen, upstream, self.seed).await?;
        if !enabled {
            proxy.set_enabled(false).await?;
        }
        proxies.insert(name.to_owned(), proxy.clone());
        Ok(proxy)
    }

    /// The proxy named `name`.
    pub async fn get(&self, name: &str) -> Option<TcpProxy> {
        self.proxies.lock().await.get(name).cloned()
    }

    async fn find(&self, name: &str) -> Result<TcpProxy, ApiError> {
        self.get(name)
            .await
            .ok_or_else(|| ApiError::not_found(format!("proxy `{name}` not found")))
    }

    /// Serves the control API on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        control::serve(self, listener).await;
    }

    /// Answers one API request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        control::handle(self, req).await
    }

    async fn create_from_json(&self, v: &Value) -> Reply {
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad("body: expected a JSON object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["name", "listen", "upstream", "enabled"].contains(&k.as_str()))
        {
            return Err(ApiError::bad(format!("{k}: unknown field")));
        }
        let string = |k: &str| match obj.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            Some(v) => Err(ApiError::bad(format!(
                "{k}: expected a non-empty string, got {v}"
            ))),
            None => Err(ApiError::bad(format!("{k}: missing"))),
        };
        let enabled = match obj.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(ApiError::bad(format!(
                    "enabled: expected a boolean, got {v}"
                )));
            }
        };
        let proxy = self
            .create(
                string("name")?,
                string("listen")?,
                string("upstream")?,
                enabled,
            )
            .await?;
        Ok((StatusCode::CREATED, Some(proxy_json(&proxy).await)))
    }
}

impl Routes for Registry {
    async fn route(&self, method: &Method, path: &[&str], body: &[u8]) -> Reply {
        let m = method.clone();
        match (path, m) {
            (["version"], Method::GET) => control::version(),
            (["reset"], Method::POST) => {
                let proxies: Vec<_> = self.proxies.lock().await.values().cloned().collect();
                for p in proxies {
                    p.reset().await?;
                }
                Ok((StatusCode::NO_CONTENT, None))
            }
            (["proxies"], Method::GET) => {
                let proxies: Vec<_> = self.proxies.lock().await.values().cloned().collect();
                let mut all = serde_json::Map::new();
                for p in proxies {
                    all.insert(p.name().to_owned(), proxy_json(&p).await);
                }
                Ok((StatusCode::OK, Some(Value::Object(all))))
            }
            (["proxies"], Method::POST) => self.create_from_json(&parse(body)?).await,
            (["proxies", name], Method::GET) => Ok((
                StatusCode::OK,
                Some(proxy_json(&self.find(name).await?).await),
            )),
            (["proxies", name], Method::POST) => {
                let proxy = self.find(name).await?;
                update_proxy(&proxy, &parse(body)?).await?;
                Ok((StatusCode::OK, Some(proxy_json(&proxy).await)))
            }
            (["proxies", name], Method::DELETE) => {
                let proxy = self.proxies.lock().await.remove(*name);
                let proxy = proxy
                    .ok_or_else(|| ApiError::not_found(format!("proxy `{name}` not found")))?;
                proxy.set_enabled(false).await?;
                Ok((StatusCode::NO_CONTENT, None))
            }
            (["proxies", name, "toxics"], Method::GET) => {
                let toxics = self.find(name).await?.toxics();
                Ok((
                    StatusCode::OK,
                    Some(Value::Array(toxics.iter().map(Toxic::to_json).collect())),
                ))
            }
            (["proxies", name, "toxics"], Method::POST) => {
                let proxy = self.find(name).await?;
                let toxic = Toxic::from_json(&parse(body)?).map_err(ApiError::bad)?;
                proxy.add_toxic(toxic.clone())?;
                Ok((StatusCode::OK, Some(toxic.to_json())))
            }
            (["proxies", name, "toxics", toxic], Method::GET) => {
                let t =
                    self.find(name).await?.toxic(toxic).ok_or_else(|| {
                        ApiError::from(TcpError::ToxicNotFound((*toxic).to_owned()))
                    })?;
                Ok((StatusCode::OK, Some(t.to_json())))
            }
            (["proxies", name, "toxics", toxic], Method::POST) => {
                let proxy = self.find(name).await?;
                let cur = proxy
                    .toxic(toxic)
                    .ok_or_else(|| ApiError::from(TcpError::ToxicNotFound((*toxic).to_owned())))?;
                let new = cur.update_from_json(&parse(body)?).map_err(ApiError::bad)?;
                proxy.update_toxic(new.clone())?;
                Ok((StatusCode::OK, Some(new.to_json())))
            }
            (["proxies", name, "toxics", toxic], Method::DELETE) => {
                self.find(name).await?.remove_toxic(toxic)?;
                Ok((StatusCode::NO_CONTENT, None))
            }
            (["version"], _) => Err(ApiError::method_not_allowed(method, "GET")),
            (["reset"], _) => Err(ApiError::method_not_allowed(method, "POST")),
            (["proxies"] | ["proxies", _, "toxics"], _) => {
                Err(ApiError::method_not_allowed(method, "GET, POST"))
            }
            (["proxies", _] | ["proxies", _, "toxics", _], _) => {
                Err(ApiError::method_not_allowed(method, "GET, POST, DELETE"))
            }
            _ => Err(ApiError::no_endpoint(path)),
        }
    }
}

async fn update_proxy(proxy: &TcpProxy, v: &Value) -> Result<(), ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad("body: expected a JSON object"))?;
    let listen = proxy.local_addr().await.to_string();
    for (k, new) in obj {
        match (k.as_str(), new) {
            ("enabled", Value::Bool(_)) => {}
            ("enabled", v) => {
                return Err(ApiError::bad(format!(
                    "enabled: expected a boolean, got {v}"
                )));
            }
            ("name", Value::String(s)) if s == proxy.name() => {}
            ("upstream", Value::String(s)) if s == proxy.upstream() => {}
            ("listen", Value::String(s)) if *s == listen => {}
            ("name" | "upstream" | "listen", _) => {
                return Err(ApiError::bad(format!(
                    "{k}: cannot be changed on a live proxy (delete it and create it again)"
                )));
            }
            _ => return Err(ApiError::bad(format!("{k}: unknown field"))),
        }
    }
    if let Some(Value::Bool(enabled)) = obj.get("enabled") {
        proxy.set_enabled(*enabled).await?;
    }
    Ok(())
}

async fn proxy_json(p: &TcpProxy) -> Value {
    json!({
        "name": p.name(),
        "listen": p.local_addr().await.to_string(),
        "upstream": p.upstream(),
        "enabled": p.enabled().await,
        "toxics": p.toxics().iter().map(Toxic::to_json).collect::<Vec<_>>(),
    })
}
