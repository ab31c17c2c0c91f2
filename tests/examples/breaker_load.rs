//! Constant-rate latency load generator for `scripts/bench-breaker.sh` (wrk2-style: Debian has no
//! wrk2). Each case sends one POST at a time over one keep-alive HTTP/1.1 connection at a fixed
//! rate, and latency is measured from the *intended* send time, so a slow answer that delays the
//! next send is charged to the next request too (no coordinated omission). The client spins on a
//! non-blocking socket instead of sleeping in epoll, so its own wake-up latency (tens of
//! microseconds on a VM) is not charged to the server: give it a CPU of its own.
//!
//! ```text
//! breaker_load NAME=URL=STATUS[=HEADER] ...
//!   BENCH_RATE=2000 requests/s per case    BENCH_SECS=5 per case and round
//!   BENCH_ROUNDS=3 rounds (cases interleaved, rotating order)    BENCH_WARMUP_SECS=1
//! ```
//!
//! The first case is the baseline: the table shows every case's percentiles and its ratio to the
//! baseline. Every answer must have STATUS (and HEADER, when given), or the exit code is 1.

use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{Context, Result, bail};

/// How long before the intended send time the pacer stops sleeping and spins: more than the
/// scheduler's usual wake-up lateness, so oversleeping is not charged to the sidecar.
const SPIN_BEFORE: Duration = Duration::from_micros(300);

const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

struct Case {
    name: String,
    uri: hyper::Uri,
    status: u16,
    header: Option<String>,
    latencies: Vec<Duration>,
    sent: u64,
    wrong: u64,
}

fn env_num(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let rate = env_num("BENCH_RATE", 2000.0)?;
    let secs = env_num("BENCH_SECS", 5.0)?;
    let rounds = env_num("BENCH_ROUNDS", 3.0)? as usize;
    let warmup = env_num("BENCH_WARMUP_SECS", 1.0)?;
    let mut cases = std::env::args()
        .skip(1)
        .map(|arg| {
            let parts: Vec<&str> = arg.splitn(4, '=').collect();
            let [name, uri, status, rest @ ..] = parts.as_slice() else {
                bail!("expected NAME=URL=STATUS[=HEADER], got {arg}");
            };
            Ok(Case {
                name: (*name).to_owned(),
                uri: uri.parse().with_context(|| format!("url {uri}"))?,
                status: status.parse().with_context(|| format!("status {status}"))?,
                header: rest.first().map(|h| h.to_ascii_lowercase()),
                latencies: Vec::new(),
                sent: 0,
                wrong: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if cases.is_empty() {
        bail!("no cases; usage: breaker_load NAME=URL=STATUS[=HEADER] ...");
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    for case in cases.iter_mut() {
        run(case, period, Duration::from_secs_f64(warmup), false)?;
    }
    for round in 0..rounds {
        let n = cases.len();
        for k in 0..n {
            let case = &mut cases[(round + k) % n];
            run(case, period, Duration::from_secs_f64(secs), true)?;
        }
    }
    report(&mut cases, rate, secs, rounds);
    if cases.iter().any(|c| c.wrong > 0) {
        bail!("some answers had the wrong status or lacked the expected header");
    }
    Ok(())
}

/// Sends at `period` intervals for `duration` over one connection.
fn run(case: &mut Case, period: Duration, duration: Duration, record: bool) -> Result<()> {
    let authority = case
        .uri
        .authority()
        .context("url without host:port")?
        .to_string();
    let path = case.uri.path().to_owned();
    let mut conn = Conn::open(&authority)?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let total = (duration.as_secs_f64() / period.as_secs_f64()) as u64;
    let start = Instant::now() + Duration::from_millis(10);
    for i in 0..total {
        let intended = start + period.mul_f64(i as f64);
        pace(intended);
        conn.stream.write_all(request.as_bytes())?;
        let answer = conn.read_response()?;
        let latency = intended.elapsed();
        let ok = answer.status == case.status
            && case
                .header
                .as_deref()
                .is_none_or(|h| answer.headers.contains(&format!("\r\n{h}:")));
        case.sent += 1;
        if !ok {
            case.wrong += 1;
        }
        if record {
            case.latencies.push(latency);
        }
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 connection read by spinning on a non-blocking socket, so the client's
/// own wake-up latency is not charged to the server.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    /// Lower-cased header block, starting with `\r\n`.
    headers: String,
}

impl Conn {
    fn open(authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Reads more bytes into the buffer, spinning (with a yield for whatever shares the CPU)
    /// until some arrive.
    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("connection closed by the server"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read_response(&mut self) -> Result<Answer> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("malformed status line")?;
        let headers = head[head.find("\r\n").unwrap_or(head.len())..].to_owned();
        let mut at = head_end + 4;
        if let Some(len) = header_value(&headers, "content-length") {
            let len: usize = len.parse().context("content-length")?;
            while self.buf.len() < at + len {
                self.fill()?;
            }
            at += len;
        } else if header_value(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(pos) = find(&self.buf[at..], b"\r\n") {
                        break at + pos;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[at..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .context("chunk size")?;
                let chunk_end = line_end + 2 + size + 2;
                while self.buf.len() < chunk_end {
                    self.fill()?;
                }
                at = chunk_end;
                if size == 0 {
                    break;
                }
            }
        }
        self.buf.drain(..at);
        Ok(Answer { status, headers })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header_value<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .split("\r\n")
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Waits until `until`: sleeps most of the way, then spins.
fn pace(until: Instant) {
    let now = Instant::now();
    if until > now + SPIN_BEFORE {
        std::thread::sleep(until - now - SPIN_BEFORE);
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(cases: &mut [Case], rate: f64, secs: f64, rounds: usize) {
    println!(
        "constant rate {rate} req/s, {secs} s x {rounds} rounds per case, 1 connection, \
         latency from intended send time (µs)"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "case", "n", "p50", "p90", "p99", "p99.9", "max", "p50/base", "p99/base"
    );
    for case in cases.iter_mut() {
        case.latencies.sort_unstable();
    }
    let base50 = micros(percentile(&cases[0].latencies, 50.0));
    let base99 = micros(percentile(&cases[0].latencies, 99.0));
    for case in cases.iter() {
        let l = &case.latencies;
        let (p50, p99) = (micros(percentile(l, 50.0)), micros(percentile(l, 99.0)));
        println!(
            "{:<28} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10.2} {:>10.2}",
            case.name,
            l.len(),
            p50,
            micros(percentile(l, 90.0)),
            p99,
            micros(percentile(l, 99.9)),
            micros(l.last().copied().unwrap_or_default()),
            p50 / base50,
            p99 / base99,
        );
    }
    for case in cases.iter() {
        println!(
            "sent[{}]={} wrong[{}]={} p99_us[{}]={:.1}",
            case.name,
            case.sent,
            case.name,
            case.wrong,
            case.name,
            micros(percentile(&case.latencies, 99.0))
        );
    }
}
