//! [`Watches`]: one `SUBSCRIBE` connection per replica, shared by every follower of a job held
//! by another replica. A job's channel is subscribed while at least one follower here watches
//! it and unsubscribed after the last one leaves, so a thousand followers cost one Redis
//! connection, not a thousand.
//!
//! When the connection drops, every watch's channel closes (its followers then rely on
//! re-reading the record) and the next watch connects again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::broadcast;

use crate::jobs::model::JobState;
use crate::redis_conn::{RedisConn, RedisError};

/// The most a follower waits for its subscription to be confirmed; past it, the follow fails
/// as the store being unavailable (a 503), rather than hang a request.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);
/// States buffered per watched job for followers that are behind (they re-read the record when
/// they lag).
const WATCH_BUFFER: usize = 64;

/// The followers' channels, by Redis channel name: a sender and how many watches use it.
type Channels = HashMap<String, (broadcast::Sender<JobState>, usize)>;

/// The shared subscription connection and the watched channels.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    /// The connection's sink, once connected; `None` after it dropped. Held across a
    /// (un)subscribe so that the two never interleave for one channel.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    channels: Arc<Mutex<Channels>>,
}

/// A follower's watch of one job: its receiver; dropping it ends the watch.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) states: broadcast::Receiver<JobState>,
    channel: String,
    watches: Arc<Watches>,
}

impl Watches {
    /// Watches `channel`: subscribed (and confirmed) when this returns.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        conn: &RedisConn,
        channel: String,
    ) -> Result<Watch, RedisError> {
        let mut sink = self.sink.lock().await;
        if sink.is_none() {
            *sink = Some(self.connect(conn).await?);
        }
        let (states, first) = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = channels
                .entry(channel.clone())
                .or_insert_with(|| (broadcast::channel(WATCH_BUFFER).0, 0));
            entry.1 += 1;
            (entry.0.subscribe(), entry.1 == 1)
        };
        let watch = Watch {
            states,
            channel: channel.clone(),
            watches: self.clone(),
        };
        if first && let Some(s) = sink.as_mut() {
            let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, s.subscribe(&channel)).await;
            match subscribed {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    *sink = None;
                    return Err(RedisError::Command {
                        op: "subscribe",
                        source,
                    });
                }
                Err(_) => {
                    *sink = None;
                    return Err(RedisError::Timeout {
                        op: "subscribe",
                        timeout: SUBSCRIBE_TIMEOUT,
                    });
                }
            }
        }
        Ok(watch)
    }

    /// Opens the shared connection and starts its reader, which hands each message to its
    /// channel's followers and, when the connection ends, closes every watch.
    async fn connect(self: &Arc<Self>, conn: &RedisConn) -> Result<PubSubSink, RedisError> {
        let (sink, mut stream) = conn.pubsub().await?.split();
        let channels = self.channels.clone();
        let watches = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Ok(state) = serde_json::from_slice::<JobState>(msg.get_payload_bytes()) else {
                    continue;
                };
                let channels = channels.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((tx, _)) = channels.get(msg.get_channel_name()) {
                    let _ = tx.send(state);
                }
            }
            tracing::debug!(
                "job watch connection ended; followers fall back on reading the records"
            );
            if let Some(watches) = watches.upgrade() {
                // Both under the sink's lock: a watch that connects again afterwards keeps its
                // channel. Dropping the senders closes every follower's receiver.
                let mut sink = watches.sink.lock().await;
                *sink = None;
                watches
                    .channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
            }
        });
        Ok(sink)
    }

    /// Unsubscribes `channel` if no watch uses it any more (checked under the sink's lock, so a
    /// watch that came meanwhile keeps it).
    async fn release(&self, channel: String) {
        let mut sink = self.sink.lock().await;
        let unused = !self
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&channel);
        if unused && let Some(s) = sink.as_mut() {
            let done = tokio::time::timeout(SUBSCRIBE_TIMEOUT, s.unsubscribe(&channel)).await;
            if !matches!(done, Ok(Ok(()))) {
                // The connection is in doubt: the next watch opens a new one.
                *sink = None;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let last = {
            let mut channels = self
                .watches
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match channels.get_mut(&self.channel) {
                Some(entry) if entry.1 > 1 => {
                    entry.1 -= 1;
                    false
                }
                Some(_) => {
                    channels.remove(&self.channel);
                    true
                }
                None => false,
            }
        };
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let watches = self.watches.clone();
            let channel = std::mem::take(&mut self.channel);
            runtime.spawn(async move { watches.release(channel).await });
        }
    }
}
