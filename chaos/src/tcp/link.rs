//! One proxied connection: two directions, each a reader (chunks stamped with their arrival
//! time) and a writer that applies the direction's toxics to each chunk, re-reading the proxy's
//! toxics before each one so changes reach live connections.
//!
//! Per toxic, on a direction it applies to (its toxicity drawn once per connection):
//! - `latency`: each chunk leaves `latency` ± `jitter` ms after it arrived (several add up);
//! - `bandwidth`: chunks leave in pieces of at most `rate`×100 bytes, each after `len`/`rate` ms;
//! - `slicer`: chunks leave in slices of `average_size` ± `size_variation` bytes, `delay` µs apart;
//! - `limit_data`: once `bytes` bytes have passed, the connection is closed (exactly that many
//!   bytes are delivered);
//! - `timeout`: data is dropped; after `timeout` ms (counted from when the connection first saw
//!   the toxic) the connection is closed; with 0 it stays open until the toxic goes;
//! - `reset_peer`: data passes until `timeout` ms have passed, then both sockets are closed with
//!   `SO_LINGER` 0, which sends an RST (the peers read `ECONNRESET`);
//! - `slow_close`: once the source has closed, the close is passed on `delay` ms later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};

use super::{Active, Stream, ToxicKind, Toxics};

/// Bytes read per chunk: Toxiproxy's buffer size.
const CHUNK: usize = 32 * 1024;
/// Chunks read ahead of the writer: bounds the memory a slow toxic holds per direction.
const READ_AHEAD: usize = 16;

/// The per-connection toxicity draws, by toxic id.
#[derive(Clone, Debug, Default)]
pub(super) struct Decisions(HashMap<u64, bool>);

impl Decisions {
    /// Draws for the toxics present when the connection is accepted.
    pub(super) fn draw(toxics: &Toxics) -> Self {
        let mut d = Self::default();
        for a in toxics.iter() {
            d.applies(a);
        }
        d
    }

    fn applies(&mut self, a: &Active) -> bool {
        *self
            .0
            .entry(a.id)
            .or_insert_with(|| a.dice.chance(a.toxic.toxicity))
    }
}

/// How a direction (or the connection) ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The source closed and the close was passed on.
    Done,
    /// Close both sides (FIN).
    Close,
    /// Reset both sides (RST).
    Reset,
}

/// Pumps both directions until both are done, a toxic ends the connection, or `cut` fires (the
/// proxy was disabled).
pub(super) async fn run(
    mut client: TcpStream,
    mut upstream: TcpStream,
    toxics: watch::Receiver<Toxics>,
    decisions: Decisions,
    mut cut: watch::Receiver<()>,
) {
    // Chunks are what toxics act on: send each as soon as it is released.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let end = {
        let (cr, cw) = client.split();
        let (ur, uw) = upstream.split();
        let up = direction(cr, uw, Stream::Upstream, toxics.clone(), decisions.clone());
        let down = direction(ur, cw, Stream::Downstream, toxics, decisions);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                _ = cut.changed() => break End::Close,
                e = &mut up, if !up_done => match e {
                    End::Done => up_done = true,
                    other => break other,
                },
                e = &mut down, if !down_done => match e {
                    End::Done => down_done = true,
                    other => break other,
                },
            }
            if up_done && down_done {
                break End::Done;
            }
        }
    };
    match end {
        End::Reset => {
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
        }
        End::Close => {
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
        }
        End::Done => {}
    }
}

