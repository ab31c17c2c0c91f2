//! A real `redis-server` for the multi-replica tests, on a loopback port and a data directory of
//! its own (never the system's server), with AOF on so a restart keeps what was acknowledged.
//!
//! `REDIS_SERVER` names the binary (default: `redis-server` on PATH; `scripts/test-deps.sh`
//! installs Debian's). Without one the tests that need it fail under `CI` and are skipped
//! elsewhere ([`RedisServer::start`] returns `None` then).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a starting server has to answer `PING` (bounded: a broken install fails the test,
/// it does not hang it).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl RedisServer {
    /// Starts a server, or `None` when there is no `redis-server` outside CI (under `CI` its
    /// absence panics with the install hint).
    pub async fn start() -> Option<Self> {
        let binary = std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .or_else(|| which("redis-server"));
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server not found: run scripts/test-deps.sh (or set REDIS_SERVER)"
            );
            eprintln!("skipped: redis-server not found (scripts/test-deps.sh installs it)");
            return None;
        };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            binary,
        };
        server.spawn().await;
        Some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: nothing is flushed beyond what AOF already has).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and data directory (AOF replayed).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Sends one inline command and returns the raw reply (for checks from the test side).
    pub async fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("redis answers")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.path().display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await
                && stream.write_all(b"PING\r\n").await.is_ok()
            {
                let mut buf = [0u8; 64];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await
                    && buf[..n].starts_with(b"+PONG")
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
