//! Command line: `run`, `check`, `probe` and `demo`, and logging set-up.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::access_line::LogFormat;

use crate::config::{Config, ConfigError};
use crate::log_writer::LogWriter;
use crate::reload::{ConfigSource, Reloader};

/// MCP sidecar reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "mcp-sidecar", version = crate::build_info::LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// Log format. The level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Longest time a log line waits before it is written when stderr is a file or pipe (lines
    /// are batched; warnings and errors go out at once; a terminal gets every line at once).
    /// `0s` writes each line as it comes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", global = true)]
    pub log_flush_interval: std::time::Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar.
    Run(RunArgs),
    /// Validate a config file and exit 0 (valid) or 1 (invalid, with the offending field).
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// GET an http:// URL (the admin `/healthz` or `/readyz`) and exit 0 on a 2xx answer, 1 on
    /// anything else: a container health check for images without curl (deploy/Dockerfile).
    Probe(ProbeArgs),
    /// Start a fixture MCP server in-process with the sidecar in front of it, and print what to try
    /// (in builds with the `demo` feature: `cargo run -p mcp-sidecar --features demo -- demo`).
    Demo(DemoArgs),
}

/// `run` arguments.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["config", "upstream"]))]
pub struct RunArgs {
    /// The TOML config file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Quick start without a file: the backend's MCP URL (mounted at the URL's own path).
    #[arg(long, conflicts_with = "config")]
    pub upstream: Option<String>,
    /// Client listener address; overrides the file.
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin listener address; overrides the file.
    #[arg(long)]
    pub admin: Option<String>,
    /// Worker threads (default: one per core). 1 runs everything on one thread (a
    /// single-threaded event loop, like HAProxy's `nbthread 1`).
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

/// `probe` arguments.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:9090/healthz.
    pub url: String,
    /// Longest wait for the answer's status line, connecting included. Keep it below the
    /// orchestrator's own probe timeout, so the probe says why it failed before it is killed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub timeout: std::time::Duration,
}

/// `demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Client listener address.
    #[arg(long, default_value = crate::config::DEFAULT_LISTEN_ADDR)]
    pub listen: String,
    /// Admin listener address.
    #[arg(long, default_value = crate::config::DEFAULT_ADMIN_ADDR)]
    pub admin: String,
    /// Have the fixture answer POSTs as SSE streams instead of JSON.
    #[arg(long)]
    pub sse: bool,
    /// Protect `/mcp` with an API key and JWTs (test keys), and print a token to try.
    #[arg(long)]
    pub auth: bool,
}

impl RunArgs {
    /// Where a reload reads the config again: the file with the same command-line overrides
    /// (`None` for a quick start, which has no file).
    pub fn source(&self) -> Option<ConfigSource> {
        self.config.as_ref().map(|path| ConfigSource {
            path: path.clone(),
            listen: self.listen.clone(),
            admin: self.admin.clone(),
        })
    }

    /// The effective config: file or quick start, then command-line overrides, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        if let Some(source) = self.source() {
            return source.load();
        }
        let mut config = match (&self.config, &self.upstream) {
            (Some(path), _) => Config::load(path)?,
            (None, Some(url)) => Config::quick_start(url)?,
            (None, None) => {
                return Err(ConfigError::invalid(
                    "--config",
                    "give --config FILE or --upstream URL",
                ));
            }
        };
        if let Some(addr) = &self.listen {
            config.listen.addr = addr.clone();
        }
        if let Some(addr) = &self.admin {
            config.admin.addr = addr.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// Installs the global tracing subscriber writing to stderr (see [`LogWriter`]); the returned
/// writer is flushed by the caller before the process exits.
pub fn init_logging(format: LogFormat, flush_interval: std::time::Duration) -> LogWriter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: in a log file they are noise and cost CPU on every
    // request (BENCHMARKS.md, "Figures behind code decisions").
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = LogWriter::stderr(flush_interval);
    writer.flush_on_panic();
    crate::log_writer::install_access_sink(writer.clone(), format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer.clone());
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    writer
}

/// What the process's signals asked for, as futures [`crate::Sidecar::serve_with`] takes, and
/// the reloads SIGHUP asks for.
#[derive(Debug)]
pub struct Signals {
    shutdown: tokio::sync::oneshot::Receiver<()>,
    hurry: tokio::sync::oneshot::Receiver<()>,
    /// Taken by [`Signals::reload_with`].
    reloads: Option<tokio::sync::mpsc::Receiver<()>>,
}

impl Signals {
    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP now (from here on SIGHUP no longer
    /// ends the process, as its default action would, silently, with 129) and spawns the task
    /// that reads them: the first SIGINT or SIGTERM starts the shutdown, the next one cuts its
    /// drain delay short, SIGHUP asks for a reload ([`Signals::reload_with`]; one asked for
    /// while starting is made once serving can begin). Call on the runtime.
    pub fn install() -> Self {
        let (shutdown_tx, shutdown) = tokio::sync::oneshot::channel();
        let (hurry_tx, hurry) = tokio::sync::oneshot::channel();
        // One pending reload is enough: a reload reads the file as it is when it runs, so
        // SIGHUPs that arrive while one waits are answered by it.
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
        let mut pending = [Some(shutdown_tx), Some(hurry_tx)].into_iter().flatten();
        let mut incoming = SignalStreams::install();
        tokio::spawn(async move {
            loop {
                match incoming.recv().await {
                    Received::Stop(name) => match pending.next() {
                        Some(tx) => {
                            tracing::info!("{name} received");
                            let _ = tx.send(());
                        }
                        None => tracing::info!("{name} received again: already shutting down"),
                    },
                    Received::Reload => {
                        tracing::info!("SIGHUP received: reload requested");
                        let _ = reload_tx.try_send(());
                    }
                }
            }
        });
        Self {
            shutdown,
            hurry,
            reloads: Some(reloads),
        }
    }

    /// Spawns the task that makes the reloads SIGHUP asks for with `reloader`, one at a time;
    /// each outcome is logged by the reloader.
    pub fn reload_with(&mut self, reloader: Reloader) {
        let Some(mut reloads) = self.reloads.take() else {
            return;
        };
        tokio::spawn(async move {
            while reloads.recv().await.is_some() {
                let _ = reloader.reload("SIGHUP").await;
            }
        });
    }

    /// The two futures: shutdown begins, and the drain delay is cut short. A sender that went
    /// away (the runtime is ending) never resolves them.
    pub fn into_futures(
        self,
    ) -> (
        impl std::future::Future<Output = ()> + Send,
        impl std::future::Future<Output = ()> + Send,
    ) {
        let wait = |rx: tokio::sync::oneshot::Receiver<()>| async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (wait(self.shutdown), wait(self.hurry))
    }
}

/// A signal [`Signals`] acts on.
enum Received {
    /// SIGINT or SIGTERM, by name.
    Stop(&'static str),
    /// SIGHUP.
    Reload,
}

/// The signal handlers, installed.
struct SignalStreams {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl SignalStreams {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Self {
                term: install(SignalKind::terminate(), "SIGTERM"),
                int: install(SignalKind::interrupt(), "SIGINT"),
                hup: install(SignalKind::hangup(), "SIGHUP"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) -> Received {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                let received = match s {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => Received::Stop("SIGTERM"),
                _ = next(&mut self.int) => Received::Stop("SIGINT"),
                _ = next(&mut self.hup) => Received::Reload,
            }
        }
        #[cfg(not(unix))]
        match tokio::signal::ctrl_c().await {
            Ok(()) => Received::Stop("Ctrl-C"),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending().await
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