async fn direction(
    mut src: ReadHalf<'_>,
    dst: WriteHalf<'_>,
    stream: Stream,
    toxics: watch::Receiver<Toxics>,
    decisions: Decisions,
) -> End {
    let (tx, rx) = mpsc::channel::<(Instant, Bytes)>(READ_AHEAD);
    let reader = async move {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match src.read_buf(&mut buf).await {
                // A read error ends the direction as a close would.
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send((Instant::now(), buf.freeze())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = Writer {
        dst,
        stream,
        decisions,
        since: HashMap::new(),
        passed: HashMap::new(),
        paced_until: Instant::now(),
    }
    .run(rx, toxics);
    tokio::pin!(reader, writer);
    tokio::select! {
        end = &mut writer => end,
        () = &mut reader => writer.await,
    }
}

struct Writer<'a> {
    dst: WriteHalf<'a>,
    stream: Stream,
    decisions: Decisions,
    /// When this connection first saw each timer toxic (`timeout`, `reset_peer`).
    since: HashMap<u64, Instant>,
    /// Bytes passed under each `limit_data` toxic.
    passed: HashMap<u64, u64>,
    /// When the bandwidth limit lets the next byte go.
    paced_until: Instant,
}

impl Writer<'_> {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(Instant, Bytes)>,
        mut toxics: watch::Receiver<Toxics>,
    ) -> End {
        let mut toxics_live = true;
        loop {
            let current = Arc::clone(&toxics.borrow_and_update());
            let mine: Vec<&Active> = current
                .iter()
                .map(AsRef::as_ref)
                .filter(|a| a.toxic.stream == self.stream && self.decisions.applies(a))
                .collect();
            let now = Instant::now();
            let mut deadline: Option<(Instant, End)> = None;
            let mut blackhole = false;
            for a in &mine {
                let (ms, end) = match a.toxic.kind {
                    ToxicKind::Timeout { timeout } => {
                        blackhole = true;
                        if timeout == 0 {
                            continue;
                        }
                        (timeout, End::Close)
                    }
                    ToxicKind::ResetPeer { timeout } => (timeout, End::Reset),
                    _ => continue,
                };
                let at = *self.since.entry(a.id).or_insert(now) + Duration::from_millis(ms);
                if deadline.as_ref().is_none_or(|(d, _)| at < *d) {
                    deadline = Some((at, end));
                }
            }
            let wake = deadline.as_ref().map_or(now, |(d, _)| *d);
            tokio::select! {
                biased;
                () = sleep_until(wake), if deadline.is_some() => {
                    return deadline.map_or(End::Close, |(_, end)| end);
                }
                r = toxics.changed(), if toxics_live => toxics_live = r.is_ok(),
                chunk = rx.recv() => match chunk {
                    None => return self.close(&mine).await,
                    // Timeout drops the data on the floor, as Toxiproxy's.
                    Some(_) if blackhole => {}
                    Some((arrived, data)) => {
                        if let Some(end) = self.deliver(arrived, data, &mine).await {
                            return end;
                        }
                    }
                },
            }
        }
    }

    async fn close(mut self, mine: &[&Active]) -> End {
        let delay: u64 = mine
            .iter()
            .map(|a| match a.toxic.kind {
                ToxicKind::SlowClose { delay } => delay,
                _ => 0,
            })
            .sum();
        if delay > 0 {
            sleep(Duration::from_millis(delay)).await;
        }
        let _ = self.dst.shutdown().await;
        End::Done
    }

    /// Passes one chunk through the toxics; `Some` when the connection must end.
    async fn deliver(
        &mut self,
        arrived: Instant,
        mut data: Bytes,
        mine: &[&Active],
    ) -> Option<End> {
        let mut delay = Duration::ZERO;
        let mut limit: Option<u64> = None;
        let mut rate = 0;
        let mut slicer = None;
        for a in mine {
            match a.toxic.kind {
                ToxicKind::Latency { latency, jitter } => {
                    // latency ± jitter, never below zero.
                    let ms = (latency + a.dice.upto(2 * jitter)).saturating_sub(jitter);
                    delay += Duration::from_millis(ms);
                }
                ToxicKind::LimitData { bytes } => {
                    let left = bytes.saturating_sub(self.passed.get(&a.id).copied().unwrap_or(0));
                    limit = Some(limit.map_or(left, |l| l.min(left)));
                }
                ToxicKind::Bandwidth { rate: r } if r > 0 => {
                    rate = if rate == 0 { r } else { rate.min(r) };
                }
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay,
                } => slicer = Some((a, average_size, size_variation, delay)),
                _ => {}
            }
        }
        if !delay.is_zero() {
            sleep_until(arrived + delay).await;
        }
        if let Some(left) = limit {
            data.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let sent = data.len() as u64;
        while !data.is_empty() {
            let mut n = data.len();
            if let Some((a, avg, var, _)) = slicer {
                let size = (avg + a.dice.upto(2 * var.min(avg))).saturating_sub(var.min(avg));
                n = n.min(usize::try_from(size.max(1)).unwrap_or(usize::MAX));
            }
            if rate > 0 {
                // At most 100 ms worth of data per write, as Toxiproxy.
                n = n.min(usize::try_from(rate * 100).unwrap_or(usize::MAX));
                let now = Instant::now();
                self.paced_until =
                    self.paced_until.max(now) + Duration::from_micros(n as u64 * 1000 / rate);
                sleep_until(self.paced_until).await;
            }
            let piece = data.split_to(n);
            if self.dst.write_all(&piece).await.is_err() {
                return Some(End::Close);
            }
            if let Some((_, _, _, us)) = slicer
                && !data.is_empty()
            {
                sleep(Duration::from_micros(us)).await;
            }
        }
        let mut reached = false;
        for a in mine {
            if let ToxicKind::LimitData { bytes } = a.toxic.kind {
                let passed = self.passed.entry(a.id).or_insert(0);
                *passed += sent;
                reached |= *passed >= bytes;
            }
        }
        reached.then_some(End::Close)
    }
}
