//! The TCP fault proxy, with Toxiproxy's semantics and names: a [`TcpProxy`] listens, connects
//! each accepted client to its upstream and pumps both directions through the proxy's active
//! [`Toxic`]s (see [`link`] for what each does to the bytes). Controlled in-process (this
//! module) or over Toxiproxy's HTTP API ([`api`]).
//!
//! Live changes: adding, updating or removing a toxic applies to the next chunk of data on live
//! connections (as Toxiproxy, whose links swap toxics in place); a toxic's per-connection
//! toxicity draw is made when the connection is accepted (for the toxics present then) or when
//! the connection first sees it. Disabling the proxy closes its listener and cuts every existing
//! connection; enabling it listens again on the same address.

pub mod api;
pub mod cli;
mod link;
pub mod toxic;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rng::Dice;
pub use toxic::{Stream, Toxic, ToxicKind};

/// A toxic as the connections see it: a fresh `id` on every change restarts its per-connection
/// state (toxicity draw, timers, counters), as Toxiproxy restarts a toxic's stub.
#[derive(Debug)]
struct Active {
    id: u64,
    toxic: Toxic,
    dice: Dice,
}

/// The toxics of a proxy, in the order they were added (the order they apply in).
type Toxics = Arc<Vec<Arc<Active>>>;

/// Errors of the in-process API; the control API maps them to statuses.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// A toxic of that name is already on the proxy (409).
    #[error("toxic `{0}` already exists")]
    ToxicExists(String),
    /// No toxic of that name on the proxy (404).
    #[error("toxic `{0}` not found")]
    ToxicNotFound(String),
    /// The listen address could not be bound (409: usually in use).
    #[error("listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running fault proxy; clones share it. Dropping the last handle does not stop it: call
/// [`TcpProxy::set_enabled`]`(false)` (its listener and connections are tasks of their own).
#[derive(Clone, Debug)]
pub struct TcpProxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    upstream: String,
    seed: u64,
    toxics: watch::Sender<Toxics>,
    state: tokio::sync::Mutex<Listening>,
    /// Ids for [`Active`] (under a std mutex: never held across an await).
    next_id: Mutex<u64>,
}

