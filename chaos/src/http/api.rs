//! The HTTP fault proxy's control API, shaped like the TCP proxy's Toxiproxy one where it fits
//! (`/reset`, `/version`, the error shape) with the faults in place of toxics:
//!
//! | Method and path | Does |
//! |---|---|
//! | `GET /version` | `{"version": "..."}` |
//! | `POST /reset` | removes every fault (204) |
//! | `GET /faults` | the faults, in the order they are checked, each with its counts |
//! | `POST /faults` | adds one: a JSON object with the keys of a `[[fault]]` table (201; 409 if the name is taken) |
//! | `GET /faults/{name}` | one fault |
//! | `DELETE /faults/{name}` | removes it (204) |
//!
//! A fault is answered as `{"name", "percent", "match": {...}, "action": {KEY: VALUE}, "counts":
//! {"matched", "fired"}}`, `match` and `action` with the keys of the TOML file. Errors are
//! `{"error": "...", "status": N}` naming the key or fault at fault: 400 bad input, 404 unknown
//! fault or path, 405 wrong method (with `Allow`), 409 name taken, 413 body over 64 KiB.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::spec::{FaultSpec, SpecError, action_json, match_json};
use super::{FaultCounts, FaultError, HttpFault, HttpFaultProxy};
use crate::control::{self, ApiError, Reply, Routes, parse};

/// Serves the control API of `proxy` on `listener` until the task is dropped.
pub async fn serve(proxy: Arc<HttpFaultProxy>, listener: TcpListener) {
    control::serve(proxy, listener).await;
}

/// Answers one API request about `proxy`.
pub async fn handle(proxy: &HttpFaultProxy, req: Request<Incoming>) -> Response<Full<Bytes>> {
    control::handle(proxy, req).await
}

impl Routes for HttpFaultProxy {
    async fn route(&self, method: &Method, path: &[&str], body: &[u8]) -> Reply {
        match (path, method) {
            (["version"], &Method::GET) => control::version(),
            (["reset"], &Method::POST) => {
                self.clear();
                Ok((StatusCode::NO_CONTENT, None))
            }
            (["faults"], &Method::GET) => {
                let all = self.shared.snapshot();
                let all = all
                    .iter()
                    .map(|f| fault_json(&f.fault, f.counts()))
                    .collect();
                Ok((StatusCode::OK, Some(Value::Array(all))))
            }
            (["faults"], &Method::POST) => {
                let fault = FaultSpec::from_json(&parse(body)?).map_err(spec_error)?;
                // Answered from what was added, not looked up again: a DELETE may follow at once.
                let added = fault_json(&fault, FaultCounts::default());
                self.add_fault(fault).map_err(fault_error)?;
                Ok((StatusCode::CREATED, Some(added)))
            }
            (["faults", name], &Method::GET) => Ok((StatusCode::OK, Some(self.find(name)?))),
            (["faults", name], &Method::DELETE) => {
                if self.remove_fault(name) {
                    Ok((StatusCode::NO_CONTENT, None))
                } else {
                    Err(not_found(name))
                }
            }
            (["version"], _) => Err(ApiError::method_not_allowed(method, "GET")),
            (["reset"], _) => Err(ApiError::method_not_allowed(method, "POST")),
            (["faults"], _) => Err(ApiError::method_not_allowed(method, "GET, POST")),
            (["faults", _], _) => Err(ApiError::method_not_allowed(method, "GET, DELETE")),
            _ => Err(ApiError::no_endpoint(path)),
        }
    }
}

impl HttpFaultProxy {
    /// The fault named `name` with its counts, as the API shows it.
    fn find(&self, name: &str) -> Result<Value, ApiError> {
        self.shared
            .snapshot()
            .iter()
            .find(|f| f.fault.name == name)
            .map(|f| fault_json(&f.fault, f.counts()))
            .ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("fault `{name}` not found"))
}

/// A fault as the API shows it: its settings with the keys of the TOML file, and its counts.
fn fault_json(fault: &HttpFault, counts: FaultCounts) -> Value {
    json!({
        "name": fault.name,
        "percent": fault.percent,
        "match": match_json(&fault.matcher),
        "action": action_json(&fault.action),
        "counts": {"matched": counts.matched, "fired": counts.fired},
    })
}

/// A body that does not describe a fault: 400, naming the key first (`match.path: invalid
/// type...`) where the TOML reader named one.
fn spec_error(e: SpecError) -> ApiError {
    match e {
        SpecError::Toml(e) => {
            let text = e.to_string();
            let text = text.trim_end();
            // The reader's errors end with "in `KEY`" on a line of their own.
            match text.rsplit_once("\nin `") {
                Some((message, key)) => ApiError::bad(format!(
                    "{}: {}",
                    key.trim_end_matches('`'),
                    message.replace('\n', " ")
                )),
                None => ApiError::bad(text.replace('\n', " ")),
            }
        }
        e @ SpecError::Fault { .. } => ApiError::bad(e.to_string()),
    }
}

fn fault_error(e: FaultError) -> ApiError {
    let status = match e {
        FaultError::Duplicate(_) => StatusCode::CONFLICT,
        FaultError::NoName | FaultError::Percent { .. } | FaultError::Status { .. } => {
            StatusCode::BAD_REQUEST
        }
    };
    ApiError::new(status, e.to_string())
}
