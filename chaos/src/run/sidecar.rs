//! The real `mcp-sidecar` process of a managed scenario: started with the scenario's config and
//! the run's addresses in its environment, waited for until ready, killed with a signal and
//! started again (`kill_sidecar`), watched for crashes, and measured (RSS from `/proc`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::RunError;
use super::admin::Admin;
use crate::scenario::Signal;

/// How long a starting sidecar may take to answer `/readyz` 200: far above the sub-second start
/// measured here, so that only a sidecar that cannot start fails the run.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often readiness is asked for while starting.
const READY_POLL: Duration = Duration::from_millis(20);
/// How long a killed sidecar may take to be reaped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the sidecar's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The sidecar binary, its config and environment, and the running process (if any).
#[derive(Debug)]
pub struct Sidecar {
    bin: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    admin: Admin,
    child: Option<Child>,
    /// Exits nobody asked for, as `(pid, status)`.
    crashes: Vec<String>,
}

impl Sidecar {
    /// A sidecar to run from `bin` with `config`, `env` added to its environment, its output
    /// appended to `log`, its admin listener at `admin`.
    pub fn new(
        bin: PathBuf,
        config: PathBuf,
        env: Vec<(String, String)>,
        log: PathBuf,
        admin: SocketAddr,
    ) -> Result<Self, RunError> {
        Ok(Self {
            bin,
            config,
            env,
            log,
            admin: Admin::new(&format!("http://{admin}"))?,
            child: None,
            crashes: Vec::new(),
        })
    }

    /// The file its output goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts it (`mcp-sidecar run --config FILE`, one worker thread: the machine's cores go to
    /// the traffic and the faults too) and waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> Result<(), RunError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| RunError::Sidecar(format!("log file {}: {e}", self.log.display())))?;
        let err_log = log
            .try_clone()
            .map_err(|e| RunError::Sidecar(format!("log file {}: {e}", self.log.display())))?;
        let child = Command::new(&self.bin)
            .args(["--log-flush-interval", "0s", "run", "--worker-threads", "1"])
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RunError::Sidecar(format!("cannot start {}: {e}", self.bin.display())))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return Err(RunError::Sidecar(format!(
                    "exited while starting ({status}); the end of its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                )));
            }
            if self.admin.status("/readyz").await == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RunError::Sidecar(format!(
                    "not ready within {READY_TIMEOUT:?}; the end of its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Sends `signal` and waits until the process is gone (a SIGTERM'd sidecar drains first).
    pub async fn kill(&mut self, signal: Signal) -> Result<(), RunError> {
        let Some(child) = self.child.as_mut() else {
            return Err(RunError::Sidecar("kill: the sidecar is not running".into()));
        };
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
            .ok_or_else(|| RunError::Sidecar("kill: the sidecar has already exited".into()))?;
        let sig = match signal {
            Signal::Kill => rustix::process::Signal::KILL,
            Signal::Term => rustix::process::Signal::TERM,
        };
        rustix::process::kill_process(pid, sig)
            .map_err(|e| RunError::Sidecar(format!("kill {pid:?}: {e}")))?;
        match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(_) => {
                self.child = None;
                Ok(())
            }
            Err(_) => Err(RunError::Sidecar(format!(
                "still running {EXIT_TIMEOUT:?} after {signal:?}"
            ))),
        }
    }

    /// Whether it is running; an exit nobody asked for is remembered as a crash.
    pub fn alive(&mut self) -> bool {
        if let Some(status) = self.exited() {
            self.crashes.push(status);
            self.child = None;
        }
        self.child.is_some()
    }

    /// The exits nobody asked for so far.
    pub fn crashes(&self) -> &[String] {
        &self.crashes
    }

    /// Its resident set size now, in bytes (Linux's `/proc/PID/status`; `None` elsewhere or
    /// when it is not running).
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Stops it (SIGTERM, then the kill on drop) at the end of the run.
    pub async fn stop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill(Signal::Term).await;
        }
        self.child = None;
    }

    /// The exit status when the process has exited.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(status.to_string())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

/// The `mcp-sidecar` to run: `explicit` if given, else the one beside this executable (or its
/// parent directory: a test binary lives in `target/*/deps`), else `mcp-sidecar` on `PATH`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, RunError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(RunError::Sidecar(format!(
                "--sidecar {}: no such file",
                path.display()
            )))
        };
    }
    let name = format!("mcp-sidecar{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(RunError::Sidecar(
        "no mcp-sidecar binary beside mcp-chaos or on PATH (build it: cargo build -p mcp-sidecar; or pass --sidecar PATH)"
            .into(),
    ))
}
