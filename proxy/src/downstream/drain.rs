//! Graceful shutdown of the sidecar's own HTTP/1 connections (hyper's `GracefulShutdown` takes
//! only hyper's connection types): a signal every connection watches, and a wait that ends when
//! the last of them is gone. The pattern of linkerd's `drain` crate, on tokio's primitives.

use std::convert::Infallible;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The server's side: signals the connections and waits for them.
#[derive(Debug)]
pub struct Drain {
    token: CancellationToken,
    alive: Option<mpsc::Sender<Infallible>>,
    gone: mpsc::Receiver<Infallible>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// No connections yet, not draining.
    pub fn new() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Self {
            token: CancellationToken::new(),
            alive: Some(alive),
            gone,
        }
    }

    /// A handle for one connection; the drain waits until it is dropped.
    pub fn watch(&self) -> Watch {
        Watch {
            token: self.token.clone(),
            _alive: self.alive.clone(),
        }
    }

    /// Tells every connection to finish what it is doing and close, and waits until all have.
    pub async fn drain(mut self) {
        self.token.cancel();
        self.alive = None;
        // Every sender gone: `recv` returns `None` (nothing is ever sent).
        let _ = self.gone.recv().await;
    }
}

/// A connection's handle: whether the server is draining, and a future that says when.
#[derive(Debug)]
pub struct Watch {
    token: CancellationToken,
    _alive: Option<mpsc::Sender<Infallible>>,
}

impl Watch {
    /// Whether shutdown has begun: the current request is the connection's last.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown begins.
    pub fn signaled(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_every_watch_and_signals_them() {
        let drain = Drain::new();
        let watch = drain.watch();
        assert!(!watch.is_draining());
        let signaled = watch.signaled();
        let mut waiting = tokio::spawn(drain.drain());
        signaled.await;
        assert!(watch.is_draining());
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "a connection is still open");
        drop(watch);
        (&mut waiting).await.unwrap();
    }
}
