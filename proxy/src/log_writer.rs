//! Where log lines go: stderr, written a line at a time on a terminal and in batches otherwise.
//!
//! One `write(2)` per access-log line was a large share of the sidecar's CPU per request under load
//! (BENCHMARKS.md, "Figures behind code decisions"). Like nginx's `access_log ... buffer= flush=`
//! and Envoy's file flush interval, lines written to a file or pipe are collected in memory and
//! written together: when [`FLUSH_BYTES`] have gathered, when a warning or error is logged (those
//! go out at once, with everything before them, so order is kept), on the flush interval, at exit
//! and on a panic. On a terminal every line is written as it comes, so the demo and `run` in a
//! shell stay live.
//!
//! What a crash can lose is bounded by the interval: at most its worth of info/debug lines.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::access_line::{self, AccessFields, LogFormat};

/// Batch size that triggers a write: large enough that one `write(2)` carries ~150 access-log
/// lines at full load, small enough to stay in L2 and below a pipe's default 64 KiB capacity.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// Default longest time a line waits in the buffer: short enough for `tail -f` and log shippers
/// to feel live, long enough that a busy sidecar writes in large batches.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The shared sink behind every log line; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("buffered", &self.shared.buffered)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Whether lines are batched (false: each line is written as it comes).
    buffered: bool,
    state: Mutex<State>,
}

struct State {
    pending: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the buffer half-updated in a way that
        // matters (bytes are appended whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A log that cannot be written has nowhere to report the failure; the lines are dropped
        // rather than kept growing without bound.
        let _ = self.out.write_all(&self.pending);
        let _ = self.out.flush();
        self.pending.clear();
    }
}

impl LogWriter {
    /// Stderr: batched with `flush_interval` unless stderr is a terminal or the interval is zero.
    /// Starts the background flusher thread when batching.
    pub fn stderr(flush_interval: Duration) -> Self {
        let terminal = io::IsTerminal::is_terminal(&io::stderr());
        let writer = Self::new(
            Box::new(io::stderr()),
            !terminal && !flush_interval.is_zero(),
        );
        if writer.shared.buffered {
            writer.spawn_flusher(flush_interval);
        }
        writer
    }