#[derive(Debug)]
struct Listening {
    /// The bound address (after a first bind to port 0, the port it got).
    listen: SocketAddr,
    /// `Some` while enabled: dropping it cuts every connection, and ends the accept loop.
    cut: Option<watch::Sender<()>>,
    accept: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts a proxy named `name` listening on `listen` and forwarding to `upstream`
    /// (`host:port`, resolved on each connection); `seed` seeds its toxicity draws and jitter.
    pub async fn start(
        name: &str,
        listen: &str,
        upstream: &str,
        seed: u64,
    ) -> Result<Self, TcpError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| TcpError::Listen {
                addr: listen.to_owned(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TcpError::Listen {
            addr: listen.to_owned(),
            source,
        })?;
        let (toxics, _) = watch::channel(Toxics::default());
        let proxy = Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                upstream: upstream.to_owned(),
                seed,
                toxics,
                state: tokio::sync::Mutex::new(Listening {
                    listen: addr,
                    cut: None,
                    accept: None,
                }),
                next_id: Mutex::new(0),
            }),
        };
        let mut state = proxy.inner.state.lock().await;
        proxy.serve(&mut state, listener);
        drop(state);
        Ok(proxy)
    }

    fn serve(&self, state: &mut Listening, listener: TcpListener) {
        let (cut, cut_rx) = watch::channel(());
        state.cut = Some(cut);
        state.accept = Some(tokio::spawn(accept_loop(
            Arc::clone(&self.inner),
            listener,
            cut_rx,
        )));
    }

    /// The proxy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The upstream address, as given.
    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// The address it listens on (also while disabled: where it will listen again).
    pub async fn local_addr(&self) -> SocketAddr {
        self.inner.state.lock().await.listen
    }

    /// Whether it accepts connections.
    pub async fn enabled(&self) -> bool {
        self.inner.state.lock().await.cut.is_some()
    }

    /// Enables (listens again on the same address) or disables (closes the listener and cuts
    /// every connection, as Toxiproxy) the proxy. Returns once done.
    pub async fn set_enabled(&self, enabled: bool) -> Result<(), TcpError> {
        let mut state = self.inner.state.lock().await;
        if enabled {
            if state.cut.is_none() {
                let addr = state.listen;
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| TcpError::Listen {
                            addr: addr.to_string(),
                            source,
                        })?;
                self.serve(&mut state, listener);
            }
        } else {
            state.cut = None;
            if let Some(accept) = state.accept.take() {
                // The loop ends on the cut; awaiting it means the listener is closed on return.
                let _ = accept.await;
            }
        }
        Ok(())
    }

    /// The toxics, in the order they apply.
    pub fn toxics(&self) -> Vec<Toxic> {
        self.inner
            .toxics
            .borrow()
            .iter()
            .map(|a| a.toxic.clone())
            .collect()
    }

    /// The toxic named `name`.
    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        self.inner
            .toxics
            .borrow()
            .iter()
            .find(|a| a.toxic.name == name)
            .map(|a| a.toxic.clone())
    }

    fn active(&self, toxic: Toxic) -> Arc<Active> {
        let mut next = self
            .inner
            .next_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        Arc::new(Active {
            id: *next,
            dice: Dice::new(self.inner.seed, &toxic.name),
            toxic,
        })
    }

    /// Adds a toxic; it applies to new data on live connections too.
    pub fn add_toxic(&self, toxic: Toxic) -> Result<(), TcpError> {
        let active = self.active(toxic);
        let mut result = Ok(());
        self.inner.toxics.send_if_modified(|cur| {
            if cur.iter().any(|a| a.toxic.name == active.toxic.name) {
                result = Err(TcpError::ToxicExists(active.toxic.name.clone()));
                return false;
            }
            let mut next = Vec::clone(cur);
            next.push(Arc::clone(&active));
            *cur = Arc::new(next);
            true
        });
        result
    }

    /// Replaces the toxic of the same name (restarting its per-connection state).
    pub fn update_toxic(&self, toxic: Toxic) -> Result<(), TcpError> {
        let active = self.active(toxic);
        let mut result = Err(TcpError::ToxicNotFound(active.toxic.name.clone()));
        self.inner.toxics.send_if_modified(|cur| {
            let Some(i) = cur.iter().position(|a| a.toxic.name == active.toxic.name) else {
                return false;
            };
            let mut next = Vec::clone(cur);
            next[i] = Arc::clone(&active);
            *cur = Arc::new(next);
            result = Ok(());
            true
        });
        result
    }

    /// Removes the toxic named `name`; live connections stop applying it to new data.
    pub fn remove_toxic(&self, name: &str) -> Result<(), TcpError> {
        let mut found = false;
        self.inner.toxics.send_if_modified(|cur| {
            let next: Vec<_> = cur
                .iter()
                .filter(|a| a.toxic.name != name)
                .cloned()
                .collect();
            found = next.len() != cur.len();
            if found {
                *cur = Arc::new(next);
            }
            found
        });
        if found {
            Ok(())
        } else {
            Err(TcpError::ToxicNotFound(name.to_owned()))
        }
    }

    /// Removes every toxic and enables the proxy (Toxiproxy's `/reset` for one proxy).
    pub async fn reset(&self) -> Result<(), TcpError> {
        self.inner.toxics.send_if_modified(|cur| {
            let had = !cur.is_empty();
            *cur = Toxics::default();
            had
        });
        self.set_enabled(true).await
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, mut cut: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cut.changed() => return,
            a = listener.accept() => a,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                tracing::warn!(proxy = %inner.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Draw the toxicity decisions here, in accept order, so a seed replays them.
        let toxics = inner.toxics.subscribe();
        let decisions = link::Decisions::draw(&toxics.borrow());
        let upstream = inner.upstream.clone();
        let name = inner.name.clone();
        let cut = cut.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&upstream).await {
                Ok(up) => link::run(client, up, toxics, decisions, cut).await,
                // Toxiproxy closes the client when the upstream refuses.
                Err(e) => tracing::debug!(proxy = %name, error = %e, "upstream connect failed"),
            }
        });
    }
}