    /// A writer over `out`; `buffered` batches lines until [`LogWriter::flush`] or a trigger.
    pub fn new(out: Box<dyn Write + Send>, buffered: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                buffered,
                state: Mutex::new(State {
                    pending: Vec::with_capacity(if buffered { FLUSH_BYTES * 2 } else { 0 }),
                    out,
                }),
            }),
        }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        self.shared.lock().flush();
    }

    /// Appends what `fill` writes as one non-urgent line (formatted straight into the buffer).
    pub fn append_with(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        let shared = &self.shared;
        if !shared.buffered {
            let mut line = Vec::with_capacity(256);
            fill(&mut line);
            let _ = shared.lock().out.write_all(&line);
            return;
        }
        let mut state = shared.lock();
        fill(&mut state.pending);
        if state.pending.len() >= FLUSH_BYTES {
            state.flush();
        }
    }

    /// Flushes every `interval` from a thread of its own, so a quiet sidecar's last lines still
    /// appear. The thread holds only a weak reference and ends with the writer.
    fn spawn_flusher(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                std::thread::sleep(interval);
                while flush_tick(&weak) {
                    std::thread::sleep(interval);
                }
            });
        if spawned.is_err() {
            // No thread: lines still go out at FLUSH_BYTES, on warnings and at exit.
            eprintln!("mcp-sidecar: cannot start the log flush thread; logs are written late");
        }
    }

    /// Flushes the buffer before the default panic message, so the lines leading up to a panic
    /// are not lost with it.
    pub fn flush_on_panic(&self) {
        let writer = self.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_lock`: a panic on a thread that holds the lock must not deadlock here.
            if let Ok(mut state) = writer.shared.state.try_lock() {
                state.flush();
            }
            previous(info);
        }));
    }
}

/// Where access-log lines go when the binary set up logging ([`install_access_sink`]).
static ACCESS_SINK: OnceLock<AccessSink> = OnceLock::new();

/// The access log's destination: the same writer (and so the same batching and order) as every
/// other log line, in the configured format.
#[derive(Debug)]
pub struct AccessSink {
    writer: LogWriter,
    format: LogFormat,
}

impl AccessSink {
    /// Writes one access-log line.
    pub fn write(&self, fields: &AccessFields<'_>) {
        let now = SystemTime::now();
        self.writer
            .append_with(|out| access_line::write_line(out, self.format, now, fields));
    }
}

/// Sends access-log lines to `writer` in `format` from now on (once per process; later calls
/// are ignored).
pub fn install_access_sink(writer: LogWriter, format: LogFormat) {
    let _ = ACCESS_SINK.set(AccessSink { writer, format });
}

/// The access-log sink, if the binary installed one (in-process embedders and tests get the
/// access log as a tracing event instead).
pub fn access_sink() -> Option<&'static AccessSink> {
    ACCESS_SINK.get()
}

/// One tick of the flusher: writes out the buffer; false once the writer is gone.
fn flush_tick(weak: &std::sync::Weak<Shared>) -> bool {
    let Some(shared) = weak.upgrade() else {
        return false;
    };
    shared.lock().flush();
    true
}

/// One log line being written (tracing-subscriber writes each event with a single `write_all`).
#[derive(Debug)]
pub struct LogLine<'a> {
    writer: &'a LogWriter,
    urgent: bool,
}

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = &self.writer.shared;
        let mut state = shared.lock();
        if !shared.buffered {
            // Unbuffered: the line goes out now; earlier lines never wait here.
            return state.out.write(buf);
        }
        state.pending.extend_from_slice(buf);
        if self.urgent || state.pending.len() >= FLUSH_BYTES {
            state.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            writer: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LogLine {
            writer: self,
            // Warnings and errors go out at once: they are what an operator is waiting to see.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes and write calls the test can see.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut c = self.0.lock().unwrap();
            c.0.extend_from_slice(buf);
            c.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    fn line(writer: &LogWriter, level: Level, text: &str) {
        let mut line = LogLine {
            writer,
            urgent: level <= Level::WARN,
        };
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn buffered_lines_wait_for_a_flush_and_keep_their_order() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), true);
        line(&writer, Level::INFO, "one\n");
        line(&writer, Level::INFO, "two\n");
        assert_eq!(out.text(), "", "info lines are batched");
        writer.flush();
        assert_eq!(out.text(), "one\ntwo\n");
        assert_eq!(out.writes(), 1, "the batch is one write");
    }

    #[test]
    fn a_warning_goes_out_at_once_with_the_lines_before_it() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), true);
        line(&writer, Level::INFO, "access\n");
        line(&writer, Level::WARN, "upstream failed\n");
        assert_eq!(out.text(), "access\nupstream failed\n");
        line(&writer, Level::ERROR, "boom\n");
        assert_eq!(out.text(), "access\nupstream failed\nboom\n");
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting_for_the_interval() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), true);
        let text = "x".repeat(99) + "\n";
        let lines = FLUSH_BYTES / text.len() + 1;
        for _ in 0..lines {
            line(&writer, Level::INFO, &text);
        }
        assert_eq!(out.writes(), 1);
        assert_eq!(out.text().len(), lines * text.len());
    }

    #[test]
    fn appended_lines_share_the_buffer_and_order_with_event_lines() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), true);
        line(&writer, Level::INFO, "event\n");
        writer.append_with(|buf| buf.extend_from_slice(b"access\n"));
        line(&writer, Level::WARN, "warning\n");
        assert_eq!(out.text(), "event\naccess\nwarning\n");
        let unbuffered = Capture::default();
        let writer = LogWriter::new(Box::new(unbuffered.clone()), false);
        writer.append_with(|buf| buf.extend_from_slice(b"access\n"));
        assert_eq!(unbuffered.text(), "access\n");
    }

    #[test]
    fn unbuffered_lines_are_written_as_they_come() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), false);
        line(&writer, Level::INFO, "one\n");
        assert_eq!(out.text(), "one\n");
        line(&writer, Level::DEBUG, "two\n");
        assert_eq!(out.writes(), 2);
    }

    #[test]
    fn a_flusher_tick_writes_a_quiet_sidecars_last_lines_and_stops_with_the_writer() {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()), true);
        let weak = Arc::downgrade(&writer.shared);
        line(&writer, Level::INFO, "last words\n");
        assert!(flush_tick(&weak));
        assert_eq!(out.text(), "last words\n");
        drop(writer);
        assert!(
            !flush_tick(&weak),
            "the thread ends when the writer is gone"
        );
    }
}
